//go:build prism

package conversations_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
)

// TestPrismAcceptsEveryRequest runs every request the client makes against Prism mocking
// Twilio's Conversations v1 description (make prism-conversations starts it and sets
// PRISM_URL). Prism validates each request against the description and answers 422 (or 401
// for missing auth) when it breaks it; the client turns that into a *proxyclient.Error, which
// fails exerciseClient.
func TestPrismAcceptsEveryRequest(t *testing.T) {
	base := os.Getenv("PRISM_URL")
	if base == "" {
		t.Fatal("PRISM_URL is not set: run make prism-conversations")
	}
	rec := &recorder{next: http.DefaultTransport}
	c := newClient(t, base, func(cfg *conversations.Config) {
		cfg.WrapTransport = func(http.RoundTripper) http.RoundTripper { return rec }
	})
	exerciseClient(t, c, func(conversations.Conversation) string { return testIM })
	if len(rec.reqs) < 14 {
		t.Fatalf("only %d requests reached Prism", len(rec.reqs))
	}
	t.Logf("Prism accepted %d requests", len(rec.reqs))

	// Prism does validate: a request breaking the description is refused.
	form := url.Values{"Body": {"x"}, "MediaSid": {"ME1"}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/v1/Conversations/"+testCH+"/Messages", strings.NewReader(form.Encode()))
	req.SetBasicAuth(testAccount, testToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("invalid MediaSid: Prism answered %d, want 422", resp.StatusCode)
	}
	_, err = c.ListMessages(context.Background(), conversations.Conversation{ConversationSID: testCH}, conversations.ListOptions{PageSize: 100})
	var he *proxyclient.Error
	if errors.As(err, &he) {
		t.Errorf("PageSize 100 (the documented maximum) refused: %v", err)
	}
}
