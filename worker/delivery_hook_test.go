package worker

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/autopipe"
	"github.com/proxyq/proxyq/tasks"
)

type recordedCall struct {
	queue, id, account string
	o                  tasks.Outcome
	indexed            bool
}

// hookRecorder records the hook's calls; fail, when set, answers each call (before recording
// it) and may panic to stand for a process that dies there.
type hookRecorder struct {
	mu    sync.Mutex
	calls []recordedCall
	fail  func(call int) error
	n     int
}

func (h *hookRecorder) IndexTTL() time.Duration { return time.Hour }

func (h *hookRecorder) Recorded(_ context.Context, queue, taskID, accountSID string, o *tasks.Outcome, indexed bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.fail != nil {
		if err := h.fail(h.n); err != nil {
			return err
		}
	}
	h.calls = append(h.calls, recordedCall{queue, taskID, accountSID, *o, indexed})
	return nil
}

func (h *hookRecorder) recorded() []recordedCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recordedCall(nil), h.calls...)
}

// The delivery hook hears of every send recorded, on both paths — the POST's own answer, and
// reconciliation after a POST that answered 500 (where status callbacks routinely arrive
// first) — and again on every later run that finds the message sent, since the run that sent
// it may not have set tracking up. A run that sends nothing new (a retry after a refusal)
// does not call it.
func TestDeliveryHookOnEveryRecordedSend(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, func(c *Config) { c.ReconcileSettle = time.Millisecond })
	hook := &hookRecorder{}
	f.h.SetDeliveryHook(hook)

	if err := f.run(t, "m1", testPayload("one")); err != nil {
		t.Fatal(err)
	}
	f.api.script = []error{apiError(500, 0)}
	wantRetry(t, f.run(t, "m2", testPayload("two")), true)
	if n := len(hook.recorded()); n != 1 {
		t.Fatalf("%d hook calls after a 500, want 1 (m1 only)", n)
	}
	if err := f.run(t, "m2", testPayload("two")); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, "m1", testPayload("one")); err != nil { // asynq ran it again: re-recorded, no send
		t.Fatal(err)
	}
	calls := hook.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d hook calls, want 3: %+v", len(calls), calls)
	}
	// indexed: the record's claim wrote the delivery index (the send and the reconciled send);
	// a re-run that only finds the message sent wrote nothing, so the hook must check.
	for i, want := range []struct {
		id                  string
		reconciled, indexed bool
	}{{"m1", false, true}, {"m2", true, true}, {"m1", false, false}} {
		c := calls[i]
		if c.id != want.id || c.queue != "default" || c.account != f.api.AccountKey() || c.o.State != tasks.OutcomeSent || c.o.InteractionSID == "" ||
			c.o.Reconciled != want.reconciled || c.o.OutboundResourceSID == "" || c.indexed != want.indexed {
			t.Errorf("call %d: %+v, want %s reconciled=%v indexed=%v", i, c, want.id, want.reconciled, want.indexed)
		}
	}
	if calls[2].o.InteractionSID != calls[0].o.InteractionSID {
		t.Errorf("the re-run told the hook of %s, want m1's %s", calls[2].o.InteractionSID, calls[0].o.InteractionSID)
	}
	if n := f.api.creates.Load(); n != 2 {
		t.Errorf("%d creates, want 2: a re-run never sends again", n)
	}
}

// faultHook is a go-redis hook that breaks chosen commands or pipelines once each: before
// they reach Redis (the request is lost) or after (the reply is lost).
type faultHook struct {
	// cmd, when it matches a command that ran, replaces its reply by an error (reply lost).
	cmd func(redis.Cmder) bool
	// pipeline, when it matches a pipeline, fails it before it is sent (request lost). A
	// command sent alone is a pipeline of one: go-redis's autopipeliner sends a batch of one
	// through the process hook.
	pipeline func([]redis.Cmder) bool
	// after is called with each pipeline that went through.
	after func([]redis.Cmder)
	fired atomic.Int32
}

var errInjected = &net.OpError{Op: "read", Net: "tcp", Err: errors.New("injected: connection reset")}

func (f *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.pipeline != nil && f.pipeline([]redis.Cmder{cmd}) && f.fired.Add(1) == 1 {
			cmd.SetErr(errInjected)
			return errInjected
		}
		err := next(ctx, cmd)
		if err == nil && f.cmd != nil && f.cmd(cmd) && f.fired.Add(1) == 1 {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return err
	}
}

func (f *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.pipeline != nil && f.pipeline(cmds) && f.fired.Add(1) == 1 {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		err := next(ctx, cmds)
		if f.after != nil {
			f.after(cmds)
		}
		return err
	}
}

// scriptRun matches a run of script (EVALSHA, or EVAL when it was not loaded yet).
func scriptRun(script *redis.Script) func(redis.Cmder) bool {
	return func(c redis.Cmder) bool {
		args := c.Args()
		switch strings.ToLower(c.Name()) {
		case "evalsha":
			return len(args) > 1 && args[1] == script.Hash()
		case "eval":
			src, _ := args[1].(string)
			return len(args) > 1 && redis.NewScript(src).Hash() == script.Hash()
		}
		return false
	}
}

// withFaults puts the ledger's commands on a client of the same Redis with h installed, and
// without the autopipeliner, so that each of the ledger's scripts is one command h sees.
func withFaults(t *testing.T, f *handlerFixture, h *faultHook) *redis.Client {
	t.Helper()
	c := redis.NewClient(f.h.ledger.rdb.(*redis.Client).Options())
	t.Cleanup(func() { _ = c.Close() })
	c.AddHook(h)
	f.h.ledger = NewLedger(c, f.h.cfg.LedgerTTL)
	f.h.ledger.pipe = autopipe.Direct(c)
	return c
}

// Issue 20 (2a): MarkSent's script ran but its reply was lost. The run cannot know it was
// recorded and asks for a retry; the next run finds the ledger sent and must set delivery
// tracking up (before the fix it returned at once: the message was never tracked).
func TestDeliveryTrackedAfterLostMarkSentReply(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	hook := &hookRecorder{}
	f.h.SetDeliveryHook(hook)
	faults := &faultHook{cmd: scriptRun(claimSentScript)}
	withFaults(t, f, faults)

	wantRetry(t, f.run(t, "m1", testPayload("one")), false)
	if faults.fired.Load() != 1 {
		t.Fatal("the fault was not injected: the test proves nothing")
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptSent {
		t.Fatalf("ledger %+v: MarkSent's script should have run", e)
	}
	if err := f.run(t, "m1", testPayload("one")); err != nil {
		t.Fatal(err)
	}
	calls := hook.recorded()
	if len(calls) != 1 || calls[0].id != "m1" || calls[0].o.InteractionSID == "" {
		t.Fatalf("hook calls %+v: the run that found the message sent must set its tracking up", calls)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

// Issue 20 (2b): the worker dies between MarkSent and the hook (the hook panics where the
// process would stop). asynq runs the task again; that run finds the ledger sent and must set
// tracking up.
func TestDeliveryTrackedAfterWorkerDiedBeforeHook(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	hook := &hookRecorder{fail: func(call int) error {
		if call == 1 {
			panic("worker killed")
		}
		return nil
	}}
	f.h.SetDeliveryHook(hook)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the first run never reached the hook")
			}
		}()
		_ = f.run(t, "m1", testPayload("one"))
	}()
	if e := f.entry(t, "m1"); e.Attempt != attemptSent {
		t.Fatalf("ledger %+v, want sent", e)
	}
	if err := f.run(t, "m1", testPayload("one")); err != nil {
		t.Fatal(err)
	}
	if calls := hook.recorded(); len(calls) != 1 || calls[0].o.InteractionSID == "" {
		t.Fatalf("hook calls %+v: the next run must set the tracking up", calls)
	}
}

// Issue 20 (2b, reconcile path): the task's context is cancelled (shutdown, task timeout)
// just after reconciliation found the interaction and read its claims. Recording and tracking
// run on a detached context: this run records the message and sets its tracking up.
func TestDeliveryTrackedWhenReconcilingRunIsCancelled(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, func(c *Config) { c.ReconcileSettle = time.Millisecond })
	hook := &hookRecorder{}
	f.h.SetDeliveryHook(hook)
	f.api.script = []error{apiError(500, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	withFaults(t, f, &faultHook{after: func(cmds []redis.Cmder) {
		// The claims read (a GET of each interaction's key), the last step before recording.
		if key, _ := cmds[0].Args()[1].(string); strings.EqualFold(cmds[0].Name(), "get") && strings.HasPrefix(key, "proxyq:{ki:") {
			cancel()
		}
	}})
	wantRetry(t, f.run(t, "m1", testPayload("one")), true)

	if err := f.h.handle(ctx, "m1", testQ, payloadTask(t, testPayload("one"))); err != nil {
		t.Fatalf("cancelled after the claims read: %v; want the found interaction recorded", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the task's context was not cancelled: the test proves nothing")
	}
	if calls := hook.recorded(); len(calls) != 1 || !calls[0].o.Reconciled {
		t.Fatalf("hook calls %+v, want the reconciled send", calls)
	}
}

// Issue 20 (2c): delivery's own pipeline (index, early callbacks, poll entry) fails. The run
// must not complete untracked: it asks for a retry that is not a failure, and the next run
// (which finds the ledger sent) leaves the message indexed and findable by the poll.
func TestDeliveryTrackedWhenRecordedPipelineFails(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	faults := &faultHook{pipeline: func(cmds []redis.Cmder) bool {
		for _, c := range cmds {
			if strings.EqualFold(c.Name(), "zadd") {
				return true
			}
		}
		return false
	}}
	drdb := redis.NewClient(f.h.ledger.rdb.(*redis.Client).Options())
	t.Cleanup(func() { _ = drdb.Close() })
	drdb.AddHook(faults)
	svc, err := delivery.New(delivery.Config{}, drdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.SetDeliveryHook(svc)
	ctx := context.Background()
	polled := func(ki string) bool {
		_, err := f.h.ledger.rdb.ZScore(ctx, "proxyq:delivery:poll", ki).Result()
		return err == nil
	}

	rl := wantRetry(t, f.run(t, "m1", testPayload("one")), false)
	if faults.fired.Load() != 1 {
		t.Fatal("the fault was not injected: the test proves nothing")
	}
	if rl.After <= 0 {
		t.Errorf("retry after %v, want a wait", rl.After)
	}
	o := f.result(t, "m1")
	if o == nil || o.State != tasks.OutcomeSent || polled(o.InteractionSID) {
		t.Fatalf("after the failed pipeline: %+v (polled %v); want sent, not yet polled", o, o != nil && polled(o.InteractionSID))
	}
	if err := f.run(t, "m1", testPayload("one")); err != nil {
		t.Fatal(err)
	}
	if !polled(o.InteractionSID) {
		t.Fatal("the message is sent but the poll cannot find it")
	}
	if n, _ := f.h.ledger.rdb.Exists(ctx, "proxyq:{ki:"+o.InteractionSID+"}:msg").Result(); n != 1 {
		t.Fatal("the interaction is not indexed: its callbacks cannot find it")
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}
