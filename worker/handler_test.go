package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// stubAPI is a scripted Proxy API for handler unit tests: each create consumes the next scripted
// error (nil: success). Interactions it "creates" are listed back by ListMessageInteractions,
// as Twilio would, including those created by requests that then failed ambiguously.
type stubAPI struct {
	mu        sync.Mutex
	script    []error
	created   []proxyclient.MessageInteraction
	listErr   error
	extra     []proxyclient.MessageInteraction // listed as if created by someone else
	delay     time.Duration
	truncated bool
	creates   atomic.Int32
}

func (s *stubAPI) AccountKey() string { return "AC00000000000000000000000000000001" }

func (s *stubAPI) CreateMessageInteraction(ctx context.Context, p proxyclient.CreateParams) (*proxyclient.MessageInteraction, error) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var next error
	if len(s.script) > 0 {
		next, s.script = s.script[0], s.script[1:]
	}
	var apiErr *proxyclient.Error
	if errors.As(next, &apiErr) && apiErr.StatusCode != 500 && apiErr.StatusCode != 502 && apiErr.StatusCode != 504 {
		return nil, next // refused before creating
	}
	n := s.creates.Add(1)
	mi := testInteraction(fmt.Sprintf("KI%032d", n), p.Body, p.MediaURLs, time.Now().UTC().Truncate(time.Second))
	s.created = append(s.created, mi)
	if next != nil {
		return nil, next // created, then the answer was lost or an error
	}
	return &mi, nil
}

func (s *stubAPI) ListMessageInteractions(ctx context.Context, service, session, participant string, opt proxyclient.ListOptions) (*proxyclient.InteractionPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return nil, s.listErr
	}
	all := append(append([]proxyclient.MessageInteraction{}, s.extra...), s.created...)
	return &proxyclient.InteractionPage{Interactions: all, Truncated: s.truncated}, nil
}

func apiError(status, code int) *proxyclient.Error {
	return &proxyclient.Error{Method: "POST", Path: "/v1/…", StatusCode: status, Code: code, Message: http.StatusText(status)}
}

type handlerFixture struct {
	h   *Handler
	api *stubAPI
}

func newHandlerFixture(t *testing.T, mod func(*Config)) *handlerFixture {
	t.Helper()
	cfg := Config{ReconcileSettle: 300 * time.Millisecond, HTTPTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	api := &stubAPI{}
	ledger := NewLedger(redistest.NewDB(t).Client(t), cfg.LedgerTTL)
	return &handlerFixture{h: NewHandler(cfg, api, ledger, nil, nil, nil), api: api}
}

func payloadTask(t *testing.T, p tasks.Payload) *asynq.Task {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.NewTask(tasks.TypeSendInteraction, data)
}

func testPayload(body string) tasks.Payload {
	return tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP, Body: body}
}

// run is one delivery of task id, whose asynq task hash it creates the first time (as asynq's
// enqueue would: the ledger lives in it).
func (f *handlerFixture) run(t *testing.T, id string, p tasks.Payload) error {
	t.Helper()
	if n, err := f.h.ledger.rdb.Exists(context.Background(), LedgerKey(testQ, id)).Result(); err != nil || n == 0 {
		makeTask(t, f.h.ledger.rdb, testQ, id)
	}
	return f.h.handle(context.Background(), id, testQ, payloadTask(t, p))
}

// result is the outcome record the handler wrote as the task's asynq result (nil: none).
func (f *handlerFixture) result(t *testing.T, id string) *tasks.Outcome {
	t.Helper()
	data, err := f.h.ledger.rdb.HGet(context.Background(), LedgerKey(testQ, id), "result").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	o, err := tasks.ParseOutcome(data)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (f *handlerFixture) entry(t *testing.T, id string) Entry {
	t.Helper()
	e, err := f.h.ledger.Read(context.Background(), testQ, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantRetry(t *testing.T, err error, failure bool) *retryLater {
	t.Helper()
	var rl *retryLater
	if !errors.As(err, &rl) {
		t.Fatalf("err = %v, want a retry", err)
	}
	if rl.Failure != failure {
		t.Fatalf("retry %v counted as failure=%v, want %v", err, rl.Failure, failure)
	}
	return rl
}

func TestHandlerSendsOnceAndRecords(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatal(err)
	}
	// A second delivery of the same task (asynq is at-least-once) sends nothing.
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatal(err)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptSent {
		t.Fatalf("ledger = %+v, want sent", e)
	}
	if o := f.result(t, "m1"); o == nil || o.State != tasks.OutcomeSent || o.Attempts != 1 || o.InteractionSID != f.api.created[0].SID {
		t.Fatalf("result = %+v, want sent after 1 post with %s", o, f.api.created[0].SID)
	}
}

func TestHandler429IsNotAFailure(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	limited := apiError(429, 20429)
	limited.RetryAfter = 2 * time.Second
	f.api.script = []error{limited, apiError(429, 20429)}

	rl := wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	if rl.After != 2*time.Second {
		t.Fatalf("retry after %v, want Twilio's Retry-After 2s", rl.After)
	}
	rl = wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	if rl.After <= 0 {
		t.Fatalf("429 without Retry-After: retry after %v, want a backoff", rl.After)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptNone || e.MaySend(time.Now()) {
		t.Fatalf("ledger after 429 = %+v, want released with nothing outstanding", e)
	}
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.api.created); n != 1 {
		t.Fatalf("%d interactions created, want 1", n)
	}
}

func TestHandlerRetryableAndPermanent(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.api.script = []error{apiError(503, 0), apiError(404, 20404)}
	wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	err := f.run(t, "m1", testPayload("hi"))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "20404") {
		t.Fatalf("permanent error = %v, want SkipRetry naming 20404", err)
	}
	if len(f.api.created) != 0 {
		t.Fatal("a refused request created an interaction")
	}
}

func TestHandlerInvalidPayloadIsArchived(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	err := f.h.handle(context.Background(), "bad", "default", asynq.NewTask(tasks.TypeSendInteraction, []byte(`{"nope":1}`)))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "invalid payload") {
		t.Fatalf("err = %v, want SkipRetry with invalid payload", err)
	}
}

func TestHandlerExpiredIsNotSent(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	p := testPayload("late")
	past := time.Now().Add(-time.Minute)
	p.SendBefore = &past
	err := f.run(t, "m1", p)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want SkipRetry saying expired", err)
	}
	if f.api.creates.Load() != 0 {
		t.Fatal("an expired message was sent")
	}
}

func TestHandlerAmbiguousReconcilesInsteadOfResending(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.api.script = []error{apiError(502, 0)} // created, but the gateway answered 502
	rl := wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	if rl.After < 250*time.Millisecond {
		t.Fatalf("ambiguous retry after %v, want about the settle window", rl.After)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptUnknown {
		t.Fatalf("ledger = %+v, want unknown", e)
	}
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatalf("reconciling run: %v", err)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1 (the reconciled one)", n)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptSent {
		t.Fatalf("ledger = %+v, want sent", e)
	}
}

func TestHandlerAmbiguousNotCreatedWaitsToSettleThenSends(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	// A transport error after the request was written: nothing was created this time.
	lost := &proxyclient.TransportError{Method: "POST", Err: errors.New("connection reset"), RequestWritten: true}
	f.api.script = []error{lost}
	f.api.mu.Lock()
	f.api.creates.Store(0)
	f.api.mu.Unlock()
	// The stub creates on ambiguous errors; drop that creation to model "not created".
	wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	f.api.mu.Lock()
	f.api.created = nil
	f.api.mu.Unlock()

	// Before the settle window: nothing found, nothing sent, not a failure.
	wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	time.Sleep(350 * time.Millisecond)
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatalf("run after settle: %v", err)
	}
	if n := len(f.api.created); n != 1 {
		t.Fatalf("%d interactions exist, want 1", n)
	}
}

func TestHandlerReconcileFailureNeverSendsBlind(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, func(c *Config) { c.ReconcileSettle = time.Millisecond })
	f.api.script = []error{apiError(500, 0)}
	wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	f.api.listErr = apiError(503, 0)
	wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1: reconciliation failing must not resend", n)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptUnknown {
		t.Fatalf("ledger = %+v, want still unknown", e)
	}
}

func TestHandlerTruncatedListArchivesWithReason(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, func(c *Config) { c.ReconcileSettle = time.Millisecond })
	f.api.script = []error{apiError(500, 0)}
	wantRetry(t, f.run(t, "m1", testPayload("hi")), true)
	f.api.mu.Lock()
	f.api.created, f.api.truncated = nil, true
	f.api.mu.Unlock()
	err := f.run(t, "m1", testPayload("hi"))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("err = %v, want archived as outcome unknown", err)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

// Two messages with the same body to the same participant are two messages: when both outcomes
// are unknown, each adopts a different interaction, and a third finds none left and sends.
func TestHandlerIdenticalBodiesAreToldApart(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, func(c *Config) { c.ReconcileSettle = 200 * time.Millisecond })
	f.api.script = []error{apiError(500, 0), apiError(504, 0)}
	wantRetry(t, f.run(t, "a", testPayload("same")), true)
	wantRetry(t, f.run(t, "b", testPayload("same")), true)
	if err := f.run(t, "a", testPayload("same")); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, "b", testPayload("same")); err != nil {
		t.Fatal(err)
	}
	owners, err := f.h.ledger.ClaimedBy(context.Background(), testKP, time.Now().Add(-time.Minute), time.Now(), []string{f.api.created[0].SID, f.api.created[1].SID})
	if err != nil {
		t.Fatal(err)
	}
	if owners[0] == owners[1] || owners[0] == "" || owners[1] == "" {
		t.Fatalf("claims = %q, want a and b to hold one interaction each", owners)
	}

	// c's POST fails ambiguously without creating; both existing twins are claimed, so after
	// the settle window c sends its own.
	f.api.script = []error{&proxyclient.TransportError{Err: errors.New("timeout"), RequestWritten: true}}
	wantRetry(t, f.run(t, "c", testPayload("same")), true)
	f.api.mu.Lock()
	f.api.created = f.api.created[:2]
	f.api.mu.Unlock()
	time.Sleep(250 * time.Millisecond)
	if err := f.run(t, "c", testPayload("same")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.api.created); n != 3 {
		t.Fatalf("%d interactions, want 3 for 3 messages", n)
	}
}

// A second run of a task racing the first (an expired asynq lease, a task timeout) must not
// send while the first holds the message.
func TestHandlerConcurrentRunsSendOnce(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.api.delay = 200 * time.Millisecond
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = f.run(t, "m1", testPayload("hi"))
		}(i)
	}
	wg.Wait()
	succeeded := 0
	for _, err := range errs {
		if err == nil {
			succeeded++
			continue
		}
		wantRetry(t, err, false) // busy: not a failure
	}
	if succeeded != 1 || f.api.creates.Load() != 1 {
		t.Fatalf("%d runs succeeded and %d creates, want 1 and 1", succeeded, f.api.creates.Load())
	}
}

// alwaysLimited is a Limiter whose account never has room.
type alwaysLimited struct{}

func (alwaysLimited) Acquire(context.Context, string, string, time.Duration) (Permit, error) {
	return nil, &LimitedError{RetryIn: 100 * time.Millisecond, Reason: "in-flight cap"}
}

// A limiter wait is not a failed attempt, but the message's deadline still bounds it.
func TestHandlerLimiterWaitIsBoundedByTheDeadline(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.h.limiter = alwaysLimited{}
	p := testPayload("hi")
	wantRetry(t, f.run(t, "m1", p), false)
	if e := f.entry(t, "m1"); e.MaySend(time.Now()) {
		t.Fatalf("ledger after a limiter wait = %+v, want nothing outstanding", e)
	}
	past := time.Now().Add(-time.Second)
	p.SendBefore = &past
	err := f.run(t, "m2", p)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want archived as expired", err)
	}
	if f.api.creates.Load() != 0 {
		t.Fatal("a limited message was sent")
	}
}

// A process frozen between marking the send in flight and starting the POST (its lease may have
// lapsed and another run may be deciding) gives the message up instead of sending.
func TestHandlerStalledRunDoesNotSend(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	p := testPayload("hi")
	makeTask(t, f.h.ledger.rdb, testQ, "m1")
	own, err := f.h.ledger.AcquireToSend(context.Background(), testQ, "m1", f.h.claimLease(),
		SendIntent{Lease: f.h.sendLease(), SendWithin: time.Hour})
	if err != nil || !own.Began {
		t.Fatalf("AcquireToSend = %+v, %v", own, err)
	}
	r := &run{Handler: f.h, task: payloadTask(t, p), id: "m1", queue: "default", p: p, own: own, posts: own.Posts}
	err = r.post(context.Background(), noPermit{}, own.StartedAt, time.Now().Add(-f.h.cfg.HTTPTimeout))
	wantRetry(t, err, false)
	if n := f.api.creates.Load(); n != 0 {
		t.Fatalf("%d creates after a stall, want 0", n)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptNone {
		t.Fatalf("ledger after a stall = %+v, want nothing outstanding", e)
	}
}

// A message whose last request started beyond the claims' lifetime (an archived unknown message
// re-run from the dashboard days later) is not reconciled: a look-alike interaction's claim may
// be gone, so neither adopting nor resending is safe. It is archived with the reason.
func TestHandlerReconcileBeyondClaimHorizonArchives(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	makeTask(t, f.h.ledger.rdb, testQ, "old")
	started := time.Now().Add(-f.h.ledger.ClaimTTL() - time.Hour).UnixMilli()
	field := fmt.Sprintf("u:3:0:%d:%d:1", started, started)
	if err := f.h.ledger.rdb.HSet(context.Background(), LedgerKey(testQ, "old"), ledgerField, field).Err(); err != nil {
		t.Fatal(err)
	}
	f.api.extra = []proxyclient.MessageInteraction{testInteraction("KI00000000000000000000000000000077", "late", nil, time.Now().UTC().Truncate(time.Second))}
	err := f.run(t, "old", testPayload("late"))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "horizon") {
		t.Fatalf("err = %v, want archived beyond the reconciliation horizon", err)
	}
	if n := f.api.creates.Load(); n != 0 {
		t.Fatalf("%d creates, want none", n)
	}
	if o := f.result(t, "old"); o == nil || o.State != tasks.OutcomeUnknown || !strings.Contains(o.Error, "horizon") {
		t.Fatalf("result = %+v, want unknown with the reason", o)
	}
	if e := f.entry(t, "old"); e.Attempt != attemptUnknown {
		t.Fatalf("ledger = %+v, want still unknown", e)
	}
}
