package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// With the recommended Redis settings (appendonly yes), a Redis crash in the middle of a run
// loses no accepted message and sends none twice: the queue, the tasks and the send ledger all
// come back from the append-only file.
func TestRedisCrashWithAOFLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a redis-server")
	}
	redis := redistest.StartProcess(t, "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")
	conn := asynq.RedisClientOpt{Addr: redis.Addr}

	fake := proxytest.NewServer(proxytest.Config{Latency: 20 * time.Millisecond})
	t.Cleanup(fake.Close)
	client, err := proxyclient.New(proxyclient.Config{
		AccountSID: "AC00000000000000000000000000000001", AuthToken: "secret",
		BaseURL: fake.URL, HTTPTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		Concurrency: 10, HTTPTimeout: 2 * time.Second, BackoffBase: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, DelayedCheckInterval: 100 * time.Millisecond,
		ReconcileSettle: time.Second,
	}, worker.Deps{Redis: conn, API: client})
	if err != nil {
		t.Fatal(err)
	}

	const n = 150
	enq := tasks.NewEnqueuer(conn)
	defer enq.Close()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		_, err := enq.Enqueue(ctx, tasks.Payload{
			ServiceSID: "KS00000000000000000000000000000001", SessionSID: "KC00000000000000000000000000000001",
			ParticipantSID: fmt.Sprintf("KP%032d", i%7), Body: fmt.Sprintf("message %d", i),
		}, tasks.IdempotencyKey(fmt.Sprintf("m-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()

	// Crash Redis once some, but not all, messages are out.
	waitFor(t, 20*time.Second, func() bool { return len(fake.Fake.Created()) >= n/4 })
	redis.Kill()
	if created := len(fake.Fake.Created()); created >= n {
		t.Fatalf("all %d messages were out before Redis crashed; the test proves nothing", created)
	}
	time.Sleep(500 * time.Millisecond)
	redis.Restart(t)

	insp := asynq.NewInspector(conn)
	defer insp.Close()
	// A task that was active when Redis died comes back only through asynq's recoverer: its
	// 30s lease, then the recoverer's 1-minute tick, then its retry delay. 90s (lease + tick)
	// was too tight on a loaded machine; the bound is for liveness, not speed.
	waitFor(t, 3*time.Minute, func() bool {
		q, err := insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && q.Completed == n
	})
	for i := 0; i < n; i++ {
		if c := fake.Fake.CreatesForBody(fmt.Sprintf("message %d", i)); c != 1 {
			t.Errorf("message %d created %d times, want exactly once", i, c)
		}
	}
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
