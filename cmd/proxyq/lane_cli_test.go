package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// --ordering-key and ordering_key in JSON lines put messages in a lane in input order; status
// shows the place; a bad key is refused with nothing enqueued.
func TestEnqueueOrderingKeyAndLaneStatus(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{"REDIS_URL": db.URL()}
	r := runMain(t, env, "", "enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "first",
		"--ordering-key", "rider-42", "--idempotency-key", "lane-first")
	if r.code != exitOK {
		t.Fatalf("enqueue: exit %d, stderr %s", r.code, r.stderr)
	}
	input := jsonLine(`,"body":"second","ordering_key":"rider-42"`) + "\n" + jsonLine(`,"body":"other"`) + "\n" +
		jsonLine(`,"body":"third","ordering_key":"rider-42","idempotency_key":"lane-third"`)
	r = runMain(t, env, input, "enqueue", "--file", "-")
	if r.code != exitOK {
		t.Fatalf("enqueue --file: exit %d, stderr %s", r.code, r.stderr)
	}
	ids := strings.Fields(r.stdout)
	lane, err := db.Client(t).ZRange(context.Background(), tasks.LaneKey("default", "rider-42"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"lane-first", ids[0], "lane-third"}; !slices.Equal(lane, want) {
		t.Fatalf("lane = %v, want %v", lane, want)
	}

	r = runMain(t, env, "", "status", "lane-third", "--json")
	var st tasks.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json %q: %v", r.stdout, err)
	}
	if st.Message.OrderingKey != "rider-42" || st.Lane == nil || st.Lane.Position != 3 || st.Lane.Ahead != 2 || st.Lane.Head != "lane-first" {
		t.Errorf("status lane = %+v (key %q)", st.Lane, st.Message.OrderingKey)
	}
	r = runMain(t, env, "", "status", "lane-third")
	for _, want := range []string{"Ordering key:", "rider-42", "position 3 of 3 (2 ahead; head lane-first is pending)", "Waiting for:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}

	for _, bad := range [][]string{{"--ordering-key", "a b"}, {"--ordering-key", ""}} {
		r = runMain(t, env, "", append([]string{"enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "x"}, bad...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--ordering-key: ") {
			t.Errorf("%v: exit %d, stderr %q", bad, r.code, r.stderr)
		}
	}
	r = runMain(t, env, jsonLine(`,"body":"x","ordering_key":"{bad}"`), "enqueue", "--file", "-")
	if r.code != exitUsage || !strings.Contains(r.stderr, "line 1: ordering_key: may contain only") {
		t.Errorf("bad key in a line: exit %d, stderr %q", r.code, r.stderr)
	}
}
