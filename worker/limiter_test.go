package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyq/proxyq/internal/redistest"
)

const limAccount = "AC0000000000000000000000000000000a"

// limProcs builds n limiters on one database, each with its own Redis client and metrics, as n
// worker processes would have.
func limProcs(t *testing.T, n int, lim AccountLimits) ([]*AccountLimiter, redistest.DB) {
	t.Helper()
	db := redistest.NewDB(t)
	out := make([]*AccountLimiter, n)
	for i := range out {
		got, err := NewAccountLimiter(db.Client(t), lim, NewMetrics(nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		l, ok := got.(*AccountLimiter)
		if !ok {
			t.Fatalf("NewAccountLimiter(%+v) is not an *AccountLimiter", lim)
		}
		out[i] = l
	}
	return out, db
}

func mustAcquire(t *testing.T, l Limiter, holder string, maxWait time.Duration) Permit {
	t.Helper()
	p, err := l.Acquire(context.Background(), limAccount, holder, maxWait)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", holder, err)
	}
	return p
}

func wantLimited(t *testing.T, err error, reason string) *LimitedError {
	t.Helper()
	var le *LimitedError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LimitedError", err)
	}
	if le.Reason != reason || le.RetryIn <= 0 {
		t.Fatalf("LimitedError = %+v, want reason %q and a positive RetryIn", le, reason)
	}
	return le
}

func factorGauge(l *AccountLimiter) float64 {
	var m dto.Metric
	if err := l.m.LimitFactor.WithLabelValues(limAccount).Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

func storedFactor(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	v, err := rdb.HGet(context.Background(), adaptiveKey(limAccount), "factor").Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAccountLimitsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		lim     AccountLimits
		wantErr string
	}{
		{"zero", AccountLimits{}, ""},
		{"cap and fractional rate", AccountLimits{MaxInFlight: 3, Rate: 0.5}, ""},
		{"negative cap", AccountLimits{MaxInFlight: -1}, "MaxInFlight must not be negative"},
		{"negative rate", AccountLimits{Rate: -2}, "Rate must be a finite number"},
		{"NaN rate", AccountLimits{Rate: math.NaN()}, "Rate must be a finite number"},
		{"negative burst", AccountLimits{Rate: 1, Burst: -1}, "Burst must not be negative"},
		{"short lease", AccountLimits{MaxInFlight: 1, Lease: 10 * time.Millisecond}, "Lease must be at least 1s"},
		{"negative gap", AccountLimits{MaxInFlight: 1, DecreaseGap: -time.Second}, "DecreaseGap must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.lim.WithDefaults().Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	d := AccountLimits{Rate: 2.5}.WithDefaults()
	if d.Burst != 3 || d.Lease != DefaultSlotLease || d.RecoverEvery != DefaultRecoverEvery || d.DecreaseGap != DefaultDecreaseGap {
		t.Fatalf("WithDefaults() = %+v, want burst 3 and default durations", d)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestNewAccountLimiterWithoutLimitsIsNoLimit(t *testing.T) {
	t.Parallel()
	// No Redis is touched when there is nothing to limit, so none is needed.
	for _, lim := range []AccountLimits{{}, {Burst: 5}} {
		if got, err := NewAccountLimiter(nil, lim, nil, nil); err != nil || got != (NoLimit{}) {
			t.Errorf("NewAccountLimiter(%+v) = %T, %v; want NoLimit", lim, got, err)
		}
	}
	// Invalid limits are an error, never silently no limit.
	if _, err := NewAccountLimiter(nil, AccountLimits{MaxInFlight: -1}, nil, nil); err == nil || !strings.Contains(err.Error(), "MaxInFlight") {
		t.Errorf("NewAccountLimiter(MaxInFlight -1) err = %v, want one naming MaxInFlight", err)
	}
}

func TestLimiterRateLimitConversion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate         float64
		burst        int
		factor       int64
		wantInterval time.Duration
		wantBurst    int
	}{
		{rate: 10, burst: 10, factor: 1000, wantInterval: 100 * time.Millisecond, wantBurst: 10},
		{rate: 0.5, burst: 1, factor: 1000, wantInterval: 2 * time.Second, wantBurst: 1},
		{rate: 1.0 / 60, burst: 1, factor: 1000, wantInterval: time.Minute, wantBurst: 1},
		{rate: 10, burst: 10, factor: 500, wantInterval: 200 * time.Millisecond, wantBurst: 5},
		{rate: 10, burst: 3, factor: 100, wantInterval: time.Second, wantBurst: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/s×%d‰", tt.rate, tt.factor), func(t *testing.T) {
			t.Parallel()
			l := newAccountLimiter(nil, AccountLimits{Rate: tt.rate, Burst: tt.burst}, nil, nil)
			got := l.rateLimit(l.lim, tt.factor)
			if got.Rate != 1 || got.Burst != tt.wantBurst || (got.Period-tt.wantInterval).Abs() > time.Microsecond {
				t.Fatalf("rateLimit(%d) = %+v, want 1 per %v, burst %d", tt.factor, got, tt.wantInterval, tt.wantBurst)
			}
		})
	}
	for _, tt := range []struct {
		limit  int
		factor int64
		want   int
	}{{10, 1000, 10}, {10, 500, 5}, {3, 500, 2}, {10, 100, 1}, {1, 100, 1}, {7, 250, 2}} {
		if got := effectiveCap(tt.limit, tt.factor); got != tt.want {
			t.Errorf("effectiveCap(%d, %d) = %d, want %d", tt.limit, tt.factor, got, tt.want)
		}
	}
}

// Several processes, many goroutines each: the number of permits held at once never exceeds
// the cap, and every request eventually gets through.
func TestLimiterCapHoldsAcrossProcesses(t *testing.T) {
	t.Parallel()
	const (
		capacity   = 5
		processes  = 3
		goroutines = 12 // per process
		rounds     = 15 // acquisitions per goroutine
	)
	procs, _ := limProcs(t, processes, AccountLimits{MaxInFlight: capacity})
	var held, maxHeld, admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, processes*goroutines)
	for p, l := range procs {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					pm, err := l.Acquire(context.Background(), limAccount, fmt.Sprintf("p%d-g%d-r%d", p, g, r), time.Minute)
					if err != nil {
						errs <- err
						return
					}
					n := held.Add(1)
					for {
						m := maxHeld.Load()
						if n <= m || maxHeld.CompareAndSwap(m, n) {
							break
						}
					}
					admitted.Add(1)
					time.Sleep(time.Duration(r%3) * time.Millisecond) // the "request"
					held.Add(-1)
					pm.Release(false)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Acquire: %v", err)
	}
	if got := maxHeld.Load(); got > capacity || got < 1 {
		t.Fatalf("max permits held at once = %d, want 1..%d", got, capacity)
	}
	if got, want := admitted.Load(), int64(processes*goroutines*rounds); got != want {
		t.Fatalf("admitted %d, want %d", got, want)
	}
	t.Logf("max held at once: %d of %d", maxHeld.Load(), capacity)
}

// A holder that never releases (its process was killed) gives its slot back when the lease ends.
func TestLimiterKilledHolderSlotComesBack(t *testing.T) {
	t.Parallel()
	procs, db := limProcs(t, 2, AccountLimits{MaxInFlight: 1, Lease: time.Second})
	_ = mustAcquire(t, procs[0], "killed", 0) // never released

	_, err := procs[1].Acquire(context.Background(), limAccount, "other", 0)
	wantLimited(t, err, reasonInFlight)

	// Within a wait longer than the lease, the other process gets the slot.
	p := mustAcquire(t, procs[1], "other", 10*time.Second)
	members, err := db.Client(t).ZRange(context.Background(), inflightKey(limAccount), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || !contains(members[0], "other#") {
		t.Fatalf("in-flight members = %v, want only the new holder", members)
	}
	p.Release(false)
	if n := db.Client(t).ZCard(context.Background(), inflightKey(limAccount)).Val(); n != 0 {
		t.Fatalf("in flight after release = %d, want 0", n)
	}
}

// The rate is shared by every process, and the admitted count over a window matches it.
func TestLimiterRateAcrossProcesses(t *testing.T) {
	t.Parallel()
	const (
		rate   = 50.0 // per second
		window = 2 * time.Second
		warmup = 400 * time.Millisecond // drains the initial burst
	)
	// Burst 10 (200ms of requests) absorbs a waiter that wakes late on a busy machine.
	procs, _ := limProcs(t, 3, AccountLimits{Rate: rate, Burst: 10})
	start := time.Now()
	stop := start.Add(warmup + window + 200*time.Millisecond)
	var (
		mu    sync.Mutex
		times []time.Time
		wg    sync.WaitGroup
	)
	for i, l := range procs {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; time.Now().Before(stop); n++ {
					p, err := l.Acquire(context.Background(), limAccount, fmt.Sprintf("p%d-g%d-%d", i, g, n), time.Second)
					var le *LimitedError
					if errors.As(err, &le) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					now := time.Now()
					p.Release(false)
					mu.Lock()
					times = append(times, now)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	from, to := start.Add(warmup), start.Add(warmup+window)
	inWindow := 0
	for _, at := range times {
		if !at.Before(from) && at.Before(to) {
			inWindow++
		}
	}
	want := rate * window.Seconds()
	if math.Abs(float64(inWindow)-want) > 0.05*want {
		t.Fatalf("admitted %d in %v, want %.0f ± 5%%", inWindow, window, want)
	}
	t.Logf("admitted %d in %v at %v/s (%.1f%% of the rate)", inWindow, window, rate, 100*float64(inWindow)/want)
}

// A fractional rate: 0.5/s lets one request through, then asks the next to wait about 2s.
func TestLimiterFractionalRate(t *testing.T) {
	t.Parallel()
	procs, _ := limProcs(t, 1, AccountLimits{Rate: 0.5, Burst: 1})
	mustAcquire(t, procs[0], "first", 0).Release(false)
	_, err := procs[0].Acquire(context.Background(), limAccount, "second", 100*time.Millisecond)
	le := wantLimited(t, err, reasonRate)
	if le.RetryIn < time.Second || le.RetryIn > 2*time.Second {
		t.Fatalf("RetryIn = %v, want about 2s (one request per 2s)", le.RetryIn)
	}
}

// A 429 halves the factor for every process at once (once per burst), lowering the cap and the
// rate; it is logged and exported; without 429s it climbs back to 1.
func TestLimiterAdaptsTo429AndRecovers(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	// Processes a and b never see a recovery step (RecoverEvery 1h), so a slow machine cannot
	// make the first half of the test race with recovery; process c recovers every 150ms.
	slow := AccountLimits{MaxInFlight: 8, Rate: 1000, RecoverEvery: time.Hour, DecreaseGap: time.Minute}
	procs, db := limProcs(t, 2, slow)
	a, b := procs[0], procs[1]
	fast := slow
	fast.RecoverEvery = 150 * time.Millisecond
	c := newAccountLimiter(db.Client(t), fast, nil, nil)
	a.log, c.log = zap.New(core), zap.New(core)
	rdb := db.Client(t)

	mustAcquire(t, a, "warm", 0).Release(false)
	if g := factorGauge(a); g != 1 {
		t.Fatalf("factor gauge before any 429 = %v, want 1", g)
	}
	// One overload burst: three requests answered 429 together halve the factor once.
	burst := []Permit{mustAcquire(t, a, "r1", 0), mustAcquire(t, a, "r2", 0), mustAcquire(t, b, "r3", 0)}
	for _, p := range burst {
		p.Release(true)
	}
	if got := storedFactor(t, rdb); got != "500" {
		t.Fatalf("factor after one burst of 429s = %s‰, want 500", got)
	}
	if n := logs.FilterMessage("account limit factor changed").Len(); n != 1 {
		t.Fatalf("factor change logged %d times, want once", n)
	}
	if g := factorGauge(a); g != 0.5 {
		t.Fatalf("process a's factor gauge = %v, want 0.5", g)
	}

	// Process b sees the halved cap: 4 of 8.
	var held []Permit
	for i := range 4 {
		held = append(held, mustAcquire(t, b, fmt.Sprintf("h%d", i), 0))
	}
	if g := factorGauge(b); g != 0.5 {
		t.Fatalf("process b's factor gauge = %v, want 0.5", g)
	}
	_, err := b.Acquire(context.Background(), limAccount, "over", 0)
	wantLimited(t, err, reasonInFlight)
	for _, p := range held {
		p.Release(false)
	}
	// The rate is halved too.
	if got, want := b.rateLimit(b.lim, 500).Period, 2*time.Millisecond; (got - want).Abs() > time.Microsecond {
		t.Fatalf("rate interval at factor 0.5 = %v, want %v", got, want)
	}

	// Without 429s it recovers by 0.1 per RecoverEvery, back to 1 (bounded loop).
	for i := 0; factorGauge(c) < 1; i++ {
		if i > 300 {
			t.Fatalf("factor did not recover: %v after %d tries", factorGauge(c), i)
		}
		time.Sleep(fast.RecoverEvery / 3)
		mustAcquire(t, c, "probe", 0).Release(false)
	}
	if got := storedFactor(t, rdb); got != "1000" {
		t.Fatalf("stored factor after recovery = %s‰, want 1000", got)
	}
	var reasons []string
	for _, e := range logs.FilterMessage("account limit factor changed").All() {
		reasons = append(reasons, e.ContextMap()["reason"].(string))
	}
	if len(reasons) < 2 || reasons[0] != "429 from Twilio" || !contains(reasons[len(reasons)-1], "recovered") {
		t.Fatalf("logged reasons = %v, want a 429 then recoveries", reasons)
	}
}

// The factor halves at most once per DecreaseGap, and never below 0.1.
func TestLimiterFactorFloor(t *testing.T) {
	t.Parallel()
	procs, db := limProcs(t, 1, AccountLimits{MaxInFlight: 4, RecoverEvery: time.Hour, DecreaseGap: time.Nanosecond})
	l, rdb := procs[0], db.Client(t)
	for i, want := range []string{"500", "250", "125", "100", "100"} {
		mustAcquire(t, l, fmt.Sprintf("r%d", i), 0).Release(true)
		time.Sleep(2 * time.Millisecond) // Redis's clock has millisecond steps here
		if got := storedFactor(t, rdb); got != want {
			t.Fatalf("after %d 429s factor = %s‰, want %s", i+1, got, want)
		}
	}
	// At the floor the cap is 1: one holder, the next is refused.
	p := mustAcquire(t, l, "one", 0)
	_, err := l.Acquire(context.Background(), limAccount, "two", 0)
	wantLimited(t, err, reasonInFlight)
	p.Release(false)
}

// Acquire gives up after maxWait with a LimitedError, and never earlier.
func TestLimiterMaxWaitBound(t *testing.T) {
	t.Parallel()
	procs, _ := limProcs(t, 1, AccountLimits{MaxInFlight: 1})
	held := mustAcquire(t, procs[0], "holder", 0)
	defer held.Release(false)
	for _, maxWait := range []time.Duration{0, 30 * time.Millisecond, 150 * time.Millisecond} {
		began := time.Now()
		_, err := procs[0].Acquire(context.Background(), limAccount, "waiter", maxWait)
		wantLimited(t, err, reasonInFlight)
		if waited := time.Since(began); waited < maxWait {
			t.Fatalf("gave up after %v, before maxWait %v", waited, maxWait)
		}
	}
}

// A cancelled context ends the wait at once and leaves no slot behind.
func TestLimiterContextCancel(t *testing.T) {
	t.Parallel()
	procs, db := limProcs(t, 1, AccountLimits{MaxInFlight: 1, Rate: 1000})
	held := mustAcquire(t, procs[0], "holder", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := procs[0].Acquire(ctx, limAccount, "waiter", time.Hour)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // far below the hour of maxWait: it returned because of ctx
		t.Fatal("Acquire did not return after its context was cancelled")
	}
	held.Release(false)
	if n := db.Client(t).ZCard(context.Background(), inflightKey(limAccount)).Val(); n != 0 {
		t.Fatalf("in flight after cancel and release = %d, want 0", n)
	}
	// An already cancelled context is refused without taking a slot.
	if _, err := procs[0].Acquire(ctx, limAccount, "late", time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context = %v, want context.Canceled", err)
	}
	if n := db.Client(t).ZCard(context.Background(), inflightKey(limAccount)).Val(); n != 0 {
		t.Fatalf("in flight after a cancelled Acquire = %d, want 0", n)
	}
}

// Release is idempotent, and a release wakes a local waiter, which then gets the slot.
func TestLimiterReleaseWakesLocalWaiter(t *testing.T) {
	t.Parallel()
	procs, db := limProcs(t, 1, AccountLimits{MaxInFlight: 1})
	held := mustAcquire(t, procs[0], "holder", 0)
	got := make(chan Permit, 1)
	go func() {
		p, err := procs[0].Acquire(context.Background(), limAccount, "waiter", time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	time.Sleep(30 * time.Millisecond)
	held.Release(false)
	held.Release(false) // second release does nothing: it must not free the waiter's slot
	p := <-got
	if n := db.Client(t).ZCard(context.Background(), inflightKey(limAccount)).Val(); n != 1 {
		t.Fatalf("in flight with the waiter holding = %d, want 1", n)
	}
	p.Release(false)
}

// TestLimiterWaitersQueueInOrder: a process's waiters of an account queue in arrival order;
// only the oldest localPollers try Redis, and one leaving hands its turn to the next; a release
// wakes the oldest.
func TestLimiterWaitersQueueInOrder(t *testing.T) {
	t.Parallel()
	s := &accountState{name: limAccount}
	ws := make([]*waiter, 5)
	for i := range ws {
		ws[i] = s.join()
	}
	left := map[*waiter]bool{}
	pollers := func() []int {
		var out []int
		for i, w := range ws {
			if !left[w] && s.polling(w) {
				out = append(out, i)
			}
		}
		return out
	}
	woken := func(w *waiter) bool {
		select {
		case <-w.wake:
			return true
		default:
			return false
		}
	}
	if got := pollers(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("pollers %v, want the two oldest", got)
	}
	s.wakeOne()
	if !woken(ws[0]) || woken(ws[1]) {
		t.Fatal("a release must wake the oldest waiter only")
	}
	// A poller leaves: the third becomes one, and is woken to try at once.
	left[ws[0]] = true
	s.leave(ws[0])
	if got := pollers(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("pollers %v after the oldest left, want 1 and 2", got)
	}
	if !woken(ws[2]) || woken(ws[3]) {
		t.Fatal("the waiter that became a poller must be woken, and no other")
	}
	// A waiter that was not polling leaves: nobody moves up.
	left[ws[4]] = true
	s.leave(ws[4])
	if woken(ws[3]) || s.waiters.Len() != 3 {
		t.Fatalf("a non-poller leaving woke someone or was not removed (%d queued)", s.waiters.Len())
	}
}

// TestLimiterWaiterOutsideThePollersIsServed: with more waiters than pollers on a cap of 1,
// every one of them is served within its wait as the slot is released and taken again.
func TestLimiterWaiterOutsideThePollersIsServed(t *testing.T) {
	t.Parallel()
	procs, _ := limProcs(t, 1, AccountLimits{MaxInFlight: 1})
	held := mustAcquire(t, procs[0], "holder", 0)
	const waiters = localPollers + 3
	got := make(chan Permit, waiters)
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() {
			p, err := procs[0].Acquire(context.Background(), limAccount, fmt.Sprint("w", i), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			got <- p
		}()
	}
	time.Sleep(50 * time.Millisecond)
	held.Release(false)
	for range waiters {
		select {
		case p := <-got:
			time.Sleep(5 * time.Millisecond)
			p.Release(false)
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(8 * time.Second):
			t.Fatal("a waiter was never served")
		}
	}
}

// BenchmarkLimiterHandoff measures how well freed slots are handed to waiters of three
// processes, for three wake-up strategies: poll (sleep 2→50ms jittered between tries only),
// local (poll, plus a release wakes the oldest waiter of the same process: the default) and
// pubsub (local, plus every release is PUBLISHed and each process's subscriber wakes one of its
// waiters). Two loads: busy (cap 4, 8 waiters per process) and sparse (cap 1, one waiter per
// process, so most handoffs cross processes). Each request holds its slot 10ms, then its
// goroutine spends 5ms (recording, the next dequeue) before asking again.
//
// Reported: util = slot-time used / (cap × duration); calls/acq = limiter calls to Redis (scripts,
// ZREM, PUBLISH) per acquisition.
// It runs for a fixed time; use -benchtime=1x:
//
//	go test ./worker -run '^$' -bench LimiterHandoff -benchtime=1x
func BenchmarkLimiterHandoff(b *testing.B) {
	loads := []struct {
		name              string
		capacity, waiters int
	}{{"busy", 4, 8}, {"sparse", 1, 1}}
	for _, load := range loads {
		for _, strategy := range []string{"poll", "local", "pubsub"} {
			b.Run(load.name+"/"+strategy, func(b *testing.B) {
				for range b.N {
					util, cmds := runHandoff(b, strategy, load.capacity, load.waiters)
					b.ReportMetric(util, "util")
					b.ReportMetric(cmds, "calls/acq")
				}
			})
		}
	}
}

func runHandoff(b *testing.B, strategy string, capacity, waiters int) (util, cmdsPerAcquire float64) {
	const (
		processes = 3
		hold      = 10 * time.Millisecond
		think     = 5 * time.Millisecond // after a release: recording, the next dequeue
		duration  = 2 * time.Second
	)
	db := redistest.NewDB(b)
	admin := db.Client(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	channel := "proxyq:{acct:" + limAccount + "}:released"
	procs := make([]*AccountLimiter, processes)
	for i := range procs {
		rdb := db.Client(b)
		procs[i] = newAccountLimiter(rdb, AccountLimits{MaxInFlight: capacity}, nil, nil)
		procs[i].noLocalWake = strategy == "poll"
		if strategy == "pubsub" {
			sub := rdb.Subscribe(ctx, channel)
			if _, err := sub.Receive(ctx); err != nil {
				b.Fatal(err)
			}
			s := procs[i].state(limAccount)
			go func() {
				defer sub.Close()
				for range sub.Channel() {
					s.wakeOne()
				}
			}()
		}
	}
	statsBefore := limiterCalls(b, admin)
	var acquired atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(duration)
	for i, l := range procs {
		for w := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; time.Now().Before(stop); n++ {
					p, err := l.Acquire(ctx, limAccount, fmt.Sprintf("p%d-w%d-%d", i, w, n), time.Second)
					if err != nil {
						continue
					}
					acquired.Add(1)
					time.Sleep(hold)
					p.Release(false)
					if strategy == "pubsub" {
						l.rdb.Publish(ctx, channel, "1")
					}
					time.Sleep(think)
				}
			}()
		}
	}
	wg.Wait()
	n := acquired.Load()
	cmds := limiterCalls(b, admin) - statsBefore
	return float64(n) * hold.Seconds() / (float64(capacity) * duration.Seconds()), float64(cmds) / float64(max(n, 1))
}

// limiterCalls sums the calls of the commands the limiter sends (INFO commandstats).
func limiterCalls(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"evalsha", "eval", "zrem", "publish"} {
			var n int64
			if _, err := fmt.Sscanf(line, "cmdstat_"+cmd+":calls=%d,", &n); err == nil {
				total += n
			}
		}
	}
	return total
}

// BenchmarkLimiterAcquireRelease is the cost of one permit (Acquire, then Release) when the
// limits never bind: what every message pays for having them on.
//
//	go test ./worker -run '^$' -bench LimiterAcquireRelease
func BenchmarkLimiterAcquireRelease(b *testing.B) {
	for _, tt := range []struct {
		name string
		lim  AccountLimits
	}{
		{"cap", AccountLimits{MaxInFlight: 100000}},
		{"rate", AccountLimits{Rate: 1e7}},
		{"cap+rate", AccountLimits{MaxInFlight: 100000, Rate: 1e7}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			l := newAccountLimiter(redistest.NewDB(b).Client(b), tt.lim, nil, nil)
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := l.Acquire(context.Background(), limAccount, fmt.Sprint("h", n.Add(1)), time.Second)
					if err != nil {
						b.Error(err)
						return
					}
					p.Release(false)
				}
			})
		})
	}
}

// BenchmarkLimiterFleet is scenario 6's load on the limiter alone: three processes, each with
// as many runs as its concurrency waiting on a cap of 20 held 100ms each, every run giving up
// after LimiterMaxWait (2s) as the handler does. It reports the cap's utilisation, the share of
// acquisitions that gave up (a message sent back to the queue) and the longest wait.
//
//	go test ./worker -run '^$' -bench LimiterFleet -benchtime 1x
func BenchmarkLimiterFleet(b *testing.B) {
	for range b.N {
		util, gaveUp, longest, calls := runFleetWait(b, 20, 50, 100*time.Millisecond, DefaultLimiterMaxWait)
		b.ReportMetric(util, "util")
		b.ReportMetric(gaveUp, "gaveup/acq")
		b.ReportMetric(longest.Seconds(), "maxwait-s")
		b.ReportMetric(calls, "calls/acq")
	}
}

func runFleetWait(b *testing.B, capacity, waiters int, hold, maxWait time.Duration) (util, gaveUp float64, longest time.Duration, calls float64) {
	const (
		processes = 3
		think     = 2 * time.Millisecond // after a release: recording, the next dequeue
		duration  = 5 * time.Second
	)
	db := redistest.NewDB(b)
	admin := db.Client(b)
	ctx := context.Background()
	statsBefore := limiterCalls(b, admin)
	var acquired, limited, longestNs atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(duration)
	for i := range processes {
		l := newAccountLimiter(db.Client(b), AccountLimits{MaxInFlight: capacity}, nil, nil)
		for w := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; time.Now().Before(stop); n++ {
					began := time.Now()
					p, err := l.Acquire(ctx, limAccount, fmt.Sprintf("p%d-w%d-%d", i, w, n), maxWait)
					waited := int64(time.Since(began))
					for {
						old := longestNs.Load()
						if waited <= old || longestNs.CompareAndSwap(old, waited) {
							break
						}
					}
					if err != nil {
						limited.Add(1)
						time.Sleep(think)
						continue
					}
					acquired.Add(1)
					time.Sleep(hold)
					p.Release(false)
					time.Sleep(think)
				}
			}()
		}
	}
	wg.Wait()
	n := acquired.Load()
	cmds := limiterCalls(b, admin) - statsBefore
	return float64(n) * hold.Seconds() / (float64(capacity) * duration.Seconds()),
		float64(limited.Load()) / float64(max(n, 1)), time.Duration(longestNs.Load()), float64(cmds) / float64(max(n, 1))
}
