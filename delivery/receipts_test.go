package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/tasks"
)

const (
	receiptsPublic = "https://proxyq.example.com"
	otherAccount   = "AC00000000000000000000000000000002"
	otherToken     = "other-account-token-0123456789ab"
	testConv       = "CH0000000000000000000000000000000c"
)

// convEnv is a Conversations fake posting signed onDeliveryUpdated webhooks to a receipts
// handler on loopback, and a client to create messages with.
type convEnv struct {
	*env
	s      *Service
	fake   *convtest.Server
	client *conversations.Client
	h      http.Handler
}

func newConvEnv(t *testing.T, cfg Config, dc convtest.DeliveryConfig) *convEnv {
	t.Helper()
	e := newEnv(t)
	s := e.service(t, cfg)
	h, err := s.ReceiptsHandler(CallbackConfig{PublicURL: receiptsPublic,
		Tokens: Tokens{StaticToken{AccountSID: testAccount, Token: testToken}, StaticToken{AccountSID: otherAccount, Token: otherToken}}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	if !dc.Advance {
		dc.URL, dc.SigningURL = front.URL+ReceiptsPath, receiptsPublic+ReceiptsPath
	}
	dc.AuthToken = testToken
	fake, err := convtest.NewServer(convtest.Config{Delivery: dc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	client, err := conversations.New(conversations.Config{AccountSID: testAccount, AuthToken: testToken, BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &convEnv{env: e, s: s, fake: fake, client: client, h: h}
}

// send creates a message at the fake and records it as the worker does (the outcome as the
// task's result, then the hook), returning the task ID and the outcome.
func (c *convEnv) send(t *testing.T) (string, *tasks.Outcome) {
	t.Helper()
	m, err := c.client.CreateMessage(context.Background(), conversations.CreateParams{
		Conversation: conversations.Conversation{ConversationSID: testConv}, Body: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.cli.Enqueue(asynq.NewTask(tasks.TypeSendConversationMessage, []byte(`{}`)), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	o := &tasks.Outcome{State: tasks.OutcomeSent, API: tasks.APIConversations, MessageSID: m.SID, ConversationSID: testConv,
		Attempts: 1, SentAt: &m.DateCreated, RecordedAt: time.Now().UTC()}
	data, _ := tasks.EncodeOutcome(o)
	if err := c.rdb.HSet(context.Background(), taskKey("default", info.ID), "result", data).Err(); err != nil {
		t.Fatal(err)
	}
	c.s.Recorded(context.Background(), "default", info.ID, testAccount, o, false)
	return info.ID, o
}

// post sends a receipt for im signed with token ("-": unsigned).
func (c *convEnv) post(im, account, status, token string) int {
	p := url.Values{"EventType": {"onDeliveryUpdated"}, "AccountSid": {account}, "ConversationSid": {testConv},
		"MessageSid": {im}, "DeliveryReceiptSid": {"DY" + strings.Repeat("0", 32)}, "Status": {status},
		"DateUpdated": {time.Now().UTC().Format(time.RFC3339)}}
	req := httptest.NewRequest(http.MethodPost, ReceiptsPath, strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "-" {
		req.Header.Set("X-Twilio-Signature", Signature(token, receiptsPublic+ReceiptsPath, p))
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec.Code
}

// Receipts from the fake, every one posted twice and each message's held and posted newest
// first, end every record final with the right status, error and meaning.
func TestReceiptsDuplicatedAndOutOfOrderEndFinal(t *testing.T) {
	c := newConvEnv(t, Config{}, convtest.DeliveryConfig{Duplicates: true, OutOfOrder: true, Delay: 5 * time.Millisecond})
	want := []struct {
		outcome convtest.Outcome
		status  string
		code    int
		history []string
	}{
		{convtest.Delivered, "delivered", 0, []string{"delivered"}},
		{convtest.Read, "delivered", 0, []string{"delivered", "read"}},
		{convtest.Undelivered, "undelivered", 30003, []string{"undelivered"}},
		{convtest.Failed, "failed", 30008, []string{"failed"}},
	}
	var ids []string
	for _, w := range want {
		c.fake.Fake.ScriptDelivery(w.outcome, 1)
		id, _ := c.send(t)
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.fake.Fake.WaitDelivery(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cb := range c.fake.Fake.Callbacks() {
		if cb.Err != nil || cb.Status != http.StatusOK {
			t.Fatalf("receipt %v answered %d (%v), want 200", cb.Params, cb.Status, cb.Err)
		}
	}
	for i, w := range want {
		o := c.outcome(t, "default", ids[i])
		if !o.Final || o.OutboundStatus != w.status || o.DeliveryErrorCode != w.code {
			t.Errorf("%v: outcome %+v, want final %s code %d", w.outcome, o, w.status, w.code)
		}
		if w.code != 0 && o.DeliveryError != DeliveryErrorMeaning(w.code) {
			t.Errorf("%v: error meaning %q", w.outcome, o.DeliveryError)
		}
		if (w.status == "delivered") != (o.DeliveredAt != nil) {
			t.Errorf("%v: delivered_at %v", w.outcome, o.DeliveredAt)
		}
		got := statuses(o)
		for _, st := range w.history {
			if !slices.Contains(got, st) {
				t.Errorf("%v: history %v lacks %s", w.outcome, got, st)
			}
		}
	}
}

// A forged receipt (bad or missing signature, unknown account) gets 403 and changes nothing; a
// receipt signed by another account we serve changes nothing either.
func TestReceiptForgedOrOtherAccountChangesNothing(t *testing.T) {
	c := newConvEnv(t, Config{PollOff: true}, convtest.DeliveryConfig{Advance: true, Delay: time.Hour})
	id, o := c.send(t)
	before := c.rawResult(t, "default", id)
	for name, tc := range map[string]struct {
		account, token string
		code           int
	}{
		"wrong token":     {testAccount, "forged-token", http.StatusForbidden},
		"unsigned":        {testAccount, "-", http.StatusForbidden},
		"unknown account": {"AC0000000000000000000000000000dead", testToken, http.StatusForbidden},
		"other account":   {otherAccount, otherToken, http.StatusOK},
	} {
		if code := c.post(o.MessageSID, tc.account, "delivered", tc.token); code != tc.code {
			t.Errorf("%s: %d, want %d", name, code, tc.code)
		}
	}
	if after := c.rawResult(t, "default", id); after != before {
		t.Fatalf("record changed by forged or foreign receipts:\n%s\n%s", before, after)
	}
	// The genuine one applies.
	if code := c.post(o.MessageSID, testAccount, "delivered", testToken); code != http.StatusOK {
		t.Fatal(code)
	}
	if got := c.outcome(t, "default", id); got.OutboundStatus != "delivered" || !got.Final {
		t.Fatalf("outcome %+v, want delivered", got)
	}
}

// A receipt before the send is recorded is kept and applied when it is, only if signed by the
// message's account.
func TestReceiptEarlyAppliedOnRecord(t *testing.T) {
	c := newConvEnv(t, Config{PollOff: true}, convtest.DeliveryConfig{Advance: true, Delay: time.Hour})
	im := "IM" + strings.Repeat("e", 32)
	if code := c.post(im, otherAccount, "undelivered", otherToken); code != http.StatusOK {
		t.Fatal(code)
	}
	if code := c.post(im, testAccount, "delivered", testToken); code != http.StatusOK {
		t.Fatal(code)
	}
	info, err := c.cli.Enqueue(asynq.NewTask(tasks.TypeSendConversationMessage, []byte(`{}`)), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	o := &tasks.Outcome{State: tasks.OutcomeSent, API: tasks.APIConversations, MessageSID: im, ConversationSID: testConv, Attempts: 1, RecordedAt: time.Now().UTC()}
	data, _ := json.Marshal(o)
	if err := c.rdb.HSet(context.Background(), taskKey("default", info.ID), "result", data).Err(); err != nil {
		t.Fatal(err)
	}
	c.s.Recorded(context.Background(), "default", info.ID, testAccount, o, false)
	got := c.outcome(t, "default", info.ID)
	if got.OutboundStatus != "delivered" || slices.Contains(statuses(got), "undelivered") {
		t.Fatalf("outcome %+v: want delivered, the other account's receipt dropped", got)
	}
}

type grantAll struct{}

func (grantAll) Acquire(context.Context, string, time.Duration) (func(bool), error) {
	return func(bool) {}, nil
}

type clientReceipts struct{ c *conversations.Client }

func (r clientReceipts) ListReceipts(ctx context.Context, _ string, conv conversations.Conversation, im string) ([]conversations.Receipt, error) {
	p, err := r.c.ListReceipts(ctx, conv, im, conversations.ListOptions{})
	if err != nil {
		return nil, err
	}
	return p.Receipts, nil
}

// Without webhooks, the poll fallback lists the message's receipts and ends it final.
func TestReceiptsPollFallback(t *testing.T) {
	c := newConvEnv(t, Config{PollAfter: time.Millisecond, PollEvery: time.Millisecond}, convtest.DeliveryConfig{Advance: true, Delay: 5 * time.Millisecond})
	c.fake.Fake.ScriptDelivery(convtest.Undelivered, 1)
	id, _ := c.send(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.fake.Fake.WaitDelivery(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := c.s.NewWorker(nil, grantAll{})
	if err != nil {
		t.Fatal(err)
	}
	w.SetReceiptLister(clientReceipts{c.client})
	time.Sleep(5 * time.Millisecond)
	if _, err := w.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	o := c.outcome(t, "default", id)
	if o.OutboundStatus != "undelivered" || !o.Final || o.DeliveryErrorCode != 30003 {
		t.Fatalf("outcome after poll %+v, want undelivered 30003 final", o)
	}
	if still := stillPolled(t, c.rdb, o.MessageSID); len(still) != 0 {
		t.Fatal("still scheduled once final")
	}
}
