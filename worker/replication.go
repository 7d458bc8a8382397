package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/replwait"
)

// Replication and the send guarantee.
//
// Redis replicates asynchronously: a write is acknowledged by the master before any replica has
// it. If the master dies right after acknowledging the ledger's "in flight" mark, and a replica
// that never got the mark is promoted (Sentinel or Cluster failover), the ledger on the new
// master says nothing is outstanding while the POST went out; the next run of that message
// sends again: a duplicate SMS. With RedisWaitReplicas set, the worker waits (internal/replwait:
// a barrier write and WAIT on the master holding the ledger key) until that many replicas have
// the mark, after the mark and before the POST. If fewer acknowledge within RedisWaitTimeout (or
// Redis fails), the message is not sent now: the ledger is released to "none" (nothing was
// sent) and the message retried, not as a failed attempt.
//
// Writes after the POST (the outcome, asynq's task state) may still be lost at a failover; the
// ledger on the new master then says in flight, the next run reconciles and finds the
// interaction: a late outcome, never a second SMS. No wait is spent on them.

// ErrReplicasBehind means fewer replicas than required acknowledged the in-flight mark in time.
var ErrReplicasBehind = replwait.ErrBehind

// replicaWait is the worker's replwait.Waiter; nil waits for nothing (RedisWaitReplicas 0).
type replicaWait = replwait.Waiter

func newReplicaWait(rdb redis.UniversalClient, replicas int, timeout time.Duration, _ *zap.Logger) *replicaWait {
	return replwait.New(rdb, replicas, timeout)
}

// awaitReplicas runs between the ledger's in-flight mark and the POST. When the mark cannot be
// shown to be on enough replicas, the run gives the message up unsent (ledger back to "none",
// permit returned) and asks for a retry that is not a failed attempt.
func (r *run) awaitReplicas(ctx context.Context, permit Permit) error {
	err := r.replicas.Wait(ctx, LedgerKey(r.queue, r.id))
	if err == nil {
		return nil
	}
	permit.Release(false)
	r.release(ctx, attemptNone, nil)
	r.log.Warn("not sent: the in-flight mark is not known to be replicated; will retry", zap.String("task_id", r.id), zap.Error(err))
	return &retryLater{After: time.Second, Err: fmt.Errorf("not sent: %w", err)}
}
