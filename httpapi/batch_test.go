package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

func batchJSON(t testing.TB, items ...map[string]any) string {
	t.Helper()
	msgs := make([]json.RawMessage, len(items))
	for i, it := range items {
		msgs[i] = json.RawMessage(msgJSON(t, it))
	}
	b, err := json.Marshal(map[string]any{"messages": msgs})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	body := batchJSON(t,
		map[string]any{"idempotency_key": "b-1"},
		map[string]any{"idempotency_key": "b-2", "send_at": future, "queue": "low"},
		map[string]any{}, // no key
	)
	w := e.do(post("/v1/message-interactions:batch", body, ""))
	wantStatus(t, w, 200)
	res := decodeInto[BatchResponse](t, w).Results
	if len(res) != 3 {
		t.Fatalf("results %+v", res)
	}
	for i, want := range []struct {
		id, queue, state string
	}{{"b-1", "default", "pending"}, {"b-2", "low", "scheduled"}, {"", "default", "pending"}} {
		r := res[i]
		if r.Index != i || r.Status != 202 || r.Duplicate || r.Queue != want.queue || r.State != want.state ||
			(want.id != "" && r.ID != want.id) || r.ID == "" || r.Links.Self != "/v1/message-interactions/"+r.ID || r.Error != nil {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if n := e.countTasks(); n != 3 {
		t.Fatalf("%d tasks, want 3", n)
	}

	t.Run("retry is answered from the existing messages", func(t *testing.T) {
		w := e.do(post("/v1/message-interactions:batch", body, ""))
		wantStatus(t, w, 200)
		res := decodeInto[BatchResponse](t, w).Results
		if res[0].Status != 200 || !res[0].Duplicate || res[0].ID != "b-1" || res[0].State != "pending" ||
			res[1].Status != 200 || !res[1].Duplicate || res[1].State != "scheduled" ||
			res[2].Status != 202 || res[2].Duplicate { // keyless: a new message, as documented
			t.Fatalf("results %+v", res)
		}
		if n := e.countTasks(); n != 4 {
			t.Fatalf("%d tasks, want 4", n)
		}
	})

	t.Run("invalid entries: 422 listing all, nothing enqueued", func(t *testing.T) {
		before := e.countTasks()
		bad := batchJSON(t,
			map[string]any{"idempotency_key": "b-new-1"},
			map[string]any{"idempotency_key": "b-new-2", "body": nil},
			map[string]any{"idempotency_key": "b new", "queue": "nope", "extra": 1},
		)
		p := wantProblem(t, e.do(post("/v1/message-interactions:batch", bad, "")), 422, ProblemValidation)
		for _, f := range []string{"messages[1].body", "messages[2].idempotency_key", "messages[2].queue", "messages[2].extra"} {
			if !hasFieldError(p, f, "") {
				t.Errorf("no error for %s in %+v", f, p.Errors)
			}
		}
		if hasFieldError(p, "messages[0].body", "") {
			t.Errorf("valid entry reported: %+v", p.Errors)
		}
		if n := e.countTasks(); n != before {
			t.Fatalf("%d tasks enqueued by a rejected batch", n-before)
		}
	})

	t.Run("key held by a different message: 409, nothing enqueued", func(t *testing.T) {
		before := e.countTasks()
		conflicting := batchJSON(t,
			map[string]any{"idempotency_key": "b-new-3"},
			map[string]any{"idempotency_key": "b-1", "body": "something else"},
		)
		p := wantProblem(t, e.do(post("/v1/message-interactions:batch", conflicting, "")), 409, ProblemKeyConflict)
		if !hasFieldError(p, "messages[1].body", "differs") {
			t.Fatalf("problem %+v", p)
		}
		if n := e.countTasks(); n != before {
			t.Fatalf("%d tasks enqueued by a rejected batch", n-before)
		}
		e.wantNoTask("b-new-3")
	})

	t.Run("key repeated with the same message: one message, later entries duplicates", func(t *testing.T) {
		before := e.countTasks()
		rep := batchJSON(t,
			map[string]any{"idempotency_key": "b-rep", "send_at": future},
			map[string]any{"idempotency_key": "b-rep-2"},
			map[string]any{"idempotency_key": "b-rep", "send_at": future},
			map[string]any{"idempotency_key": "b-1"}, // an existing message, twice
			map[string]any{"idempotency_key": "b-1"},
		)
		w := e.do(post("/v1/message-interactions:batch", rep, ""))
		wantStatus(t, w, 200)
		res := decodeInto[BatchResponse](t, w).Results
		want := []struct {
			id     string
			status int
			dup    bool
		}{{"b-rep", 202, false}, {"b-rep-2", 202, false}, {"b-rep", 200, true}, {"b-1", 200, true}, {"b-1", 200, true}}
		if len(res) != len(want) {
			t.Fatalf("results %+v", res)
		}
		for i, wt := range want {
			r := res[i]
			if r.Index != i || r.ID != wt.id || r.Status != wt.status || r.Duplicate != wt.dup || r.Error != nil {
				t.Errorf("result %d: %+v, want %+v", i, r, wt)
			}
		}
		if res[2].State != "scheduled" || res[2].Queue != "default" {
			t.Errorf("repeat result %+v, want the first's state and queue", res[2])
		}
		if n := e.countTasks(); n != before+2 {
			t.Fatalf("%d tasks enqueued, want 2", n-before)
		}
	})

	tests := []struct {
		name  string
		body  string
		key   string
		field string
		rule  string
		code  int
	}{
		{name: "repeated key, different message", body: batchJSON(t, map[string]any{"idempotency_key": "r"}, map[string]any{}, map[string]any{"idempotency_key": "r", "body": "other"}), field: "messages[2].body", rule: "differs from messages[0], which has the same idempotency_key", code: 422},
		{name: "repeated key, different queue", body: batchJSON(t, map[string]any{"idempotency_key": "r"}, map[string]any{"idempotency_key": "r", "queue": "low"}), field: "messages[1].queue", rule: "differs from messages[0]", code: 422},
		{name: "empty", body: `{"messages":[]}`, field: "messages", rule: "at least 1", code: 422},
		{name: "missing", body: `{}`, field: "messages", rule: "is required", code: 422},
		{name: "not an array", body: `{"messages":{}}`, field: "messages", rule: "array", code: 422},
		{name: "entry not an object", body: `{"messages":[1]}`, field: "messages[0]", rule: "JSON object", code: 422},
		{name: "unknown top-level key", body: `{"messages":[` + msgJSON(t, nil) + `],"atomic":true}`, field: "atomic", rule: "not a known key", code: 422},
		{name: "header key", body: batchJSON(t, map[string]any{}), key: "whole-batch", field: "Idempotency-Key", rule: "not accepted on a batch", code: 422},
		{name: "not json", body: `{"messages":`, code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := ProblemValidation
			if tt.code == 400 {
				typ = ProblemMalformed
			}
			p := wantProblem(t, e.do(post("/v1/message-interactions:batch", tt.body, tt.key)), tt.code, typ)
			if tt.field != "" && !hasFieldError(p, tt.field, tt.rule) {
				t.Fatalf("no %s %q in %+v", tt.field, tt.rule, p.Errors)
			}
		})
	}
}

func TestBatchLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxBatch = 3; c.MaxBodyBytes = 8 << 10 }))
	items := make([]map[string]any, 4)
	for i := range items {
		items[i] = map[string]any{"idempotency_key": fmt.Sprintf("lim-%d", i)}
	}
	p := wantProblem(t, e.do(post("/v1/message-interactions:batch", batchJSON(t, items...), "")), 422, ProblemValidation)
	if !hasFieldError(p, "messages", "at most 3 entries, got 4") {
		t.Fatalf("problem %+v", p)
	}
	wantStatus(t, e.do(post("/v1/message-interactions:batch", batchJSON(t, items[:3]...), "")), 200)

	big := batchJSON(t, map[string]any{"body": strings.Repeat("x", 9<<10)})
	wantProblem(t, e.do(post("/v1/message-interactions:batch", big, "")), 413, ProblemTooLarge)
	wantProblem(t, e.do(req{method: "POST", path: "/v1/message-interactions:batch", body: "{}", header: map[string]string{"Content-Type": "text/json"}}), 415, ProblemUnsupportedMedia)
	wantProblem(t, e.do(req{method: "POST", path: "/v1/message-interactions:batch", body: "{}", token: "-"}), 401, ProblemUnauthorized)
}

// TestBatchKeyTakenMeanwhile checks what a batch does for an entry whose key was free in
// phase 1 but whose enqueue came back Duplicate (another replica took the key in between):
// the race cannot be scheduled from outside, so this drives the resolution step directly.
func TestBatchKeyTakenMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := message{Payload: mustPayload(t, "batch body"), Queue: "default", Key: "taken-1"}
	rival := message{Payload: mustPayload(t, "rival body"), Queue: "default", Key: "taken-1"}
	if _, err := e.srv.enq.Enqueue(t.Context(), rival.Payload, rival.options(time.Now())...); err != nil {
		t.Fatal(err)
	}
	sub, err := e.srv.submitKeyed(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	r := batchResult(4, sub)
	if r.Status != 409 || !r.Duplicate || r.Error == nil || r.Error.Type != ProblemKeyConflict || r.Index != 4 || r.ID != "taken-1" {
		t.Fatalf("result %+v", r)
	}
	same, err := e.srv.submitKeyed(t.Context(), rival)
	if err != nil || same.status != 200 {
		t.Fatalf("rival again: %+v %v", same, err)
	}
}

func mustPayload(t testing.TB, body string) tasks.Payload {
	t.Helper()
	p := tasks.Payload{ServiceSID: ks, SessionSID: kc, ParticipantSID: kp, Body: body}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}
