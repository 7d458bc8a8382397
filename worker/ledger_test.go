package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

const testKP = "KP00000000000000000000000000000001"

func newTestLedger(t *testing.T) *Ledger {
	t.Helper()
	return NewLedger(redistest.NewDB(t).Client(t), time.Hour)
}

func TestLedgerStateMachine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)

	own, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if own.Sent || own.BusyFor != 0 || own.Fence != 1 || own.Attempt != attemptNone || own.FirstSeen.IsZero() {
		t.Fatalf("fresh acquire = %+v, want owned fence 1 attempt none with first_seen", own)
	}

	busy, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if busy.BusyFor <= 0 || busy.Fence != 0 {
		t.Fatalf("acquire during a live lease = %+v, want busy", busy)
	}

	if _, _, err := l.BeginSend(ctx, testKP, "t1", own.Fence+1, time.Minute); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("BeginSend with a stale fence: err = %v, want ErrLostOwnership", err)
	}
	started, posts, err := l.BeginSend(ctx, testKP, "t1", own.Fence, time.Minute)
	if err != nil || posts != 1 || started.IsZero() {
		t.Fatalf("BeginSend = %v, %d, %v; want a start time and 1 post", started, posts, err)
	}
	if e, _ := l.Read(ctx, testKP, "t1"); e.Attempt != attemptInFlight || !e.MaySend(time.Now()) {
		t.Fatalf("entry after BeginSend = %+v, want in_flight and MaySend", e)
	}

	// The run releases with an unknown outcome; the next run must reconcile, with the old start.
	if err := l.Release(ctx, testKP, "t1", own.Fence, attemptUnknown); err != nil {
		t.Fatal(err)
	}
	next, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next.Fence != 2 || next.Attempt != attemptUnknown || !next.StartedAt.Equal(started) || next.Posts != 1 || !next.FirstSeen.Equal(own.FirstSeen) {
		t.Fatalf("acquire after unknown = %+v, want fence 2, unknown, started %v, 1 post, same first_seen", next, started)
	}

	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI1", Attempts: 1}
	if err := l.MarkSent(ctx, testKP, "t1", own.Fence, o); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("MarkSent by the superseded run: err = %v, want ErrLostOwnership", err)
	}
	if err := l.MarkSent(ctx, testKP, "t1", next.Fence, o); err != nil {
		t.Fatal(err)
	}
	done, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !done.Sent || done.Outcome.InteractionSID != "KI1" {
		t.Fatalf("acquire after sent = %+v, want Sent with KI1", done)
	}
}

func TestLedgerLapsedInFlightBecomesUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	own, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A worker begins a POST and dies: its short lease lapses with the attempt in flight.
	if _, _, err := l.BeginSend(ctx, testKP, "t1", own.Fence, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	next, err := l.Acquire(ctx, testKP, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next.Attempt != attemptUnknown || next.Fence != own.Fence+1 {
		t.Fatalf("acquire after a lapsed in-flight POST = %+v, want unknown with a new fence", next)
	}
	if err := l.Release(ctx, testKP, "t1", own.Fence, attemptNone); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("release by the dead run: err = %v, want ErrLostOwnership", err)
	}
}

func TestLedgerClaimsAreExclusive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	a, _ := l.Acquire(ctx, testKP, "a", time.Minute)
	b, _ := l.Acquire(ctx, testKP, "b", time.Minute)
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI1"}
	if err := l.MarkSent(ctx, testKP, "a", a.Fence, o); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkSent(ctx, testKP, "b", b.Fence, o); !errors.Is(err, ErrClaimed) {
		t.Fatalf("second message claiming KI1: err = %v, want ErrClaimed", err)
	}
	owners, err := l.ClaimedBy(ctx, testKP, []string{"KI1", "KI2"})
	if err != nil || owners[0] != "a" || owners[1] != "" {
		t.Fatalf("ClaimedBy = %q, %v; want [a \"\"]", owners, err)
	}
	// b's claim failed, so b still owns its message and nothing was recorded for it.
	if e, _ := l.Read(ctx, testKP, "b"); e.Attempt == attemptSent {
		t.Fatalf("b recorded as sent after a refused claim")
	}
}

func TestLedgerConcurrentAcquireHasOneOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	for round := 0; round < 20; round++ {
		id := "race-" + string(rune('a'+round))
		var mu sync.Mutex
		owners := 0
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				own, err := l.Acquire(ctx, testKP, id, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if own.Fence > 0 {
					mu.Lock()
					owners++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if owners != 1 {
			t.Fatalf("round %d: %d runs own the message, want exactly 1", round, owners)
		}
	}
}

func TestLedgerAcquireToSend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	intent := SendIntent{Lease: time.Minute, SendWithin: time.Hour}

	own, err := l.AcquireToSend(ctx, testKP, "t1", time.Minute, intent)
	if err != nil {
		t.Fatal(err)
	}
	if !own.Began || own.Attempt != attemptInFlight || own.Posts != 1 || !own.StartedAt.Equal(own.Now) {
		t.Fatalf("fresh AcquireToSend = %+v, want the send begun", own)
	}
	// The begun send is a real in-flight attempt: a lapse makes it unknown, never a fresh send.
	if err := l.Release(ctx, testKP, "t1", own.Fence, attemptUnknown); err != nil {
		t.Fatal(err)
	}
	again, err := l.AcquireToSend(ctx, testKP, "t1", time.Minute, intent)
	if err != nil {
		t.Fatal(err)
	}
	if again.Began || again.Attempt != attemptUnknown || again.Posts != 1 || !again.StartedAt.Equal(own.StartedAt) {
		t.Fatalf("AcquireToSend after an unknown outcome = %+v, want ownership to reconcile, not a send", again)
	}

	past := SendIntent{Lease: time.Minute, SendBefore: time.Now().Add(-time.Second)}
	expired, err := l.AcquireToSend(ctx, testKP, "t2", time.Minute, past)
	if err != nil {
		t.Fatal(err)
	}
	if expired.Began || expired.Attempt != attemptNone || expired.Posts != 0 {
		t.Fatalf("AcquireToSend past the deadline = %+v, want owned and not begun", expired)
	}
}
