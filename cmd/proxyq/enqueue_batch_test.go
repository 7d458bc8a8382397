package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
)

// TestEnqueueRepeatedKeyDifferentMessage: one key on two lines with different messages is
// refused before Redis is contacted (REDIS_URL is a closed port), naming both lines.
func TestEnqueueRepeatedKeyDifferentMessage(t *testing.T) {
	t.Parallel()
	input := strings.Join([]string{
		jsonLine(`,"body":"x","idempotency_key":"k1"`),               // 1
		jsonLine(`,"body":"x","idempotency_key":"k2"`),               // 2
		jsonLine(`,"body":"y","idempotency_key":"k1"`),               // 3: body differs from 1
		jsonLine(`,"body":"x","idempotency_key":"k2","queue":"low"`), // 4: queue differs from 2
		jsonLine(`,"body":"x","idempotency_key":"k1"`),               // 5: the same as 1
	}, "\n")
	r := runMain(t, offlineEnv(t), input, "enqueue", "--file", "-")
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
	}
	for _, want := range []string{
		"line 3: idempotency_key: repeats the key of line 1 with a different message (body differs); one key names one message",
		"line 4: idempotency_key: repeats the key of line 2 with a different message (queue differs)",
		"2 invalid line(s); nothing was enqueued",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "line 5:") || strings.Contains(r.stderr, "unreachable") || r.stdout != "" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

// TestEnqueueRepeatedKeySameMessage: the same line twice (a producer that appended its batch
// again) is one message; the repeat prints the same ID, as a duplicate.
func TestEnqueueRepeatedKeySameMessage(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{"REDIS_URL": db.URL()}
	a := jsonLine(`,"body":"a","idempotency_key":"rep-a","send_at":"2099-01-02T15:04:05Z"`)
	b := jsonLine(`,"body":"b","idempotency_key":"rep-b"`)
	c := jsonLine(`,"body":"c"`) // no key: a message each time
	r := runMain(t, env, strings.Join([]string{a, b, c, a, b, c, a}, "\n"), "enqueue", "--file", "-", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	type out struct {
		ID        string `json:"id"`
		Queue     string `json:"queue"`
		Duplicate bool   `json:"duplicate"`
	}
	var got []out
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for dec.More() {
		var o out
		if err := dec.Decode(&o); err != nil {
			t.Fatal(err)
		}
		got = append(got, o)
	}
	if len(got) != 7 {
		t.Fatalf("%d results: %s", len(got), r.stdout)
	}
	for i, want := range []out{{"rep-a", "default", false}, {"rep-b", "default", false}, {got[2].ID, "default", false},
		{"rep-a", "default", true}, {"rep-b", "default", true}, {got[5].ID, "default", false}, {"rep-a", "default", true}} {
		if got[i] != want {
			t.Errorf("line %d: %+v, want %+v", i+1, got[i], want)
		}
	}
	if got[2].ID == got[5].ID {
		t.Errorf("keyless lines share ID %q", got[2].ID)
	}
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	q, err := insp.GetQueueInfo("default")
	if err != nil {
		t.Fatal(err)
	}
	if n := q.Size; n != 4 {
		t.Errorf("%d tasks, want 4 (rep-a, rep-b and two keyless)", n)
	}
}
