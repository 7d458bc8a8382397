package worker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
)

const (
	testAcct = "AC0000000000000000000000000000000a"
	ksA      = "KS000000000000000000000000000000aa"
	ksB      = "KS000000000000000000000000000000bb"
)

// countHook counts commands sent to Redis (a script run is one).
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

func newTestServiceLimiter(t *testing.T, lim ServiceLimits, rates ServiceRates) (*ServiceLimiter, *redis.Client, *countHook) {
	t.Helper()
	rdb := redistest.NewDB(t).Client(t)
	hook := &countHook{}
	rdb.AddHook(hook)
	l, err := NewServiceLimiter(rdb, lim, rates, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l, rdb, hook
}

func TestServiceLimiterWindow(t *testing.T) {
	t.Parallel()
	// 10/s over a 1 s window: 10 at once (spaced by at most 100ms... here 1/10 s each), then
	// nothing until the window has passed.
	l, rdb, hook := newTestServiceLimiter(t, ServiceLimits{Rate: 10, Window: time.Second, Margin: 100 * time.Millisecond}, nil)
	ctx := context.Background()
	start := time.Now()
	for i := range 10 {
		if i == 1 {
			hook.n.Store(0) // the first loads the script and opens the connection
		}
		if err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, 2*time.Second); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// Bursts are spaced at `limit` per second: 10 requests take about 0.9 s.
	if took := time.Since(start); took < 800*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("10 requests took %v, want about 0.9s (burst spacing 1/10 s)", took)
	}
	if got := hook.n.Load(); got != 9 { // one EVALSHA each
		t.Errorf("Redis commands for 9 acquisitions = %d, want 9", got)
	}
	// The 11th must wait for the first to leave the window (1.1 s after it): refused with a
	// retry time when the caller will not wait that long, and nothing recorded.
	err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, 10*time.Millisecond)
	var le *LimitedError
	if !errors.As(err, &le) || le.Service != ksA || le.RetryIn <= 0 || le.RetryIn > 1200*time.Millisecond {
		t.Fatalf("11th: %v, want *LimitedError for %s with RetryIn ≤ 1.2s", err, ksA)
	}
	if !strings.Contains(err.Error(), "service limit reached") {
		t.Errorf("error %q should say it is the Service's limit", err)
	}
	if n := rdb.ZCard(ctx, serviceTag(testAcct, ksA)+"create").Val(); n != 10 {
		t.Errorf("reservations = %d, want 10 (a refusal records nothing)", n)
	}
	// Another Service and another endpoint are not affected.
	if err := l.Acquire(ctx, testAcct, ksB, EndpointCreate, 0); err != nil {
		t.Errorf("Service B: %v", err)
	}
	if err := l.AcquireRead(ctx, testAcct, ksA, EndpointList); err != nil {
		t.Errorf("Service A list: %v", err)
	}
	// Waiting long enough is granted, at the right time.
	began := time.Now()
	if err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if at := time.Since(start); at < 1050*time.Millisecond {
		t.Errorf("11th went at %v after the first, want ≥ window+margin (1.1s)", at)
	}
	_ = began
	// Keys share one hash tag per (account, Service): one Cluster slot per script.
	for _, k := range rdb.Keys(ctx, "*").Val() {
		if !strings.Contains(k, "{svc:"+testAcct+":") {
			t.Errorf("key %q has no per-Service hash tag", k)
		}
	}
}

type fixedRates map[string]float64

func (f fixedRates) ServiceRate(account, service string) (float64, bool) {
	r, ok := f[account+"/"+service]
	return r, ok
}

func TestServiceLimiterRates(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestServiceLimiter(t, ServiceLimits{Services: map[string]float64{ksB: 60}},
		fixedRates{testAcct + "/" + ksA: 100})
	if got := l.RateFor(testAcct, ksA); got != 100 {
		t.Errorf("account override: %v", got)
	}
	if got := l.RateFor("AC0000000000000000000000000000000b", ksA); got != 30 {
		t.Errorf("default: %v", got)
	}
	if got := l.RateFor(testAcct, ksB); got != 60 {
		t.Errorf("global per-Service: %v", got)
	}
	off, err := NewServiceLimiter(nil, ServiceLimits{Off: true}, nil, nil, nil)
	if err != nil || off != nil {
		t.Fatalf("Off: %v, %v", off, err)
	}
	if err := off.Acquire(context.Background(), testAcct, ksA, EndpointCreate, 0); err != nil {
		t.Errorf("nil limiter: %v", err)
	}
	if _, err := ParseServiceRates("KS000000000000000000000000000000aa=60,KSbad=3"); err == nil {
		t.Error("ParseServiceRates accepted a bad SID")
	}
	if m, err := ParseServiceRates(" KS000000000000000000000000000000aa=60 , "); err != nil || m[ksA] != 60 {
		t.Errorf("ParseServiceRates = %v, %v", m, err)
	}
	for _, bad := range []ServiceLimits{{Rate: -1}, {Window: time.Millisecond}, {Margin: -time.Second}, {Services: map[string]float64{ksA: 0}}} {
		if err := bad.WithDefaults().Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}

func TestServiceLimiterThrottle(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestServiceLimiter(t, ServiceLimits{Rate: 10, Window: time.Second}, nil)
	ctx := context.Background()
	if err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, 0); err != nil {
		t.Fatal(err)
	}
	l.Throttled(testAcct, ksA)
	if f := l.Factor(testAcct, ksA); f != 0.5 {
		t.Fatalf("factor after a 429 = %v, want 0.5", f)
	}
	l.Throttled(testAcct, ksA) // same burst: within DecreaseGap, halved once
	if f := l.Factor(testAcct, ksA); f != 0.5 {
		t.Fatalf("factor after a second 429 of the same burst = %v, want 0.5", f)
	}
	if f := l.Factor(testAcct, ksB); f != 1 {
		t.Fatalf("another Service's factor = %v, want 1", f)
	}
	// At factor 0.5 the window holds 5: the first plus four more, then refused.
	for i := range 4 {
		if err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, time.Second); err != nil {
			t.Fatalf("request %d at half rate: %v", i, err)
		}
	}
	var le *LimitedError
	if err := l.Acquire(ctx, testAcct, ksA, EndpointCreate, 0); !errors.As(err, &le) {
		t.Fatalf("6th at half rate: %v, want refused", err)
	}
}
