package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/tasks"
)

// A Conversations message enqueued over HTTP is a conversations:send_message task with the
// producer's payload, and its status names the API.
func TestCreateConversationMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","author":"rides","body":"hi","attributes":{"ride":"8812"},"webhook_enabled":false,"ordering_key":"ride-8812"}`
	w := e.do(post(ConversationsPath, body, "conv-http-1"))
	wantStatus(t, w, 202)
	info, err := e.insp.GetTaskInfo(tasks.DefaultQueue, "conv-http-1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := tasks.DecodeConversation(info.Payload)
	if info.Type != tasks.TypeSendConversationMessage || err != nil || p.Author != "rides" || string(p.Attributes) != `{"ride":"8812"}` ||
		p.WebhookEnabled == nil || *p.WebhookEnabled || p.OrderingKey != "ride-8812" {
		t.Fatalf("task %s %+v (%v)", info.Type, p, err)
	}
	w = e.do(req{method: "GET", path: "/v1/message-interactions/conv-http-1"})
	wantStatus(t, w, 200)
	var st tasks.Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.API != "conversations" || st.Message.ConversationSID != p.ConversationSID {
		t.Fatalf("status %s (%v)", w.Body.String(), err)
	}
	// The same message again: 200, nothing new.
	wantStatus(t, e.do(post(ConversationsPath, body, "conv-http-1")), 200)
	// A Proxy key, a URL for media, the reserved attributes key: each named.
	w = e.do(post(ConversationsPath, `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","body":"x","attributes":{"proxyq":1}}`, ""))
	wantStatus(t, w, 422)
	if !strings.Contains(w.Body.String(), "attributes") {
		t.Fatalf("422 body %s, want the field named", w.Body.String())
	}
	w = e.do(post(ConversationsPath, `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","body":"x","queue":"nope"}`, ""))
	wantStatus(t, w, 422)
	if !strings.Contains(w.Body.String(), "queue") {
		t.Fatalf("422 body %s, want the queue named", w.Body.String())
	}
}
