package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyq/proxyq/internal/replwait"
)

// ErrNotReplicated means Redis accepted an enqueue but fewer replicas than required had it
// within the timeout: the message may be lost if the master fails now. Enqueue again with the
// same idempotency key: the retry finds the task (Duplicate) or enqueues it afresh.
var ErrNotReplicated = replwait.ErrBehind

// EnqueuerOption configures NewEnqueuer.
type EnqueuerOption func(*Enqueuer)

// WaitForReplicas makes every enqueue wait, after Redis accepted it, until n replicas of the
// queue's master have it (Redis WAIT, at most timeout, which must be 2s or less), so that a
// failover to a replica cannot lose a message the caller was told was accepted. An enqueue not
// acknowledged in time returns an error wrapping ErrNotReplicated. n 0 waits for nothing.
func WaitForReplicas(n int, timeout time.Duration) EnqueuerOption {
	return func(e *Enqueuer) {
		if n > 0 {
			e.wait = replwait.New(e.rdb, n, min(timeout, replwait.MaxTimeout))
		}
	}
}

// replicated waits for the replicas of the master holding queue (asynq keeps a queue's keys
// under the hash tag {queue}).
func (e *Enqueuer) replicated(ctx context.Context, queue string) error {
	if err := e.wait.Wait(ctx, "asynq:{"+queue+"}"); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}
