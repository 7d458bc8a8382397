package httpapi

import (
	"testing"
)

func TestAccountSID(t *testing.T) {
	const known, unknown = "AC0000000000000000000000000000000a", "AC0000000000000000000000000000000b"
	e := newEnv(t, withConfig(func(c *Config) { c.KnownAccount = func(sid string) bool { return sid == "" || sid == known } }))
	w := e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"account_sid": known}), ""))
	wantStatus(t, w, 202)
	if n := e.countTasks(); n != 1 {
		t.Fatalf("tasks = %d, want 1", n)
	}
	p := wantProblem(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"account_sid": unknown}), "")), 422, ProblemValidation)
	if !hasFieldError(p, "account_sid", "no credentials") {
		t.Fatalf("problem = %+v, want account_sid: no credentials", p)
	}
	p = wantProblem(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"account_sid": "SK0000000000000000000000000000000a"}), "")), 422, ProblemValidation)
	if !hasFieldError(p, "account_sid", "must match ^AC") {
		t.Fatalf("problem = %+v, want account_sid: must match", p)
	}
	if n := e.countTasks(); n != 1 {
		t.Fatalf("tasks = %d after refusals, want 1", n)
	}
}
