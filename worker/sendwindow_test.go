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

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
)

// Issue 20 item 3: what holds a run between its limits and its POST (a reconciliation, here)
// must not let the POST leave outside its Service window or outlive its account slot.

// slowListAPI is stubAPI whose list takes listDelay (a slow reconciliation), and which runs
// atCreate at the instant a create reaches "Twilio", before answering it.
type slowListAPI struct {
	*stubAPI
	listDelay time.Duration
	atCreate  func(ctx context.Context)

	mu     sync.Mutex
	checks []string // what atCreate found wrong
}

func (s *slowListAPI) ListMessageInteractions(ctx context.Context, service, session, participant string, opt proxyclient.ListOptions) (*proxyclient.InteractionPage, error) {
	select {
	case <-time.After(s.listDelay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.stubAPI.ListMessageInteractions(ctx, service, session, participant, opt)
}

func (s *slowListAPI) CreateMessageInteraction(ctx context.Context, p proxyclient.CreateParams) (*proxyclient.MessageInteraction, error) {
	s.atCreate(ctx)
	return s.stubAPI.CreateMessageInteraction(ctx, p)
}

func (s *slowListAPI) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, fmt.Sprintf(format, args...))
}

// unknownOutcome leaves message id as a run that lost its POST's answer leaves it: ledger
// "unknown", the request started ago (past ReconcileSettle), so the next run reconciles, finds
// nothing and sends.
func unknownOutcome(t *testing.T, f *handlerFixture, id string, ago time.Duration) {
	t.Helper()
	makeTask(t, f.h.ledger.rdb, testQ, id)
	started := time.Now().Add(-ago).UnixMilli()
	field := fmt.Sprintf("u:1:0:%d:%d:1", started, started)
	if err := f.h.ledger.rdb.HSet(context.Background(), LedgerKey(testQ, id), ledgerField, field).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestHandlerSlowReconcileThenPostCountsInTheServiceWindow: the Service slot used to be taken
// before reconciliation, so a POST after a reconciliation longer than the window (+ margin)
// left with its reservation already out of the window: it counted in no window, and another
// create was admitted beside it (two where the limit allows one).
func TestHandlerSlowReconcileThenPostCountsInTheServiceWindow(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	rdb := f.h.ledger.rdb
	lim := ServiceLimits{Rate: 1, Window: time.Second, Margin: 250 * time.Millisecond, BurstRate: 1}
	services, err := NewServiceLimiter(rdb, lim, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.SetServiceLimiter(services)
	account := f.api.AccountKey()
	key := serviceTag(account, testKS) + string(EndpointCreate)
	api := &slowListAPI{stubAPI: f.api, listDelay: lim.Window + lim.Margin + 250*time.Millisecond}
	api.atCreate = func(ctx context.Context) {
		// Our create's reservation must be in the window now, close to now: Twilio judges the
		// request by when it arrives.
		now, err := rdb.Time(ctx).Result()
		if err != nil {
			api.fail("redis time: %v", err)
			return
		}
		zs, err := rdb.ZRangeWithScores(ctx, key, -1, -1).Result()
		if err != nil || len(zs) == 0 {
			api.fail("no create reservation for the Service at POST time (%v)", err)
		} else if late := time.Duration(now.UnixMilli()-int64(zs[0].Score)) * time.Millisecond; late > lim.Margin {
			api.fail("the POST left %v after its reserved time, beyond the margin %v", late, lim.Margin)
		}
		// And counted: the window (1 request) has no room for another create beside it.
		var le *LimitedError
		if _, err := services.Reserve(ctx, account, testKS, EndpointCreate, 0); !errors.As(err, &le) {
			api.fail("a second create was admitted in the window of the POST (err %v): the POST counts in no window", err)
		}
	}
	f.h.api = api
	unknownOutcome(t, f, "m1", time.Second)
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatalf("run = %v, want sent after reconciliation", err)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
	if len(api.checks) > 0 {
		t.Fatal(strings.Join(api.checks, "\n"))
	}
}

// TestHandlerSlowReconcileKeepsTheAccountSlotToThePost: the account's in-flight slot is taken
// before reconciliation with a lease sized for one POST (30s against a 15s HTTP timeout); a
// reconciliation (up to 20s) used half of it, and the POST that followed ran past its end
// without a slot, so another request was admitted beside it (the account's cap exceeded).
// Scaled down: a 1s lease, a 0.5s reconciliation and a POST answered after 0.7s.
func TestHandlerSlowReconcileKeepsTheAccountSlotToThePost(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	lim := AccountLimits{MaxInFlight: 1, Lease: time.Second}
	limiter, err := NewAccountLimiter(f.h.ledger.rdb, lim, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.limiter = limiter
	api := &slowListAPI{stubAPI: f.api, listDelay: lim.Lease / 2}
	api.atCreate = func(ctx context.Context) {
		time.Sleep(lim.Lease * 7 / 10) // Twilio takes its time: the POST is still in flight
		p, err := limiter.Acquire(ctx, f.api.AccountKey(), "probe", 0)
		if err == nil {
			p.Release(false)
			api.fail("another request got an account slot while the POST was in flight: the cap of 1 was exceeded")
		}
	}
	f.h.api = api
	unknownOutcome(t, f, "m1", time.Second)
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatalf("run = %v, want sent after reconciliation", err)
	}
	if n := f.api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
	if len(api.checks) > 0 {
		t.Fatal(strings.Join(api.checks, "\n"))
	}
}

// A reservation used on time departs as it is; a late one is given back and a new slot taken
// in the same script (the window of one is full with the late one until it is given back); when
// no slot is due within the wait, the late one is given back all the same and nothing is taken.
func TestReservationDepartingTakesALateSlotAgain(t *testing.T) {
	t.Parallel()
	l, rdb, hook := newTestServiceLimiter(t, ServiceLimits{Rate: 1, Window: time.Second, BurstRate: 1}, nil)
	ctx := context.Background()
	rsv, err := l.Reserve(ctx, testAcct, ksA, EndpointCreate, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := hook.n.Load()
	if same, err := rsv.Departing(ctx, 0); err != nil || same != rsv || hook.n.Load() != before {
		t.Fatalf("on-time departure = %+v, %v (%d commands); want the same reservation, no command", same, err, hook.n.Load()-before)
	}
	rsv.slot = rsv.slot.Add(-time.Second) // as if reconciliation came between: late
	again, err := rsv.Departing(ctx, 0)
	if err != nil || again.member == rsv.member {
		t.Fatalf("late departure = %+v, %v; want a new slot at once", again, err)
	}
	members, err := rdb.ZRange(ctx, rsv.key, 0, -1).Result()
	if err != nil || !slices.Equal(members, []string{again.member}) {
		t.Fatalf("window = %v, %v; want only the new slot %s", members, err, again.member)
	}

	// Refused: another request holds the window; the late reservation is given back anyway.
	late, err := l.Reserve(ctx, testAcct, ksB, EndpointCreate, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, late.key, redis.Z{Score: float64(late.atMs + 1), Member: "other"}).Err(); err != nil {
		t.Fatal(err)
	}
	late.slot = late.slot.Add(-time.Second)
	var le *LimitedError
	if got, err := late.Departing(ctx, 0); !errors.As(err, &le) || got != nil {
		t.Fatalf("late departure into a full window = %+v, %v; want a LimitedError", got, err)
	}
	if members, _ := rdb.ZRange(ctx, late.key, 0, -1).Result(); !slices.Equal(members, []string{"other"}) {
		t.Fatalf("window after a refused departure = %v, want only the other request", members)
	}
	var none *Reservation
	if got, err := none.Departing(ctx, 0); got != nil || err != nil {
		t.Fatalf("nil reservation (limits off) = %v, %v", got, err)
	}
}

// Extend costs nothing while the lease covers what is asked, restarts it when not, and refuses
// a slot whose lease has run out (it may be another request's by now).
func TestPermitExtend(t *testing.T) {
	t.Parallel()
	rdb := redistest.NewDB(t).Client(t)
	ctx := context.Background()
	hook := &countHook{}
	rdb.AddHook(hook)
	lim, err := NewAccountLimiter(rdb, AccountLimits{MaxInFlight: 2, Lease: 30 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lim.Acquire(ctx, testAcct, "m1", 0)
	if err != nil {
		t.Fatal(err)
	}
	member := p.(*permit).member
	expiry := func() time.Duration {
		t.Helper()
		at, err := rdb.ZScore(ctx, inflightKey(testAcct), member).Result()
		now, terr := rdb.Time(ctx).Result()
		if err != nil || terr != nil {
			t.Fatalf("lease of %s: %v %v", member, err, terr)
		}
		return time.Duration(int64(at)-now.UnixMilli()) * time.Millisecond
	}
	before := hook.n.Load()
	if err := p.Extend(ctx, 10*time.Second); err != nil || hook.n.Load() != before {
		t.Fatalf("Extend within the lease = %v (%d commands), want nil and none", err, hook.n.Load()-before)
	}
	if err := p.Extend(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if left := expiry(); left < 59*time.Second || left > time.Minute {
		t.Fatalf("lease after Extend(1m) ends in %v", left)
	}
	// The lease ran out (a frozen process): the slot is not taken back.
	rdb.ZAdd(ctx, inflightKey(testAcct), redis.Z{Score: 1, Member: member})
	p.(*permit).until = time.Now()
	if err := p.Extend(ctx, time.Minute); !errors.Is(err, errSlotLost) {
		t.Fatalf("Extend of a lapsed slot = %v, want errSlotLost", err)
	}
	p.Release(false)
	// Without an in-flight cap nothing is held: nothing to extend.
	rateOnly, err := NewAccountLimiter(rdb, AccountLimits{Rate: 100}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := rateOnly.Acquire(ctx, testAcct, "m2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Extend(ctx, time.Hour); err != nil {
		t.Fatalf("rate-only Extend = %v", err)
	}
}
