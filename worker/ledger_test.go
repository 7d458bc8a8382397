package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// testClaim claims a Proxy interaction for the default test account.
var testClaim = &Claim{AccountSID: "AC00000000000000000000000000000001"}

const (
	testKP = "KP00000000000000000000000000000001"
	testQ  = "default"
)

// newTestLedger returns a ledger on a fresh database where asynq's task hashes of the tasks
// the ledger tests use exist (the ledger lives in them and never creates one).
func newTestLedger(t *testing.T) *Ledger {
	t.Helper()
	rdb := redistest.NewDB(t).Client(t)
	ids := []string{"t1", "t2", "a", "b"}
	for round := 0; round < 20; round++ {
		ids = append(ids, "race-"+string(rune('a'+round)))
	}
	for _, id := range ids {
		makeTask(t, rdb, testQ, id)
	}
	return NewLedger(rdb, time.Hour)
}

// makeTask creates asynq's task hash for id as asynq's enqueue would (fields msg and state).
func makeTask(t *testing.T, rdb redis.UniversalClient, queue, id string) {
	t.Helper()
	if err := rdb.HSet(context.Background(), LedgerKey(queue, id), "msg", "x", "state", "active").Err(); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerStateMachine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)

	own, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if own.Sent || own.BusyFor != 0 || own.Fence != 1 || own.Attempt != attemptNone || own.FirstSeen.IsZero() {
		t.Fatalf("fresh acquire = %+v, want owned fence 1 attempt none with first_seen", own)
	}

	busy, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if busy.BusyFor <= 0 || busy.Fence != 0 {
		t.Fatalf("acquire during a live lease = %+v, want busy", busy)
	}

	if _, _, err := l.BeginSend(ctx, testQ, "t1", own.Fence+1, time.Minute); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("BeginSend with a stale fence: err = %v, want ErrLostOwnership", err)
	}
	started, posts, err := l.BeginSend(ctx, testQ, "t1", own.Fence, time.Minute)
	if err != nil || posts != 1 || started.IsZero() {
		t.Fatalf("BeginSend = %v, %d, %v; want a start time and 1 post", started, posts, err)
	}
	if e, _ := l.Read(ctx, testQ, "t1"); e.Attempt != attemptInFlight || !e.MaySend(time.Now()) {
		t.Fatalf("entry after BeginSend = %+v, want in_flight and MaySend", e)
	}

	// The run releases with an unknown outcome; the next run must reconcile, with the old start.
	if err := l.Release(ctx, testQ, "t1", own.Fence, attemptUnknown, nil); err != nil {
		t.Fatal(err)
	}
	next, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next.Fence != 2 || next.Attempt != attemptUnknown || !next.StartedAt.Equal(started) || next.Posts != 1 || !next.FirstSeen.Equal(own.FirstSeen) {
		t.Fatalf("acquire after unknown = %+v, want fence 2, unknown, started %v, 1 post, same first_seen", next, started)
	}

	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI1", Attempts: 1}
	if _, err := l.MarkSent(ctx, testQ, "t1", testClaim, own.Fence, o); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("MarkSent by the superseded run: err = %v, want ErrLostOwnership", err)
	}
	if _, err := l.MarkSent(ctx, testQ, "t1", testClaim, next.Fence, o); err != nil {
		t.Fatal(err)
	}
	done, err := l.Acquire(ctx, testQ, "t1", time.Minute)
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
	own, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A worker begins a POST and dies: its short lease lapses with the attempt in flight.
	if _, _, err := l.BeginSend(ctx, testQ, "t1", own.Fence, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	next, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next.Attempt != attemptUnknown || next.Fence != own.Fence+1 {
		t.Fatalf("acquire after a lapsed in-flight POST = %+v, want unknown with a new fence", next)
	}
	if err := l.Release(ctx, testQ, "t1", own.Fence, attemptNone, nil); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("release by the dead run: err = %v, want ErrLostOwnership", err)
	}
}

func TestLedgerClaimsAreExclusive(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) { testClaimsAreExclusive(t, split) })
	}
}

// testClaimsAreExclusive runs with the claim in the record script (one Redis) or before it
// (split, as on a Redis Cluster).
func testClaimsAreExclusive(t *testing.T, split bool) {
	ctx := context.Background()
	l := newTestLedger(t)
	l.splitClaim = split
	a, _ := l.Acquire(ctx, testQ, "a", time.Minute)
	b, _ := l.Acquire(ctx, testQ, "b", time.Minute)
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI1"}
	if _, err := l.MarkSent(ctx, testQ, "a", testClaim, a.Fence, o); err != nil {
		t.Fatal(err)
	}
	if _, err := l.MarkSent(ctx, testQ, "b", testClaim, b.Fence, o); !errors.Is(err, ErrClaimed) {
		t.Fatalf("second message claiming KI1: err = %v, want ErrClaimed", err)
	}
	owners, err := l.ClaimedBy(ctx, testKP, time.Now(), time.Now(), []string{"KI1", "KI2"})
	if err != nil || owners[0] != "a" || owners[1] != "" {
		t.Fatalf("ClaimedBy = %q, %v; want [a \"\"]", owners, err)
	}
	// b's claim failed, so b still owns its message and nothing was recorded for it.
	if e, _ := l.Read(ctx, testQ, "b"); e.Attempt == attemptSent {
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
				own, err := l.Acquire(ctx, testQ, id, time.Minute)
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

	own, err := l.AcquireToSend(ctx, testQ, "t1", time.Minute, intent)
	if err != nil {
		t.Fatal(err)
	}
	if !own.Began || own.Attempt != attemptInFlight || own.Posts != 1 || !own.StartedAt.Equal(own.Now) {
		t.Fatalf("fresh AcquireToSend = %+v, want the send begun", own)
	}
	// The begun send is a real in-flight attempt: a lapse makes it unknown, never a fresh send.
	if err := l.Release(ctx, testQ, "t1", own.Fence, attemptUnknown, nil); err != nil {
		t.Fatal(err)
	}
	again, err := l.AcquireToSend(ctx, testQ, "t1", time.Minute, intent)
	if err != nil {
		t.Fatal(err)
	}
	if again.Began || again.Attempt != attemptUnknown || again.Posts != 1 || !again.StartedAt.Equal(own.StartedAt) {
		t.Fatalf("AcquireToSend after an unknown outcome = %+v, want ownership to reconcile, not a send", again)
	}

	past := SendIntent{Lease: time.Minute, SendBefore: time.Now().Add(-time.Second)}
	expired, err := l.AcquireToSend(ctx, testQ, "t2", time.Minute, past)
	if err != nil {
		t.Fatal(err)
	}
	if expired.Began || expired.Attempt != attemptNone || expired.Posts != 0 {
		t.Fatalf("AcquireToSend past the deadline = %+v, want owned and not begun", expired)
	}
}

// The ledger lives in asynq's task hash: it never creates one, so a task asynq deleted (a
// cancel, the end of its retention) is not brought back as a stray hash without TTL.
func TestLedgerNeverCreatesTheTaskHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	own, err := l.AcquireToSend(ctx, testQ, "deleted", time.Minute, SendIntent{Lease: time.Minute, SendWithin: time.Hour})
	if err != nil || !own.Gone || own.Began {
		t.Fatalf("AcquireToSend on a deleted task = %+v, %v; want Gone, nothing begun", own, err)
	}
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-deleted"}
	if _, err := l.MarkSent(ctx, testQ, "deleted", testClaim, 1, o); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("MarkSent on a deleted task: err = %v, want ErrLostOwnership", err)
	}
	if err := l.Release(ctx, testQ, "deleted", 1, attemptUnknown, o); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("Release on a deleted task: err = %v, want ErrLostOwnership", err)
	}
	if n, err := l.rdb.Exists(ctx, LedgerKey(testQ, "deleted")).Result(); err != nil || n != 0 {
		t.Fatalf("task hash exists = %d, %v; want 0", n, err)
	}
}

// The ledger and the outcome ride along asynq's own transitions of the task: archived, re-run
// from the dashboard (Inspector.RunTask), and are deleted with it.
func TestLedgerLivesAndDiesWithTheAsynqTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := redistest.NewDB(t)
	l := NewLedger(db.Client(t), time.Hour)
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	p := tasks.Payload{ServiceSID: fmt.Sprintf("KS%032x", 1), SessionSID: fmt.Sprintf("KC%032x", 2), ParticipantSID: testKP, Body: "hi"}
	res, err := enq.Enqueue(ctx, p, tasks.IdempotencyKey("life"))
	if err != nil {
		t.Fatal(err)
	}
	q := res.Queue
	own, err := l.AcquireToSend(ctx, q, "life", time.Minute, SendIntent{Lease: time.Minute, SendWithin: time.Hour})
	if err != nil || !own.Began {
		t.Fatalf("AcquireToSend = %+v, %v", own, err)
	}
	unknown := &tasks.Outcome{State: tasks.OutcomeUnknown, Attempts: 1, Error: "reconciling"}
	if err := l.Release(ctx, q, "life", own.Fence, attemptUnknown, unknown); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		e, err := l.Read(ctx, q, "life")
		if err != nil || e.Attempt != attemptUnknown || e.Posts != 1 {
			t.Fatalf("%s: ledger = %+v, %v; want unknown after 1 post", step, e, err)
		}
		info, err := insp.GetTaskInfo(q, "life")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if o, err := tasks.ParseOutcome(info.Result); err != nil || o == nil || o.State != tasks.OutcomeUnknown {
			t.Fatalf("%s: asynq result = %q, want the unknown outcome", step, info.Result)
		}
	}
	check("pending")
	if err := insp.ArchiveTask(q, "life"); err != nil {
		t.Fatal(err)
	}
	check("archived")
	if err := insp.RunTask(q, "life"); err != nil {
		t.Fatal(err)
	}
	check("re-run from the archive")
	again, err := l.AcquireToSend(ctx, q, "life", time.Minute, SendIntent{Lease: time.Minute, SendWithin: time.Hour})
	if err != nil || again.Began || again.Attempt != attemptUnknown || again.Fence != own.Fence+1 {
		t.Fatalf("AcquireToSend after the re-run = %+v, %v; want ownership to reconcile", again, err)
	}
	if err := l.Release(ctx, q, "life", again.Fence, attemptUnknown, nil); err != nil {
		t.Fatal(err)
	}
	if err := insp.DeleteTask(q, "life"); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.rdb.Exists(ctx, LedgerKey(q, "life")).Result(); n != 0 {
		t.Fatal("the ledger outlived the deleted task")
	}
}

// Claims are keyed by the interaction alone: a message in another queue cannot record an
// interaction a message of one queue already recorded.
func TestLedgerClaimsSpanQueues(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) { testClaimsSpanQueues(t, split) })
	}
}

func testClaimsSpanQueues(t *testing.T, split bool) {
	ctx := context.Background()
	l := newTestLedger(t)
	l.splitClaim = split
	makeTask(t, l.rdb, "critical", "b")
	a, _ := l.Acquire(ctx, testQ, "a", time.Minute)
	b, _ := l.Acquire(ctx, "critical", "b", time.Minute)
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-two-queues"}
	if _, err := l.MarkSent(ctx, testQ, "a", testClaim, a.Fence, o); err != nil {
		t.Fatal(err)
	}
	if _, err := l.MarkSent(ctx, "critical", "b", testClaim, b.Fence, o); !errors.Is(err, ErrClaimed) {
		t.Fatalf("message in another queue recording the same interaction: err = %v, want ErrClaimed", err)
	}
	// A claim left by a run that then lost ownership names its own task: the next run of the
	// same task may record it.
	next, _ := l.Acquire(ctx, testQ, "t1", time.Minute)
	o2 := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-orphan"}
	if _, err := l.MarkSent(ctx, testQ, "t1", testClaim, next.Fence+1, o2); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("MarkSent with a stale fence: err = %v, want ErrLostOwnership", err)
	}
	if _, err := l.MarkSent(ctx, testQ, "t1", testClaim, next.Fence, o2); err != nil {
		t.Fatalf("the owner recording its own earlier claim: %v", err)
	}
	// The claim lives the ledger's claim TTL (1h).
	if ttl, err := l.rdb.PTTL(ctx, interaction.Key("KI-two-queues")).Result(); err != nil || ttl < time.Hour-time.Minute || ttl > time.Hour {
		t.Fatalf("claim TTL = %v, %v; want the ledger's claim TTL (1h)", ttl, err)
	}
}

// Reconciliation reads the claims of every layout: the interaction's key, and where earlier
// versions kept them (until they expire after an upgrade): a hash per participant and day,
// every day its time range touches, and one key per interaction before that.
func TestLedgerClaimsOfEveryLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	midnight := time.UnixMilli((time.Now().UnixMilli()/dayMs + 1) * dayMs).UTC() // the next, so that no hash has expired
	day := midnight.UnixMilli() / dayMs
	makeTask(t, l.rdb, testQ, "now")
	own, err := l.Acquire(ctx, testQ, "now", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.MarkSent(ctx, testQ, "now", testClaim, own.Fence, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-now"}); err != nil {
		t.Fatal(err)
	}
	_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, claimsKey(testKP, day-1), "KI-before", "before")
		p.HSet(ctx, claimsKey(testKP, day), "KI-after", "after")
		p.Set(ctx, legacyClaimKey("KI-legacy"), "old", time.Hour)
		// Callbacks waiting are no claim.
		p.Set(ctx, interaction.Key("KI-waiting"), interaction.Waiting, time.Hour)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sids := []string{"KI-now", "KI-before", "KI-after", "KI-legacy", "KI-waiting", "KI-none"}
	got, err := l.ClaimedBy(ctx, testKP, midnight.Add(-time.Hour), midnight.Add(time.Hour), sids)
	if err != nil || !slices.Equal(got, []string{"now", "before", "after", "old", "", ""}) {
		t.Fatalf("ClaimedBy over midnight = %q, %v", got, err)
	}
	// A claim of the day before is read when the range starts within a minute of midnight
	// (the slack for workers' clocks).
	got, err = l.ClaimedBy(ctx, testKP, midnight.Add(30*time.Second), midnight.Add(time.Hour), sids)
	if err != nil || got[1] != "before" {
		t.Fatalf("ClaimedBy from just after midnight = %q, %v; want the day before's claim too", got, err)
	}
	// Another participant's hashes are not this one's; an interaction's key is whoever's asks.
	got, err = l.ClaimedBy(ctx, "KP-other", midnight.Add(-time.Hour), midnight.Add(time.Hour), sids[:3])
	if err != nil || !slices.Equal(got, []string{"now", "", ""}) {
		t.Fatalf("ClaimedBy for another participant = %q, %v", got, err)
	}
}

// The claim is the delivery index: recording a Proxy send writes the interaction's key with
// what the delivery package reads (queue, task, account), and MarkSent says whether it is in
// place as delivery wants it with no status callback waiting (indexed), so that the hook
// skips its own write. Anything else must leave the hook its slow path: callbacks that came
// early, a claim taken before its record (a cluster), no account to check callbacks against.
func TestClaimIsTheDeliveryIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ref := func(id, account string) string {
		return interaction.Ref{Queue: testQ, TaskID: id, AccountSID: account}.Value()
	}
	withE := func(v string) string { return strings.TrimSuffix(v, "}") + `,"e":1}` }
	account := testClaim.AccountSID
	tests := []struct {
		name        string
		split       bool
		claim       *Claim
		before      string // the key's value before MarkSent ("" none)
		wantIndexed bool
		want        string
	}{
		{name: "fresh", claim: testClaim, wantIndexed: true, want: ref("t1", account)},
		{name: "callbacks came early", claim: testClaim, before: interaction.Waiting, want: withE(ref("t1", account))},
		{name: "claimed before its record by this message", claim: testClaim, before: interaction.Waiting + ref("t1", account), want: withE(ref("t1", account))},
		{name: "indexed by an earlier version", claim: testClaim, before: `{"q":"default","id":"t1","a":"` + account + `","m":"SM1"}`, want: withE(ref("t1", account))},
		{name: "no account", claim: &Claim{}, want: ref("t1", "")},
		{name: "cluster: claimed before the record", split: true, claim: testClaim, want: interaction.Waiting + ref("t1", account)},
		{name: "cluster: callbacks came early", split: true, claim: testClaim, before: interaction.Waiting, want: interaction.Waiting + ref("t1", account)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newTestLedger(t)
			l.splitClaim = tt.split
			key := interaction.Key("KI-t1")
			if tt.before != "" {
				if err := l.rdb.Set(ctx, key, tt.before, time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
			}
			own, _ := l.Acquire(ctx, testQ, "t1", time.Minute)
			indexed, err := l.MarkSent(ctx, testQ, "t1", tt.claim, own.Fence, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-t1"})
			if err != nil || indexed != tt.wantIndexed {
				t.Fatalf("MarkSent: indexed %v, %v; want %v", indexed, err, tt.wantIndexed)
			}
			if v, err := l.rdb.Get(ctx, key).Result(); err != nil || v != tt.want {
				t.Fatalf("interaction key = %q, %v; want %q", v, err, tt.want)
			}
			// The claim's life is the ledger's (1h), never the early marker's minute.
			if ttl := l.rdb.PTTL(ctx, key).Val(); ttl < time.Hour-time.Minute {
				t.Fatalf("interaction key TTL %v, want the claim's 1h", ttl)
			}
		})
	}
	t.Run("another message's claim", func(t *testing.T) {
		t.Parallel()
		l := newTestLedger(t)
		for i, before := range []string{ref("b", account), interaction.Waiting + ref("b", account), withE(ref("b", account)), "not json"} {
			if err := l.rdb.Set(ctx, interaction.Key("KI-t1"), before, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("claimant-%d", i)
			makeTask(t, l.rdb, testQ, id)
			own, _ := l.Acquire(ctx, testQ, id, time.Minute)
			if _, err := l.MarkSent(ctx, testQ, id, testClaim, own.Fence, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI-t1"}); !errors.Is(err, ErrClaimed) {
				t.Fatalf("key %q: MarkSent = %v, want ErrClaimed", before, err)
			}
			if e, _ := l.Read(ctx, testQ, id); e.Attempt == attemptSent {
				t.Fatalf("key %q: recorded as sent over another message's claim", before)
			}
		}
	})
}
