package conversations_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

func TestStampAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, producer string
		want           map[string]any
		wantErr        bool
	}{
		{"none", "", map[string]any{"proxyq": map[string]any{"id": "task-1"}}, false},
		{"kept byte for byte", `{"order": 12345678901234567890, "tags": ["a"]}`,
			map[string]any{"order": json.Number("12345678901234567890"), "tags": []any{"a"}, "proxyq": map[string]any{"id": "task-1"}}, false},
		{"stamp wins over the producer's", `{"proxyq": {"id": "forged"}, "x": 1}`,
			map[string]any{"x": json.Number("1"), "proxyq": map[string]any{"id": "task-1"}}, false},
		{"array", `[1]`, nil, true},
		{"null", `null`, nil, true},
		{"not JSON", `{`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := conversations.StampAttributes(tt.producer, "task-1")
			if tt.wantErr {
				if !errors.Is(err, conversations.ErrNotJSONObject) {
					t.Fatalf("err = %v, want ErrNotJSONObject", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			dec := json.NewDecoder(stringsReader(got))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				t.Fatal(err)
			}
			if gb, wb := mustJSON(t, m), mustJSON(t, tt.want); gb != wb {
				t.Errorf("got %s, want %s", gb, wb)
			}
			if id, ok := conversations.StampID(got); !ok || id != "task-1" {
				t.Errorf("StampID = %q, %v", id, ok)
			}
		})
	}
	if _, err := conversations.StampAttributes("", ""); err == nil {
		t.Error("empty id accepted")
	}
}

func TestStampID(t *testing.T) {
	t.Parallel()
	for attrs, want := range map[string]string{
		`{}`:                               "",
		`{ "importance": "high" }`:         "",
		`{"proxyq":{"id":"a"}}`:            "a",
		`{"proxyq":{"id":""}}`:             "",
		`{"proxyq":{"id":7}}`:              "",
		`{"proxyq":"a"}`:                   "",
		`not json, mentions proxyq`:        "",
		`{"x":{"proxyq":{"id":"nested"}}}`: "",
	} {
		got, ok := conversations.StampID(attrs)
		if got != want || ok != (want != "") {
			t.Errorf("StampID(%s) = %q, %v; want %q", attrs, got, ok, want)
		}
	}
}

// TestFindStampedIdenticalBodies is the proof: two messages with the same body to one
// conversation, each create ending ambiguous (created, then a 500 / a reset), each reconciled
// to its own message by its stamp — with other messages of the same body around them.
func TestFindStampedIdenticalBodies(t *testing.T) {
	t.Parallel()
	srv, c := newFake(t, convtest.Config{})
	ctx := context.Background()
	conv := conversations.Conversation{ConversationSID: testCH}
	send := func(id string) (*conversations.Message, error) {
		attrs, err := conversations.StampAttributes(`{"app":"clinic"}`, id)
		if err != nil {
			t.Fatal(err)
		}
		return c.CreateMessage(ctx, conversations.CreateParams{Conversation: conv, Author: "clinic", Body: "Your appointment is at 3pm", Attributes: attrs})
	}
	// Noise: same body, no stamp and a foreign stamp.
	if _, err := c.CreateMessage(ctx, conversations.CreateParams{Conversation: conv, Body: "Your appointment is at 3pm"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-2 * time.Second)
	for _, fault := range []proxytest.Fault{proxytest.Fault500AfterCreate, proxytest.FaultResetAfterCreate} {
		if err := srv.Fake.Inject(fault, 1); err != nil {
			t.Fatal(err)
		}
	}
	_, errA := send("task-A")
	_, errB := send("task-B")
	for _, err := range []error{errA, errB} {
		if conversations.Classify(err) != proxyclient.ClassAmbiguous {
			t.Fatalf("create err = %v (class %v), want ambiguous", err, conversations.Classify(err))
		}
	}
	if _, err := send("task-C"); err != nil { // a later message of the same body, answered fine
		t.Fatal(err)
	}

	stored := srv.Fake.Messages(testAccount, "", testCH)
	if len(stored) != 4 {
		t.Fatalf("fake holds %d messages, want 4", len(stored))
	}
	for i, id := range []string{"task-A", "task-B"} {
		res, err := c.FindStamped(ctx, conv, id, conversations.FindOptions{PageSize: 1, MaxPages: 10, NotBefore: start})
		if err != nil {
			t.Fatal(err)
		}
		want := stored[1+i]
		if res.Message == nil || res.Message.SID != want.SID || res.Message.Index != want.Index {
			t.Fatalf("FindStamped(%s) = %+v, want %s (index %d)", id, res.Message, want.SID, want.Index)
		}
	}
	// Not created: the search covers the conversation and says so.
	res, err := c.FindStamped(ctx, conv, "task-Z", conversations.FindOptions{PageSize: 2})
	if err != nil || res.Message != nil || !res.Complete || res.Scanned != 4 {
		t.Fatalf("missing stamp: %+v, %v; want complete, not found, 4 scanned", res, err)
	}
	// Bounded: one page of one message proves nothing.
	res, err = c.FindStamped(ctx, conv, "task-A", conversations.FindOptions{PageSize: 1, MaxPages: 1})
	if err != nil || res.Message != nil || res.Complete || res.Pages != 1 {
		t.Fatalf("bounded search: %+v, %v; want incomplete", res, err)
	}
	// NotBefore ends the search at an older message and counts as complete.
	res, err = c.FindStamped(ctx, conv, "task-Z", conversations.FindOptions{PageSize: 1, NotBefore: time.Now().Add(time.Hour)})
	if err != nil || !res.Complete || res.Scanned != 1 {
		t.Fatalf("NotBefore: %+v, %v; want complete after 1", res, err)
	}
}

// TestFaultsClassifyEndToEnd runs every fault kind of the fake through the client: the class
// the caller sees, and whether a message was stored (the reason ambiguity matters).
func TestFaultsClassifyEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fault  proxytest.Fault
		class  proxyclient.Class
		stored bool
	}{
		{proxytest.Fault429, proxyclient.ClassRetryable, false},
		{proxytest.Fault429RetryAfter, proxyclient.ClassRetryable, false},
		{proxytest.Fault503, proxyclient.ClassRetryable, false},
		{proxytest.Fault500BeforeCreate, proxyclient.ClassAmbiguous, false},
		{proxytest.Fault500AfterCreate, proxyclient.ClassAmbiguous, true},
		{proxytest.Fault502AfterCreate, proxyclient.ClassAmbiguous, true},
		{proxytest.Fault504AfterCreate, proxyclient.ClassAmbiguous, true},
		{proxytest.FaultResetAfterCreate, proxyclient.ClassAmbiguous, true},
		{proxytest.FaultHangAfterCreate, proxyclient.ClassAmbiguous, true},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			t.Parallel()
			srv, err := convtest.NewServer(convtest.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, func(cfg *conversations.Config) { cfg.HTTPTimeout = 300 * time.Millisecond })
			if err := srv.Fake.Inject(tt.fault, 1); err != nil {
				t.Fatal(err)
			}
			_, err = c.CreateMessage(context.Background(), conversations.CreateParams{Conversation: conversations.Conversation{ConversationSID: testCH2}, Body: "x"})
			if got := conversations.Classify(err); got != tt.class {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.class)
			}
			if n := len(srv.Fake.Messages(testAccount, "", testCH2)); (n == 1) != tt.stored {
				t.Errorf("stored %d messages, want stored=%v", n, tt.stored)
			}
			if tt.fault == proxytest.Fault429RetryAfter {
				if d, ok := conversations.RetryAfter(err); !ok || d != time.Second {
					t.Errorf("RetryAfter = %v, %v", d, ok)
				}
			}
		})
	}
}
