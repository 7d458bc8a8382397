package tasks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
)

// An enqueue is reported done only once a replica has it: with the replica stalled (SIGSTOP)
// it fails with ErrNotReplicated, and the producer's retry with the same key succeeds once the
// replica is back.
func TestEnqueueWaitsForReplicas(t *testing.T) {
	master := redistest.StartProcess(t)
	host, port, _ := strings.Cut(master.Addr, ":")
	replica := redistest.StartProcess(t, "--replicaof", host, port)
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer mc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		// In sync on both sides: the master counts the replica for WAIT once it is online.
		info, _ := rc.Info(context.Background(), "replication").Result()
		minfo, _ := mc.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") && strings.Contains(minfo, "state=online") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica never in sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A generous bound: a replica just in sync sometimes acknowledges only with its periodic
	// (1 s) ACK; the stalled case below waits all of it.
	enq := NewEnqueuer(asynq.RedisClientOpt{Addr: master.Addr}, WaitForReplicas(1, 2*time.Second))
	defer enq.Close()
	ctx := context.Background()
	p := validPayload()
	if _, err := enq.Enqueue(ctx, p, IdempotencyKey("replicated-1")); err != nil {
		t.Fatalf("enqueue with the replica in sync: %v", err)
	}

	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	_, err := enq.Enqueue(ctx, p, IdempotencyKey("replicated-2"))
	if !errors.Is(err, ErrNotReplicated) {
		_ = replica.Resume()
		t.Fatalf("enqueue with the replica stalled: %v, want ErrNotReplicated", err)
	}
	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	res, err := enq.Enqueue(ctx, p, IdempotencyKey("replicated-2"))
	if err != nil || !res.Duplicate || res.TaskID != "replicated-2" {
		t.Fatalf("retry after the replica came back: %+v %v, want the task found (duplicate) and no error", res, err)
	}
	if n, err := rc.Exists(ctx, "asynq:{default}:t:replicated-2").Result(); err != nil || n != 1 {
		t.Fatalf("the replica lacks the task: %d %v", n, err)
	}
	if NewEnqueuer(asynq.RedisClientOpt{Addr: master.Addr}, WaitForReplicas(0, time.Second)).wait != nil {
		t.Fatal("WaitForReplicas(0) must wait for nothing")
	}
}
