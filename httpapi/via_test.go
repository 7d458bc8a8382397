package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/proxyq/proxyq/tasks"
)

// A message enqueued with a named token records the name in its origin ("http:<name>", the
// console's "token <name>"); an unnamed token's records "http". Every enqueue path: one
// message, a keyed one, a batch, a Conversations message.
func TestTokenNameInOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.Tokens = []string{tokenA, "billing:" + tokenB} }))
	via := func(id string) string {
		t.Helper()
		st, err := tasks.Lookup(t.Context(), e.insp, id)
		if err != nil {
			t.Fatal(err)
		}
		info, err := e.insp.GetTaskInfo(st.Queue, id)
		if err != nil {
			t.Fatal(err)
		}
		return tasks.ParseOrigin(info.Headers).Via
	}
	accepted := func(r req) string {
		t.Helper()
		w := e.do(r)
		wantStatus(t, w, 202)
		return decodeInto[Accepted](t, w).ID
	}
	named := func(r req) req { r.token = tokenB; return r }

	if id := accepted(post("/v1/message-interactions", msgJSON(t, nil), "")); via(id) != "http" {
		t.Errorf("unnamed token: via %q, want http", via(id))
	}
	if id := accepted(named(post("/v1/message-interactions", msgJSON(t, map[string]any{"body": "b"}), ""))); via(id) != "http:billing" {
		t.Errorf("named token: via %q, want http:billing", via(id))
	}
	if id := accepted(named(post("/v1/message-interactions", msgJSON(t, map[string]any{"body": "c"}), "keyed-1"))); via(id) != "http:billing" {
		t.Errorf("named token, keyed: via %q, want http:billing", via(id))
	}
	w := e.do(named(post(ConversationsPath, `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","body":"hi"}`, "conv-1")))
	wantStatus(t, w, 202)
	if v := via("conv-1"); v != "http:billing" {
		t.Errorf("named token, Conversations: via %q, want http:billing", v)
	}
	w = e.do(named(post("/v1/message-interactions:batch", `{"messages":[`+msgJSON(t, map[string]any{"body": "d"})+`]}`, "")))
	if w.Code != 207 && w.Code != 202 && w.Code != 200 {
		t.Fatalf("batch: %d %s", w.Code, w.Body.String())
	}
	var batch struct {
		Results []struct {
			ID string `json:"id"`
		} `json:"results"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &batch); err != nil || len(batch.Results) != 1 {
		t.Fatalf("batch answer %s (%v)", w.Body.String(), err)
	}
	if v := via(batch.Results[0].ID); v != "http:billing" {
		t.Errorf("named token, batch: via %q, want http:billing", v)
	}
}
