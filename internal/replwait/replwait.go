// Package replwait makes a Redis write wait for replicas: after it returns, the master that
// holds a given key has had every write made before the call acknowledged by a number of
// replicas. The worker uses it between the ledger's in-flight mark and the POST, the producers
// after an enqueue, so that a failover to a replica cannot forget either (see
// docs/operations.md, "Replication lag and the send guarantee").
//
// WAIT counts only the writes of the connection it runs on, and the write to cover was made on
// whichever pooled connection ran it. So Wait pipelines, on one connection of the key's master, a
// small barrier write in the key's hash slot (SET proxyq:{tag}:replicated 1 PX 1000) and the
// WAIT. Replication is one ordered stream: a replica that has the barrier has every write the
// master made before it.
package replwait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBehind means fewer replicas than required acknowledged in time.
var ErrBehind = errors.New("redis replicas did not acknowledge the write in time")

// MaxTimeout bounds a wait: below go-redis's default 3s read timeout, which a pipelined WAIT
// does not extend.
const MaxTimeout = 2 * time.Second

// BarrierTTL is how long a barrier key lives: it only has to reach the replicas.
const BarrierTTL = time.Second

// Waiter waits for replicas on one Redis (single, Sentinel-managed or Cluster). A nil *Waiter
// waits for nothing.
type Waiter struct {
	rdb      redis.UniversalClient
	replicas int
	timeout  time.Duration
}

// New returns a Waiter for replicas replicas within timeout, or nil when replicas is 0 or less.
func New(rdb redis.UniversalClient, replicas int, timeout time.Duration) *Waiter {
	if replicas <= 0 {
		return nil
	}
	return &Waiter{rdb: rdb, replicas: replicas, timeout: timeout}
}

// BarrierKey is a key in the same Redis Cluster slot as key: its hash tag, or the whole key as
// the tag when it has none (a key without a tag hashes as "{key}" does).
func BarrierKey(key string) string {
	tag := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			tag = key[i+1 : i+1+j]
		}
	}
	return "proxyq:{" + tag + "}:replicated"
}

// Wait returns once the master holding key has had its writes so far acknowledged by the
// required replicas; an error wrapping ErrBehind when too few did in time; or the Redis error.
func (w *Waiter) Wait(ctx context.Context, key string) error {
	if w == nil {
		return nil
	}
	var node *redis.Client
	switch c := w.rdb.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("replica wait: find the master of the key: %w", err)
		}
		node = n
	case *redis.Client: // a single server, or a Sentinel-managed master
		node = c
	default:
		return fmt.Errorf("replica wait: unsupported Redis client %T", w.rdb)
	}
	pipe := node.Pipeline()
	pipe.Set(ctx, BarrierKey(key), 1, BarrierTTL)
	acked := pipe.Do(ctx, "WAIT", w.replicas, w.timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("replica wait: %w", err)
	}
	if n, _ := acked.Int64(); n < int64(w.replicas) {
		return fmt.Errorf("%w: %d of %d within %v", ErrBehind, n, w.replicas, w.timeout)
	}
	return nil
}
