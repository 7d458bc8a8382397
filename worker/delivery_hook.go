package worker

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// DeliveryHook sets up delivery tracking of a sent message. The delivery package's Service
// implements it: it indexes the interaction for its status callbacks, applies callbacks that
// came early, and schedules the polling fallback.
//
// The handler calls Recorded on every path that makes or finds the ledger sent: after its own
// MarkSent (the POST's answer or reconciliation), and on every later run that finds the message
// already sent — a MarkSent whose reply was lost, a worker that died before its call, a call
// that failed. So Recorded must be idempotent. It runs on a context detached from the task's
// (a cancelled task still gets its tracking), bounded by recordTimeout.
//
// A non-nil error means tracking may be incomplete. The send itself stands (the ledger says
// sent, nothing is sent again), but the run does not complete: it returns a retry that is not
// counted as a failure, and the next run, finding the ledger sent, calls Recorded again. A
// task is therefore completed only once its tracking is in place.
//
// indexed says that this run's MarkSent wrote the interaction's key (its claim, which is the
// delivery index) and found no callback waiting: the hook need not write it again. It is
// false on every other path; the hook then checks the key itself.
type DeliveryHook interface {
	Recorded(ctx context.Context, queue, taskID, accountSID string, o *tasks.Outcome, indexed bool) error
	// IndexTTL is how long the hook needs the interaction's key: MarkSent keeps claims at
	// least that long.
	IndexTTL() time.Duration
}

// trackRetryAfter is the wait before a run whose delivery tracking failed runs again.
const trackRetryAfter = 5 * time.Second

// track calls the delivery hook for a message whose ledger says sent, created under account
// (interactionAccount), on a context detached from the task's and bounded by recordTimeout.
// It returns nil when tracking is in place (or nobody listens), else the retry the run must
// return.
func (r *run) track(ctx context.Context, account string, o *tasks.Outcome, indexed bool) error {
	if r.delivery == nil || o == nil {
		return nil
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	err := r.delivery.Recorded(tctx, r.queue, r.id, account, o, indexed)
	if err == nil {
		return nil
	}
	r.log.Warn("sent, but delivery tracking is not set up; the next run sets it up (nothing is resent)",
		zap.String("task_id", r.id), zap.String("queue", r.queue), zap.String("interaction_sid", o.InteractionSID), zap.Error(err))
	return &retryLater{After: trackRetryAfter + jitter(trackRetryAfter), Err: fmt.Errorf("delivery tracking of sent interaction %s: %w", o.InteractionSID, err)}
}

// trackFoundSent is track for a run that found the message sent by an earlier run (whose
// MarkSent reply was lost, which died, or whose hook failed): the account is resolved from the
// payload, and the hook checks the interaction's key itself.
func (r *run) trackFoundSent(ctx context.Context, o *tasks.Outcome) error {
	return r.track(ctx, r.interactionAccount(""), o, false)
}

// interactionAccount is the account a created interaction belongs to: Twilio's answer names
// it (accountSID); a run that found the message sent has the payload's account, or for the
// default account its client's Account SID (with an API key alone, "": the hook uses
// TWILIO_ACCOUNT_SID).
func (r *run) interactionAccount(accountSID string) string {
	if accountSID == "" {
		accountSID = r.p.AccountSID
	}
	if k := r.Handler.api.AccountKey(); accountSID == "" && proxyclient.ValidSID("AC", k) {
		accountSID = k
	}
	return accountSID
}

// SetDeliveryHook sets the hook of a handler built with NewHandler (tests, benchmarks), and
// keeps claims as long as the hook needs the interaction's key.
func (h *Handler) SetDeliveryHook(d DeliveryHook) {
	h.delivery = d
	if d != nil {
		h.ledger.keepClaimsFor(d.IndexTTL())
	}
}

// Limiter returns the account limiter the pool's sends go through, so that other requests
// to the same account (the delivery package's Message fetches) share it.
func (w *Worker) Limiter() Limiter { return w.handler.limiter }
