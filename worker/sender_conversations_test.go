package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// Conversations messages through the one send policy, against the Conversations fake (convtest)
// on loopback and a real Redis (the ledger's scripts and asynq's task hash).

const (
	convAccount = "AC0123456789abcdef0123456789abcdef"
	convToken   = "conv-test-token"
)

type convFixture struct {
	h      *Handler
	srv    *convtest.Server
	client *conversations.Client
}

func newConvFixture(t *testing.T, mod func(*Config)) *convFixture {
	t.Helper()
	cfg := Config{ReconcileSettle: 300 * time.Millisecond, HTTPTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := convtest.NewServer(convtest.Config{HangLimit: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client, err := conversations.New(conversations.Config{AccountSID: convAccount, AuthToken: convToken, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ledger := NewLedger(redistest.NewDB(t).Client(t), cfg.LedgerTTL)
	h := NewHandler(cfg, &stubAPI{}, ledger, nil, nil, nil)
	h.SetConversations(client, nil)
	return &convFixture{h: h, srv: srv, client: client}
}

func convCH(n int) string { return fmt.Sprintf("CH%032x", n) }

func convTask(t *testing.T, p tasks.ConversationPayload) *asynq.Task {
	t.Helper()
	task, err := p.Task()
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// run is one delivery of task id (its asynq task hash is created the first time).
func (f *convFixture) run(t *testing.T, id string, p tasks.ConversationPayload) error {
	t.Helper()
	if n, err := f.h.ledger.rdb.Exists(context.Background(), LedgerKey(testQ, id)).Result(); err != nil || n == 0 {
		makeTask(t, f.h.ledger.rdb, testQ, id)
	}
	return f.h.handle(context.Background(), id, testQ, convTask(t, p))
}

// runToEnd runs the message as asynq would, the waits shortened, until it ends; it fails
// the test when the message is archived.
func (f *convFixture) runToEnd(t *testing.T, id string, p tasks.ConversationPayload) *tasks.Outcome {
	t.Helper()
	for range 40 {
		err := f.run(t, id, p)
		if err == nil {
			return (&handlerFixture{h: f.h}).result(t, id)
		}
		if errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("%s archived: %v", id, err)
		}
		wait := 50 * time.Millisecond
		var rl *retryLater
		if errors.As(err, &rl) && rl.After > 0 {
			wait = min(rl.After, 350*time.Millisecond)
		}
		time.Sleep(wait)
	}
	t.Fatalf("%s did not end in 40 runs", id)
	return nil
}

func (f *convFixture) messages(ch string) []convtest.Message {
	return f.srv.Fake.Messages(convAccount, "", ch)
}

func TestConversationMessageSentEndToEnd(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	ch := convCH(1)
	p := tasks.ConversationPayload{ConversationSID: ch, Author: "clinic", Body: "Your appointment is at 3pm",
		Attributes: json.RawMessage(`{"app":"clinic"}`), WebhookEnabled: new(false)}
	o := f.runToEnd(t, "conv-1", p)
	if o.State != tasks.OutcomeSent || o.API != tasks.APIConversations || !strings.HasPrefix(o.MessageSID, "IM") ||
		o.InteractionSID != "" || o.Attempts != 1 || o.Reconciled || o.SentAt == nil {
		t.Fatalf("outcome = %+v, want sent to conversations with an IM SID, one attempt", o)
	}
	// A second delivery of the task (asynq is at least once) sends nothing.
	if err := f.run(t, "conv-1", p); err != nil {
		t.Fatal(err)
	}
	ms := f.messages(ch)
	if len(ms) != 1 {
		t.Fatalf("%d messages at Twilio, want 1", len(ms))
	}
	m := ms[0]
	if m.SID != o.MessageSID || m.Author != "clinic" || m.Body != p.Body || m.WebhookEnabled != "false" {
		t.Fatalf("message = %+v, want the payload's, SID %s", m, o.MessageSID)
	}
	if id, ok := conversations.StampID(m.Attributes); !ok || id != "conv-1" || !strings.Contains(m.Attributes, `"app":"clinic"`) {
		t.Fatalf("attributes %s: want the producer's and proxyq's stamp conv-1", m.Attributes)
	}
	// Exact reconciliation needs no claims: no interaction key (the ledger's claim) was written.
	keys, err := f.h.ledger.rdb.Keys(context.Background(), interaction.Key("*")).Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("claims %v (%v), want none for a Conversations message", keys, err)
	}
	if e := (&handlerFixture{h: f.h}).entry(t, "conv-1"); e.Attempt != attemptSent {
		t.Fatalf("ledger = %+v, want sent", e)
	}
}

// Every fault the fake serves ends with exactly one message at Twilio, recorded as the task's.
func TestConversationFaultsEndWithExactlyOneMessage(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	for i, tc := range []struct {
		fault      convtest.Fault
		reconciled bool
	}{
		{proxytest.Fault429, false},
		{proxytest.Fault429RetryAfter, false},
		{proxytest.Fault503, false},
		{proxytest.Fault500BeforeCreate, false},
		{proxytest.Fault500AfterCreate, true},
		{proxytest.Fault502AfterCreate, true},
		{proxytest.Fault504AfterCreate, true},
		{proxytest.FaultResetAfterCreate, true},
		{proxytest.FaultHangAfterCreate, true},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			// Not parallel: the fake's fault queue is shared.
			ch := convCH(100 + i)
			id := "fault-" + tc.fault.String()
			if err := f.srv.Fake.Inject(tc.fault, 1); err != nil {
				t.Fatal(err)
			}
			o := f.runToEnd(t, id, tasks.ConversationPayload{ConversationSID: ch, Body: "same text"})
			ms := f.messages(ch)
			if len(ms) != 1 {
				t.Fatalf("%d messages at Twilio after %s, want exactly 1", len(ms), tc.fault)
			}
			if o.MessageSID != ms[0].SID || o.Reconciled != tc.reconciled {
				t.Fatalf("outcome %+v, want message %s reconciled=%v", o, ms[0].SID, tc.reconciled)
			}
		})
	}
	if n := f.srv.Fake.Stats().Faults; len(n) != 9 {
		t.Fatalf("faults served %v, want each of the 9 once", n)
	}
}

// Two messages with identical bodies to one conversation, each ending ambiguous: each is
// reconciled to its own message (by its stamp), never to the other's.
func TestConversationIdenticalBodiesReconciledToTheirOwnMessage(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	ch := convCH(2)
	p := tasks.ConversationPayload{ConversationSID: ch, Author: "clinic", Body: "Reminder: bring your card"}
	if err := f.srv.Fake.Inject(proxytest.Fault500AfterCreate, 2); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"twin-a", "twin-b"} {
		wantRetry(t, f.run(t, id, p), true)
	}
	if ms := f.messages(ch); len(ms) != 2 {
		t.Fatalf("%d messages created, want 2", len(ms))
	}
	// Reconcile in the opposite order of creation: the newest message is twin-b's.
	oa := f.runToEnd(t, "twin-a", p)
	ob := f.runToEnd(t, "twin-b", p)
	ms := f.messages(ch)
	if len(ms) != 2 {
		t.Fatalf("%d messages at Twilio, want 2", len(ms))
	}
	bySID := map[string]string{}
	for _, m := range ms {
		id, _ := conversations.StampID(m.Attributes)
		bySID[m.SID] = id
	}
	if !oa.Reconciled || !ob.Reconciled || oa.MessageSID == ob.MessageSID ||
		bySID[oa.MessageSID] != "twin-a" || bySID[ob.MessageSID] != "twin-b" {
		t.Fatalf("twin-a → %s, twin-b → %s; stamps %v: each must adopt its own", oa.MessageSID, ob.MessageSID, bySID)
	}
}

// Not found after the settle window, with a complete search: the request created nothing and
// the message is sent.
func TestConversationNotFoundAfterSettleIsSent(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	ch := convCH(3)
	p := tasks.ConversationPayload{ConversationSID: ch, Body: "hello"}
	if err := f.srv.Fake.Inject(proxytest.Fault500BeforeCreate, 1); err != nil {
		t.Fatal(err)
	}
	wantRetry(t, f.run(t, "nf", p), true) // ambiguous: a 500 may have created it
	// Reconciling before the settle window says wait, and sends nothing.
	rl := wantRetry(t, f.run(t, "nf", p), false)
	if rl.After <= 0 || len(f.messages(ch)) != 0 {
		t.Fatalf("before settling: retry %v with %d messages, want a wait and none", rl.After, len(f.messages(ch)))
	}
	o := f.runToEnd(t, "nf", p)
	if len(f.messages(ch)) != 1 || o.Reconciled || o.Attempts != 2 {
		t.Fatalf("outcome %+v with %d messages, want sent once on the second POST", o, len(f.messages(ch)))
	}
}

// A search cut short by its page bound proves nothing: the message is archived as unknown,
// never resent blindly.
func TestConversationInconclusiveSearchIsNotResent(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, func(c *Config) { c.ReconcileMaxPages, c.ReconcilePageSize = 1, 1 })
	ch := convCH(4)
	p := tasks.ConversationPayload{ConversationSID: ch, Body: "hello"}
	if err := f.srv.Fake.Inject(proxytest.Fault500BeforeCreate, 1); err != nil {
		t.Fatal(err)
	}
	wantRetry(t, f.run(t, "inc", p), true)
	// Two newer messages by someone else fill the one page reconciliation may read.
	for range 2 {
		if _, err := f.client.CreateMessage(context.Background(), conversations.CreateParams{
			Conversation: conversations.Conversation{ConversationSID: ch}, Body: "other"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(350 * time.Millisecond) // past the settle window
	err := f.run(t, "inc", p)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "none carried its stamp") {
		t.Fatalf("err = %v, want archived as unknown (search incomplete)", err)
	}
	if o := (&handlerFixture{h: f.h}).result(t, "inc"); o == nil || o.State != tasks.OutcomeUnknown {
		t.Fatalf("outcome %+v, want unknown", o)
	}
	if n := len(f.messages(ch)); n != 2 {
		t.Fatalf("%d messages, want the 2 others only", n)
	}
}

func TestConversationPermanentAndUnknownAccount(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	ch := convCH(5)
	f.srv.Fake.CloseConversation(convAccount, "", ch)
	err := f.run(t, "closed", tasks.ConversationPayload{ConversationSID: ch, Body: "hello"})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("closed conversation: %v, want archived", err)
	}
	if o := (&handlerFixture{h: f.h}).result(t, "closed"); o == nil || o.State != tasks.OutcomeFailed || o.ErrorCode != 50377 {
		t.Fatalf("outcome %+v, want failed with 50377", o)
	}
	err = f.run(t, "other-acct", tasks.ConversationPayload{ConversationSID: ch, Body: "hello", AccountSID: "AC" + strings.Repeat("9", 32)})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("unknown account: %v, want archived naming the account", err)
	}
	// A worker without a Conversations client archives nothing it cannot send: the type is
	// simply not registered (worker.go); the handler itself refuses clearly.
	h := NewHandler(f.h.cfg, &stubAPI{}, f.h.ledger, nil, nil, nil)
	makeTask(t, f.h.ledger.rdb, testQ, "no-client")
	err = h.handle(context.Background(), "no-client", testQ, convTask(t, tasks.ConversationPayload{ConversationSID: ch, Body: "x"}))
	if !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("no client: %v, want ErrUnknownAccount", err)
	}
	if n := len(f.messages(ch)); n != 0 {
		t.Fatalf("%d messages sent, want none", n)
	}
}

// scriptedConversations fails the next creates with the scripted errors (before creating
// anything, as a 429 is), then passes to the real client.
type scriptedConversations struct {
	ConversationsAPI
	script []error
}

func (s *scriptedConversations) CreateMessage(ctx context.Context, p conversations.CreateParams) (*conversations.Message, error) {
	if len(s.script) > 0 {
		err := s.script[0]
		s.script = s.script[1:]
		return nil, err
	}
	return s.ConversationsAPI.CreateMessage(ctx, p)
}

func adaptiveFactor(t *testing.T, f *convFixture, key string) string {
	t.Helper()
	v, err := f.h.ledger.rdb.HGet(context.Background(), key, "factor").Result()
	if err != nil {
		return "1000"
	}
	return v
}

// Conversations' published limits, shared through Redis: 30 creates per second per
// conversation on the per-scope limiter, the account's limits on the account limiter, both
// slowed by 429s.
func TestConversationLimits(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	rdb := redistest.NewDB(t).Client(t)
	services, err := NewServiceLimiter(rdb, ServiceLimits{MaxWait: time.Millisecond}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.SetServiceLimiter(services)
	acct, err := NewAccountLimiter(rdb, AccountLimits{MaxInFlight: 10, Rate: 100}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.limiter = acct
	f.h.ledger = NewLedger(rdb, f.h.cfg.LedgerTTL)
	ch, other := convCH(10), convCH(11)

	// The conversation's window (30 per second) is spent: the message goes back to the queue
	// without a failed attempt and without sending; another conversation is sent at once.
	for range 30 {
		if err := services.Acquire(context.Background(), convAccount, ch, EndpointCreate, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rl := wantRetry(t, f.run(t, "lim-1", tasks.ConversationPayload{ConversationSID: ch, Body: "x"}), false)
	var limited *LimitedError
	if !errors.As(rl, &limited) || limited.Service != ch || rl.After > 2*time.Second {
		t.Fatalf("retry %v, want the conversation's limit, back within about a second", rl)
	}
	if n := len(f.messages(ch)); n != 0 {
		t.Fatalf("sent %d over the conversation's limit", n)
	}
	if err := f.run(t, "lim-2", tasks.ConversationPayload{ConversationSID: other, Body: "x"}); err != nil {
		t.Fatal(err)
	}

	// 20429 slows the account, not the conversation.
	if err := f.srv.Fake.Inject(proxytest.Fault429, 1); err != nil {
		t.Fatal(err)
	}
	fresh := convCH(13) // an empty window: the request goes at once
	wantRetry(t, f.run(t, "lim-3", tasks.ConversationPayload{ConversationSID: fresh, Body: "y"}), false)
	if n := f.srv.Fake.Stats().Faults["429"]; n != 1 {
		t.Fatalf("429 served %d times, want 1", n)
	}
	if got := adaptiveFactor(t, f, adaptiveKey(convAccount)); got != "500" {
		t.Fatalf("account factor %s after 20429, want 500", got)
	}
	if got := adaptiveFactor(t, f, serviceTag(convAccount, fresh)+"adaptive"); got != "1000" {
		t.Fatalf("conversation factor %s after 20429, want untouched", got)
	}

	// Any other 429 may be the conversation's own limit: it halves the conversation's factor.
	third := convCH(12)
	f.h.SetConversations(&scriptedConversations{ConversationsAPI: f.client,
		script: []error{&proxyclient.Error{Method: "POST", StatusCode: 429, Message: "Too Many Requests"}}}, nil)
	rl = wantRetry(t, f.run(t, "lim-4", tasks.ConversationPayload{ConversationSID: third, Body: "z"}), false)
	if rl.After < time.Second || rl.After > 2*time.Second {
		t.Fatalf("retry after %v, want about one second", rl.After)
	}
	if got := adaptiveFactor(t, f, serviceTag(convAccount, third)+"adaptive"); got != "500" {
		t.Fatalf("conversation factor %s after its 429, want 500", got)
	}
	// Sent once the slowed conversation's window allows it.
	f.runToEnd(t, "lim-4", tasks.ConversationPayload{ConversationSID: third, Body: "z"})
	if n := len(f.messages(third)); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestConversationLimitConfig(t *testing.T) {
	t.Parallel()
	lim := ServiceLimits{}.WithDefaults()
	if lim.ConversationRate != 30 || lim.ConversationWindow != time.Second {
		t.Fatalf("defaults %v/%v, want Twilio's 30 per second", lim.ConversationRate, lim.ConversationWindow)
	}
	for _, bad := range []ServiceLimits{{ConversationRate: -1}, {ConversationWindow: 10 * time.Millisecond}, {ConversationRate: 0.5, ConversationWindow: time.Second}} {
		if err := bad.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "Conversation") {
			t.Errorf("%+v: %v, want an error naming the conversation limit", bad, err)
		}
	}
}

// The run's span names the API and the conversation, and the outcome's message SID.
func TestConversationTraceNamesTheAPI(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), SpanAttempt)
	makeTask(t, f.h.ledger.rdb, testQ, "traced")
	if err := f.h.handle(ctx, "traced", testQ, convTask(t, tasks.ConversationPayload{ConversationSID: convCH(20), Body: "x"})); err != nil {
		t.Fatal(err)
	}
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	got := map[attribute.Key]string{}
	for _, kv := range ended[0].Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	if got[AttrAPI] != "conversations" || got[AttrConversationSID] != convCH(20) {
		t.Fatalf("span attributes %v, want api and conversation", got)
	}
	var recorded bool
	for _, ev := range ended[0].Events() {
		for _, kv := range ev.Attributes {
			recorded = recorded || (kv.Key == AttrMessageSID && strings.HasPrefix(kv.Value.AsString(), "IM"))
		}
	}
	if !recorded {
		t.Fatal("no outcome event with the message SID")
	}
}
