package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

type recordedCall struct {
	queue, id, account string
	o                  tasks.Outcome
}

type hookRecorder struct {
	mu    sync.Mutex
	calls []recordedCall
}

func (h *hookRecorder) Recorded(_ context.Context, queue, taskID, accountSID string, o *tasks.Outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, recordedCall{queue, taskID, accountSID, *o})
}

// The delivery hook hears of every recorded send, on both paths: the POST's own answer, and
// reconciliation after a POST that answered 500 (where status callbacks routinely arrive first).
// Nothing else (a retry, a re-record of an earlier send) calls it.
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
	if len(hook.calls) != 1 {
		t.Fatalf("%d hook calls after a 500, want 1 (m1 only)", len(hook.calls))
	}
	if err := f.run(t, "m2", testPayload("two")); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, "m1", testPayload("one")); err != nil { // asynq ran it again: re-recorded, no send
		t.Fatal(err)
	}
	if len(hook.calls) != 2 {
		t.Fatalf("%d hook calls, want 2: %+v", len(hook.calls), hook.calls)
	}
	for i, want := range []struct {
		id         string
		reconciled bool
	}{{"m1", false}, {"m2", true}} {
		c := hook.calls[i]
		if c.id != want.id || c.queue != "default" || c.o.State != tasks.OutcomeSent || c.o.InteractionSID == "" ||
			c.o.Reconciled != want.reconciled || c.o.OutboundResourceSID == "" {
			t.Errorf("call %d: %+v, want %s reconciled=%v", i, c, want.id, want.reconciled)
		}
	}
}
