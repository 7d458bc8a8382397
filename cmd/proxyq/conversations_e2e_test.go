package main

// End-to-end tests of Conversations messages with real processes: `proxyq enqueue
// --conversation …` and a JSON line with conversation_sid, `proxyq worker` sending to the
// Conversations fake (convtest, as PROXYQ_CONVERSATIONS_BASE_URL) with creates that answer 500
// after creating, the fake's signed onDeliveryUpdated receipts through `proxyq serve`, and
// `proxyq status` showing the created message.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

const e2eConversation = "CH0123456789abcdef0123456789abcdef"

func TestE2EConversations(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})

	// serve's public URL is a front server, configured before serve is started.
	var backend http.Handler = http.NotFoundHandler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { backend.ServeHTTP(w, r) }))
	t.Cleanup(front.Close)
	conv, err := convtest.NewServer(convtest.Config{Delivery: convtest.DeliveryConfig{
		URL: front.URL + delivery.ReceiptsPath, Delay: 50 * time.Millisecond, Duplicates: true, OutOfOrder: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conv.Close)
	env := []string{"TWILIO_AUTH_TOKEN=" + e2eAuthToken, "PROXYQ_PUBLIC_URL=" + front.URL,
		"PROXYQ_CONVERSATIONS_BASE_URL=" + conv.URL}
	serve := h.startServeBinary(env...)
	u, _ := url.Parse(serve.base)
	backend = httputil.NewSingleHostReverseProxy(u)
	w := h.startWorker(env...)

	// Both creates answer 500 after creating, with the same body: reconciliation finds each
	// message by its own stamp.
	const body = "same secret body, never logged"
	must(t, conv.Fake.Inject(convtest.Fault(proxytest.Fault500AfterCreate), 2))
	r := runBinary(t, h.env(env...), "", "enqueue", "--conversation", e2eConversation, "--author", "support",
		"--body", body, "--attributes", `{"order":"42"}`, "--idempotency-key", "conv-flag")
	if r.code != 0 {
		t.Fatalf("enqueue --conversation: exit %d\n%s", r.code, r.stderr)
	}
	line := fmt.Sprintf(`{"conversation_sid":%q,"author":"support","body":%q,"idempotency_key":"conv-file"}`, e2eConversation, body)
	r2 := runBinary(t, h.env(env...), line+"\n", "enqueue", "--file", "-")
	if r2.code != 0 {
		t.Fatalf("enqueue --file: exit %d\n%s", r2.code, r2.stderr)
	}
	ids := []string{strings.TrimSpace(r.stdout), strings.TrimSpace(r2.stdout)}
	if ids[0] != "conv-flag" || ids[1] != "conv-file" {
		t.Fatalf("ids %q", ids)
	}
	h.waitForState("default", asynq.TaskStateCompleted, 60*time.Second, ids...)

	outcomes := map[string]*tasks.Outcome{}
	eventually(t, 30*time.Second, "both messages' receipts final", func() bool {
		for _, id := range ids {
			info, err := h.insp.GetTaskInfo("default", id)
			if err != nil {
				return false
			}
			o, _ := tasks.ParseOutcome(info.Result)
			if o == nil || !o.Final {
				return false
			}
			outcomes[id] = o
		}
		return true
	})
	if got := len(conv.Fake.Messages(testAccountSID, "", e2eConversation)); got != 2 {
		t.Errorf("the conversation has %d messages, want 2 (no duplicate, none lost)", got)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		o := outcomes[id]
		if o.API != tasks.APIConversations || !strings.HasPrefix(o.MessageSID, "IM") || o.OutboundStatus != "delivered" || o.DeliveredAt == nil {
			t.Errorf("%s: outcome %+v", id, o)
		}
		if seen[o.MessageSID] {
			t.Errorf("%s: message %s adopted by both messages", id, o.MessageSID)
		}
		seen[o.MessageSID] = true
		if !o.Reconciled {
			t.Errorf("%s: not reconciled after a 500 after create", id)
		}
		m, ok := conv.Fake.Message(o.MessageSID)
		if !ok || m.Author != "support" || m.Body != body {
			t.Errorf("%s: fake has %+v", id, m)
		}
		if id == "conv-flag" && !strings.Contains(m.Attributes, `"order":"42"`) {
			t.Errorf("attributes %s lack the producer's", m.Attributes)
		}
	}

	// The receipts reached serve's route and were accepted (signed with the account's token).
	cbs := conv.Fake.Callbacks()
	if len(cbs) == 0 {
		t.Error("the fake posted no onDeliveryUpdated receipts")
	}
	for _, cb := range cbs {
		if cb.Status != http.StatusOK && cb.Status != http.StatusNoContent {
			t.Errorf("receipt %s answered %d (%v)", cb.Params.Get("DeliveryStatus"), cb.Status, cb.Err)
		}
	}

	st := h.status(ids[0])
	if st.API != tasks.APIConversations || st.Message.ConversationSID != e2eConversation || st.Outcome == nil || st.Outcome.MessageSID != outcomes[ids[0]].MessageSID {
		t.Errorf("status --json: %+v outcome %+v", st, st.Outcome)
	}
	text := h.run("", "status", ids[0])
	for _, want := range []string{"Conversations", "Message SID:", outcomes[ids[0]].MessageSID, e2eConversation} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, text.stdout)
		}
	}
	for name, log := range map[string]string{"worker": w.log.String(), "serve": serve.log.String()} {
		if strings.Contains(log, body) || strings.Contains(log, e2eAuthToken) {
			t.Errorf("the %s log holds a body or the token", name)
		}
	}
}

// TestE2EConversationFlagErrors: bad Conversations input exits 2, names the flag or the line,
// and enqueues nothing.
func TestE2EConversationFlagErrors(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"bad conversation SID", "", []string{"--conversation", "CH123", "--body", "x"}, []string{"--conversation: must match ^CH"}},
		{"mixed APIs", "", []string{"--conversation", e2eConversation, "--session", "KC0123456789abcdef0123456789abcdef", "--body", "x"}, []string{"--session cannot be combined with Conversations flags"}},
		{"Conversations flag alone", "", []string{"--author", "a", "--body", "x"}, []string{"--conversation CH… is required"}},
		{"no body", "", []string{"--conversation", e2eConversation}, []string{"--body: is required"}},
		{"several", "", []string{"--conversation", e2eConversation, "--body", "x", "--chat-service", "KS0123456789abcdef0123456789abcdef",
			"--media-sid", "https://x/y.png", "--content-variables", "{", "--attributes", `{"proxyq":1}`},
			[]string{"--chat-service: must match ^IS", "--media-sid: must be a Media SID", "--content-variables: must be a JSON object", `--attributes: must not use the key "proxyq"`}},
		{"file lines", `{"conversation_sid":"CHx","body":"a"}` + "\n" + `{"conversation_sid":"` + e2eConversation + `","media_url":["https://x"]}` + "\n" +
			`{"conversation_sid":"` + e2eConversation + `","body":"a","idempotency_key":"k"}` + "\n" + `{"conversation_sid":"` + e2eConversation + `","body":"b","idempotency_key":"k"}` + "\n",
			[]string{"--file", "-"}, []string{"line 1: conversation_sid: must match ^CH", "line 2: media_url: is not a key of a Conversations message", "line 4: idempotency_key: repeats the key of line 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.stdin, append([]string{"enqueue"}, tt.args...)...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
	if n, err := h.insp.GetQueueInfo("default"); err == nil && n.Size > 0 {
		t.Errorf("%d messages enqueued by bad input", n.Size)
	}
}
