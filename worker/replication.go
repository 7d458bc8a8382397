package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Replication and the send guarantee.
//
// Redis replicates asynchronously: a write is acknowledged by the master before any replica
// has it. If the master dies right after acknowledging the ledger's "in flight" mark, and a
// replica that never got the mark is promoted (Sentinel or Cluster failover), the ledger on the
// new master says nothing is outstanding. Meanwhile the POST went out. When that message runs
// again (its asynq lease lapses, or the task state was lost with the same write window), it
// finds nothing in flight and sends again: a duplicate SMS. The window is short (the replication
// delay, usually under a millisecond on a LAN), but a failover is exactly when it opens.
//
// replicaWait closes it: after the mark and before the POST, the worker runs WAIT on the master
// that holds the mark, and sends only once RedisWaitReplicas replicas have acknowledged it. WAIT
// counts the writes of the connection it runs on, and the mark was written by a script on
// whichever pooled connection ran it; so the wait writes a small barrier key (same hash tag, so
// same slot and master) and WAITs, both pipelined on one connection of that master. Replication
// is one ordered stream, so a replica that has the barrier has the mark written before it. If
// fewer replicas acknowledge within RedisWaitTimeout (or Redis fails), the message is not sent
// now: the ledger is released to "none" (nothing was sent) and the message retried.
//
// What it does not cover: writes after the POST (the outcome, asynq's own task state) may still
// be lost in a failover; then the ledger the new master holds says in flight, the next run
// reconciles, finds the interaction and records it, so the cost is a late outcome, never a
// second SMS. A message acknowledged to a producer can likewise be lost if the master dies before
// replicating it (see the README's Redis Cluster and Sentinel section).

// ErrReplicasBehind means fewer replicas than required acknowledged the in-flight mark in time.
var ErrReplicasBehind = errors.New("redis replicas did not acknowledge the send's in-flight mark in time")

// replicaWait waits for replicas to have a key's latest writes. A nil *replicaWait waits for
// nothing (RedisWaitReplicas 0, the default).
type replicaWait struct {
	rdb      redis.UniversalClient
	replicas int
	timeout  time.Duration
	log      *zap.Logger
}

func newReplicaWait(rdb redis.UniversalClient, replicas int, timeout time.Duration, log *zap.Logger) *replicaWait {
	if replicas <= 0 {
		return nil
	}
	return &replicaWait{rdb: rdb, replicas: replicas, timeout: timeout, log: log}
}

// barrierTTL is how long a barrier key lives: it only has to reach the replicas.
const barrierTTL = time.Second

// barrierKey is a key in the same Redis Cluster slot as key: its hash tag, or the whole key
// as the tag when it has none (a key without braces hashes as "{key}" does).
func barrierKey(key string) string {
	tag := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			tag = key[i+1 : i+1+j]
		}
	}
	return "proxyq:{" + tag + "}:replicated"
}

// Wait returns once the master holding key has had its writes so far acknowledged by the
// required number of replicas; ErrReplicasBehind (wrapped) when too few did in time; or the
// Redis error.
func (w *replicaWait) Wait(ctx context.Context, key string) error {
	if w == nil {
		return nil
	}
	var node *redis.Client
	switch c := w.rdb.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("replica wait: find the master of the ledger key: %w", err)
		}
		node = n
	case *redis.Client: // a single server, or a Sentinel-managed master
		node = c
	default:
		return fmt.Errorf("replica wait: unsupported Redis client %T", w.rdb)
	}
	pipe := node.Pipeline()
	pipe.Set(ctx, barrierKey(key), 1, barrierTTL)
	acked := pipe.Do(ctx, "WAIT", w.replicas, w.timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("replica wait: %w", err)
	}
	if n, _ := acked.Int64(); n < int64(w.replicas) {
		return fmt.Errorf("%w: %d of %d within %v", ErrReplicasBehind, n, w.replicas, w.timeout)
	}
	return nil
}

// awaitReplicas runs between the ledger's in-flight mark and the POST. When the mark cannot be
// shown to be on enough replicas, the run gives the message up unsent (ledger back to "none",
// permit returned) and asks for a retry that is not a failed attempt.
func (r *run) awaitReplicas(ctx context.Context, permit Permit) error {
	err := r.replicas.Wait(ctx, LedgerKey(r.p.ParticipantSID, r.id))
	if err == nil {
		return nil
	}
	permit.Release(false)
	r.release(ctx, attemptNone)
	r.log.Warn("not sent: the in-flight mark is not known to be replicated; will retry", zap.String("task_id", r.id), zap.Error(err))
	return &retryLater{After: time.Second, Err: fmt.Errorf("not sent: %w", err)}
}
