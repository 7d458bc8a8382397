package enqueuecli

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

// newOfflineEnqueuer prepares and validates messages; these tests never reach Redis (nothing
// is enqueued), so the address is one nobody listens on.
func newOfflineEnqueuer(t *testing.T) *tasks.Enqueuer {
	t.Helper()
	enq := tasks.NewEnqueuer(asynq.RedisClientOpt{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = enq.Close() })
	return enq
}

const testConversation = "CH0123456789abcdef0123456789abcdef"

// TestReadFileMixesAPIs: a line with conversation_sid is a Conversations message (decoded with
// its own rules and the extra keys), the others Proxy messages, in input order.
func TestReadFileMixesAPIs(t *testing.T) {
	enq := newOfflineEnqueuer(t)
	in := `{"service_sid":"KS0123456789abcdef0123456789abcdef","session_sid":"KC0123456789abcdef0123456789abcdef","participant_sid":"KP0123456789abcdef0123456789abcdef","body":"p"}

{"conversation_sid":"` + testConversation + `","author":"a","body":"c","attributes":{"x":1},"webhook_enabled":false,"idempotency_key":"k1","queue":"low"}
`
	items, problems, err := ReadFile(strings.NewReader(in), enq, nil)
	if err != nil || len(problems) > 0 {
		t.Fatalf("problems %v, err %v", problems, err)
	}
	if len(items) != 2 || items[0].Proxy == nil || items[0].Line != 1 || items[1].Conv == nil || items[1].Line != 3 {
		t.Fatalf("items %+v", items)
	}
	c := items[1].Conv.Payload
	if c.ConversationSID != testConversation || c.Author != "a" || string(c.Attributes) != `{"x":1}` || c.WebhookEnabled == nil || *c.WebhookEnabled || items[1].key != "k1" {
		t.Errorf("conversation payload %+v", c)
	}
	if msgs, lines := ProxyMessages(items); len(msgs) != 1 || lines[0] != 1 {
		t.Errorf("proxy messages %v at %v", msgs, lines)
	}
}

// TestConversationFlagProblemsNameTheFlag: in flag mode every problem names its flag.
func TestConversationFlagProblemsNameTheFlag(t *testing.T) {
	enq := newOfflineEnqueuer(t)
	f := Flags{ConversationSID: testConversation, Body: "x", ChatService: "KS0123456789abcdef0123456789abcdef", ContentVariables: `{"1":"a"}`,
		Set: map[string]bool{"conversation": true, "body": true, "chat-service": true, "content-variables": true}}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	_, problems, err := f.ConversationMessage(enq, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, ProblemText(p))
	}
	want := []string{"--chat-service: must match ^IS", "--content-variables: needs content_sid"}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("problems %q lack %q", got, w)
		}
	}
	f = Flags{ConversationSID: testConversation, Body: "x", NoWebhooks: true, Set: map[string]bool{"conversation": true, "body": true, "no-webhooks": true}}
	m, problems, err := f.ConversationMessage(enq, nil)
	if err != nil || len(problems) > 0 || m.Payload.WebhookEnabled == nil || *m.Payload.WebhookEnabled {
		t.Errorf("--no-webhooks: %+v %v %v", m.Payload, problems, err)
	}
}
