package worker

import (
	"context"

	"github.com/proxyq/proxyq/tasks"
)

// DeliveryHook is told of every send the handler records, after the ledger and the outcome
// record are written, on either path (the POST's own answer or reconciliation). The delivery
// package's Service implements it: it indexes the interaction for its status callbacks,
// applies callbacks that came early, and schedules the polling fallback. It must not fail the
// send: errors are its own to log.
type DeliveryHook interface {
	Recorded(ctx context.Context, queue, taskID, accountSID string, o *tasks.Outcome)
}

// SetDeliveryHook sets the hook of a handler built with NewHandler (tests, benchmarks).
func (h *Handler) SetDeliveryHook(d DeliveryHook) { h.delivery = d }

// Limiter returns the account limiter the pool's sends go through, so that other requests
// to the same account (the delivery package's Message fetches) share it.
func (w *Worker) Limiter() Limiter { return w.handler.limiter }
