package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// tasksWithID counts the queues holding a task with the given ID, straight from asynq's keys.
func (e *env) tasksWithID(t *testing.T, id string, queues ...string) int {
	t.Helper()
	n := 0
	for _, q := range queues {
		ok, err := e.enq.taskExists(context.Background(), q, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			n++
		}
	}
	return n
}

// TestAsynqTaskKeyLayout pins down where asynq keeps a task, which the reservation checks.
func TestAsynqTaskKeyLayout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.db.Client(t)
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("layout"), Queue("low")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, asynqTaskKey("low", "layout")).Result(); err != nil || n != 1 {
		t.Fatalf("EXISTS %s = %d, %v: asynq moved its task keys; update asynqTaskKey", asynqTaskKey("low", "layout"), n, err)
	}
	if err := e.insp.DeleteTask("low", "layout"); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, asynqTaskKey("low", "layout")).Result(); n != 0 {
		t.Errorf("task key still there after DeleteTask")
	}
}

func TestIdempotencyKeyAcrossQueues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := validPayload()
	first.Body = "first"
	r1, err := e.enq.Enqueue(ctx, first, IdempotencyKey("k1"), Queue("a"))
	if err != nil {
		t.Fatal(err)
	}
	if r1 != (Result{TaskID: "k1", Queue: "a"}) {
		t.Fatalf("first = %+v", r1)
	}
	// The same message on another queue: the existing one, on its queue.
	r2, err := e.enq.Enqueue(ctx, first, IdempotencyKey("k1"), Queue("b"))
	if err != nil {
		t.Fatal(err)
	}
	// A different message on another queue: still the existing one (the Go API, like the CLI,
	// answers a reused key with Duplicate and the message that holds it; the HTTP API compares).
	second := validPayload()
	second.Body = "second"
	r3, err := e.enq.Enqueue(ctx, second, IdempotencyKey("k1"), Queue("c"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []Result{r2, r3} {
		if r != (Result{TaskID: "k1", Queue: "a", Duplicate: true}) {
			t.Errorf("repeat %d = %+v, want the task on queue a, duplicate", i, r)
		}
	}
	if n := e.tasksWithID(t, "k1", "a", "b", "c"); n != 1 {
		t.Errorf("%d tasks named k1, want 1", n)
	}
	if p := storedPayload(t, e.taskInfo(t, "a", "k1")); p.Body != "first" {
		t.Errorf("stored body %q, want first", p.Body)
	}

	// The reservation lived for the enqueue only: the task itself holds the key now.
	c := e.db.Client(t)
	if n, err := c.Exists(ctx, ReservationKey("k1")).Result(); err != nil || n != 0 {
		t.Errorf("reservation still there after the enqueue (%d, %v)", n, err)
	}
	// Sent and kept (completed, archived): still the one message on every queue, as long as
	// asynq keeps it.
	if err := e.insp.ArchiveTask("a", "k1"); err != nil {
		t.Fatal(err)
	}
	r4, err := e.enq.Enqueue(ctx, second, IdempotencyKey("k1"), Queue("b"))
	if err != nil || r4 != (Result{TaskID: "k1", Queue: "a", Duplicate: true}) {
		t.Errorf("after the task was archived: %+v, %v; want the archived one on a", r4, err)
	}
	if n := e.tasksWithID(t, "k1", "a", "b", "c"); n != 1 {
		t.Errorf("%d tasks named k1, want 1", n)
	}
}

// TestReservationOfCrashedProducerExpires: a producer that dies between reserving and
// releasing leaves a reservation that expires after reservationHold, not after the task's
// retention.
func TestReservationOfCrashedProducerExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.crashAfterReserve(t, "crashed", "a")
	ttl, err := e.db.Client(t).PTTL(context.Background(), ReservationKey("crashed")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl > reservationHold || ttl < reservationHold-time.Minute {
		t.Errorf("reservation TTL %v, want about %v", ttl, reservationHold)
	}
}

// TestCommittedReservationOfEarlierVersion: a committed reservation written by an earlier
// version ("c|…", kept for the task's retention) still names its task, and frees the key once
// the task is gone.
func TestCommittedReservationOfEarlierVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enq.grace = time.Hour // would show as a hang if the key waited for the grace
	ctx := context.Background()
	c := e.db.Client(t)
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("old"), Queue("a")); err != nil {
		t.Fatal(err)
	}
	legacy := "c|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|0123456789abcdef|a"
	if err := c.Set(ctx, ReservationKey("old"), legacy, 96*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("old"), Queue("b"))
	if err != nil || r != (Result{TaskID: "old", Queue: "a", Duplicate: true}) {
		t.Errorf("with the old reservation: %+v, %v; want the task on a", r, err)
	}
	if err := e.insp.DeleteTask("a", "old"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err = e.enq.Enqueue(cctx, validPayload(), IdempotencyKey("old"), Queue("b"))
	if err != nil || r != (Result{TaskID: "old", Queue: "b"}) {
		t.Errorf("after the task was deleted: %+v, %v; want a new task on b", r, err)
	}
	if n, _ := c.Exists(ctx, ReservationKey("old")).Result(); n != 0 {
		t.Errorf("the taken-over reservation was not released")
	}
}

// TestIdempotencyKeyRaceAcrossQueues: two producers race one key onto two queues; the
// reservation lets exactly one message through, every round.
func TestIdempotencyKeyRaceAcrossQueues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := NewEnqueuer(e.db.ConnOpt()) // a second producer with its own connections
	t.Cleanup(func() { _ = other.Close() })
	for round := range 100 {
		key := fmt.Sprintf("race-%d", round)
		var results [2]Result
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, enq := range []*Enqueuer{e.enq, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				p := validPayload()
				p.Body = fmt.Sprintf("producer %d", i)
				results[i], errs[i] = enq.Enqueue(context.Background(), p, IdempotencyKey(key), Queue(fmt.Sprintf("q%d", i)))
			}()
		}
		close(start)
		wg.Wait()
		for i := range errs {
			if errs[i] != nil {
				t.Fatalf("round %d producer %d: %v", round, i, errs[i])
			}
		}
		if results[0].Duplicate == results[1].Duplicate || results[0].Queue != results[1].Queue || results[0].TaskID != key || results[1].TaskID != key {
			t.Fatalf("round %d: results %+v, want one new task and one duplicate of it", round, results)
		}
		if n := e.tasksWithID(t, key, "q0", "q1"); n != 1 {
			t.Fatalf("round %d: %d tasks, want 1", round, n)
		}
	}
}

// crashAfterReserve plays a producer that reserved key for queue and died before enqueuing.
func (e *env) crashAfterReserve(t *testing.T, key, queue string) string {
	t.Helper()
	ok, value, _, _, err := e.enq.reserve(context.Background(), ReservationKey(key), "", newToken(), queue)
	if err != nil || !ok {
		t.Fatalf("reserve: %v, %v", ok, err)
	}
	return value
}

// TestReservationCrashBeforeEnqueue: a producer that dies between reserving a key and
// enqueuing does not block the key: after the grace another producer takes it over.
func TestReservationCrashBeforeEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const grace = 500 * time.Millisecond
	e.enq.grace = grace
	e.crashAfterReserve(t, "orphan", "a")

	start := time.Now()
	r, err := e.enq.Enqueue(context.Background(), validPayload(), IdempotencyKey("orphan"), Queue("b"))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if r != (Result{TaskID: "orphan", Queue: "b"}) {
		t.Errorf("result %+v, want a new task on b", r)
	}
	if took < grace-50*time.Millisecond {
		t.Errorf("took over after %v, before the grace (%v)", took, grace)
	}
	if n := e.tasksWithID(t, "orphan", "a", "b"); n != 1 {
		t.Errorf("%d tasks, want 1", n)
	}
	if n, _ := e.db.Client(t).Exists(context.Background(), ReservationKey("orphan")).Result(); n != 0 {
		t.Errorf("the taken-over reservation was not released")
	}

	// A producer on the orphan's own queue does not wait: asynq decides on one queue.
	e.enq.grace = time.Hour
	e.crashAfterReserve(t, "orphan2", "a")
	start = time.Now()
	r, err = e.enq.Enqueue(context.Background(), validPayload(), IdempotencyKey("orphan2"), Queue("a"))
	if err != nil || r != (Result{TaskID: "orphan2", Queue: "a"}) {
		t.Errorf("same queue: %+v, %v", r, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("same queue waited %v", took)
	}
	// ... and from then on the key names that task for every queue.
	r, err = e.enq.Enqueue(context.Background(), validPayload(), IdempotencyKey("orphan2"), Queue("b"))
	if err != nil || r != (Result{TaskID: "orphan2", Queue: "a", Duplicate: true}) {
		t.Errorf("other queue after: %+v, %v", r, err)
	}

	// Waiting on a live reservation respects the context.
	e.crashAfterReserve(t, "orphan3", "a")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("orphan3"), Queue("b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Enqueue under a held reservation with a short deadline = %v, want DeadlineExceeded", err)
	}
}

// TestReservationFreedWhenTaskGone: once the key's message is gone (cancelled here; retention
// over works the same), the key is free at once on any queue.
func TestReservationFreedWhenTaskGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enq.grace = time.Hour // would show as a hang if the key waited for the grace
	ctx := context.Background()
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("gone"), Queue("a")); err != nil {
		t.Fatal(err)
	}
	if err := e.insp.DeleteTask("a", "gone"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("gone"), Queue("b"))
	if err != nil || r != (Result{TaskID: "gone", Queue: "b"}) {
		t.Errorf("after the task was deleted: %+v, %v", r, err)
	}
}

// TestReservationFence: a producer paused between reserving and enqueuing for longer than the
// grace finds at commit that another producer took the key; it withdraws its own task when
// the other's exists, and keeps it when the other never enqueued.
func TestReservationFence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const grace = 200 * time.Millisecond
	e.enq.grace = grace
	ctx := context.Background()

	// Paused producer A reserves "fence" for queue a ...
	tokenA := newToken()
	prA, err := e.enq.prepare(validPayload(), time.Now(), IdempotencyKey("fence"), Queue("a"))
	if err != nil {
		t.Fatal(err)
	}
	ok, mineA, _, queues, err := e.enq.reserve(ctx, ReservationKey("fence"), "", tokenA, "a")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	time.Sleep(grace + 50*time.Millisecond)
	// ... B takes the key over onto b and enqueues ...
	rB, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("fence"), Queue("b"))
	if err != nil || rB != (Result{TaskID: "fence", Queue: "b"}) {
		t.Fatalf("B: %+v, %v", rB, err)
	}
	// ... and A wakes up and enqueues onto a: its task is withdrawn, it answers B's.
	rA, err := e.enq.enqueueReserved(ctx, prA, ReservationKey("fence"), mineA, queues)
	if err != nil || rA != (Result{TaskID: "fence", Queue: "b", Duplicate: true}) {
		t.Errorf("A: %+v, %v; want a duplicate of B's task", rA, err)
	}
	if n := e.tasksWithID(t, "fence", "a", "b"); n != 1 || e.tasksWithID(t, "fence", "b") != 1 {
		t.Errorf("%d tasks, want only B's", n)
	}

	// The same, but B crashed after taking the key over: A keeps its task and the key.
	prA, _ = e.enq.prepare(validPayload(), time.Now(), IdempotencyKey("fence2"), Queue("a"))
	_, mineA, _, queues, _ = e.enq.reserve(ctx, ReservationKey("fence2"), "", tokenA, "a")
	time.Sleep(grace + 50*time.Millisecond)
	ok, _, _, _, err = e.enq.reserve(ctx, ReservationKey("fence2"), mineA, newToken(), "b") // B's takeover
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	rA, err = e.enq.enqueueReserved(ctx, prA, ReservationKey("fence2"), mineA, queues)
	if err != nil || rA != (Result{TaskID: "fence2", Queue: "a"}) {
		t.Errorf("A after B crashed: %+v, %v", rA, err)
	}
	if n, _ := e.db.Client(t).Exists(ctx, ReservationKey("fence2")).Result(); n != 0 {
		t.Errorf("reservation left after A settled")
	}
	r, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("fence2"), Queue("b"))
	if err != nil || r != (Result{TaskID: "fence2", Queue: "a", Duplicate: true}) {
		t.Errorf("after: %+v, %v", r, err)
	}
}

// TestEnqueuerFromRedis: an Enqueuer on the caller's go-redis client reserves keys too, and
// Close leaves the client open.
func TestEnqueuerFromRedis(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.db.Client(t)
	enq := NewEnqueuerFromRedis(c)
	ctx := context.Background()
	if _, err := enq.Enqueue(ctx, validPayload(), IdempotencyKey("mine"), Queue("a")); err != nil {
		t.Fatal(err)
	}
	if err := enq.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := enq.Enqueue(ctx, validPayload(), IdempotencyKey("mine"), Queue("b"))
	if err != nil || r != (Result{TaskID: "mine", Queue: "a", Duplicate: true}) {
		t.Errorf("after Close: %+v, %v", r, err)
	}
}
