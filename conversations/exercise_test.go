package conversations_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/proxyq/proxyq/conversations"
)

// sentRequest is one request as the client put it on the wire.
type sentRequest struct {
	Method, Path, RawQuery, ContentType, Body string
	Header                                    http.Header
}

// recorder is a RoundTripper that records every request before passing it on.
type recorder struct {
	mu   sync.Mutex
	reqs []sentRequest
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	sr := sentRequest{Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		ContentType: req.Header.Get("Content-Type"), Header: req.Header.Clone()}
	if req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			buf := make([]byte, req.ContentLength)
			_, _ = b.Read(buf)
			sr.Body = string(buf)
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, sr)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

// exerciseClient makes every kind of request the client can make, on both the default and a
// named Conversation Service, with every create parameter and header value proxyq sends, and
// fails the test at the first error. messageSID names a message to fetch and list receipts of.
func exerciseClient(t *testing.T, c *conversations.Client, messageSID func(conversations.Conversation) string) {
	t.Helper()
	ctx := context.Background()
	attrs, err := conversations.StampAttributes(`{"app":"clinic"}`, "task-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, conv := range []conversations.Conversation{{ConversationSID: testCH}, {ServiceSID: testIS, ConversationSID: testCH}} {
		creates := []conversations.CreateParams{
			{Conversation: conv, Author: "clinic", Body: "Your appointment is at 3pm", Attributes: attrs, WebhookEnabled: ptr(true)},
			{Conversation: conv, MediaSID: testME, Attributes: attrs, WebhookEnabled: ptr(false)},
			{Conversation: conv, Author: "clinic", ContentSID: testHX, ContentVariables: `{"1":"Ana"}`, Attributes: attrs},
		}
		for _, p := range creates {
			if _, err := c.CreateMessage(ctx, p); err != nil {
				t.Fatalf("CreateMessage(%+v): %v", p.Conversation, err)
			}
		}
		if _, err := c.ListMessages(ctx, conv, conversations.ListOptions{Order: conversations.OrderDesc, PageSize: 2, MaxPages: 3}); err != nil {
			t.Fatalf("ListMessages: %v", err)
		}
		if _, err := c.ListMessages(ctx, conv, conversations.ListOptions{Order: conversations.OrderAsc}); err != nil {
			t.Fatalf("ListMessages asc: %v", err)
		}
		if _, err := c.FindStamped(ctx, conv, "task-1", conversations.FindOptions{PageSize: 1, MaxPages: 2}); err != nil {
			t.Fatalf("FindStamped: %v", err)
		}
		sid := messageSID(conv)
		if _, err := c.FetchMessage(ctx, conv, sid); err != nil {
			t.Fatalf("FetchMessage: %v", err)
		}
		if _, err := c.ListReceipts(ctx, conv, sid, conversations.ListOptions{PageSize: 50}); err != nil {
			t.Fatalf("ListReceipts: %v", err)
		}
	}
}
