package proxytest_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// TestFaults checks each fault kind as a client sees it, and that "after create" kinds leave
// the interaction created while the others do not.
func TestFaults(t *testing.T) {
	t.Parallel()
	jsonError := func(status, code int) func(*testing.T, *http.Response, []byte) {
		return func(t *testing.T, resp *http.Response, b []byte) {
			wantError(t, resp, b, status, code)
		}
	}
	html := func(status int) func(*testing.T, *http.Response, []byte) {
		return func(t *testing.T, resp *http.Response, b []byte) {
			if resp.StatusCode != status {
				t.Fatalf("status %d, want %d", resp.StatusCode, status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html" || !strings.HasPrefix(string(b), "<html>") {
				t.Errorf("Content-Type %q body %q, want a gateway's HTML page", ct, b)
			}
		}
	}
	for _, tc := range []struct {
		kind        proxytest.Fault
		wantCreated bool
		noResponse  bool // the client gets an error, not a response
		check       func(*testing.T, *http.Response, []byte)
	}{
		{kind: proxytest.Fault429, check: func(t *testing.T, resp *http.Response, b []byte) {
			wantError(t, resp, b, http.StatusTooManyRequests, 20429)
			if ra := resp.Header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After %q, want none", ra)
			}
		}},
		{kind: proxytest.Fault429RetryAfter, check: func(t *testing.T, resp *http.Response, b []byte) {
			wantError(t, resp, b, http.StatusTooManyRequests, 20429)
			if ra := resp.Header.Get("Retry-After"); ra != "1" {
				t.Errorf("Retry-After %q, want 1", ra)
			}
		}},
		{kind: proxytest.Fault503, check: jsonError(503, 20503)},
		{kind: proxytest.Fault500BeforeCreate, check: jsonError(500, 20500)},
		{kind: proxytest.Fault500AfterCreate, wantCreated: true, check: jsonError(500, 20500)},
		{kind: proxytest.Fault502AfterCreate, wantCreated: true, check: html(502)},
		{kind: proxytest.Fault504AfterCreate, wantCreated: true, check: html(504)},
		{kind: proxytest.FaultResetAfterCreate, wantCreated: true, noResponse: true},
		{kind: proxytest.FaultHangAfterCreate, wantCreated: true, noResponse: true},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, proxytest.Config{})
			if err := srv.Fake.Inject(tc.kind, 1); err != nil {
				t.Fatal(err)
			}
			// The hang ends when the client's deadline passes; the other kinds answer at once.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			if tc.kind == proxytest.FaultHangAfterCreate {
				ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
			}
			defer cancel()
			body := "fault " + tc.kind.String()
			resp, b, err := roundTrip(ctx, srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp), acct, secret,
				url.Values{"Body": {body}})
			switch {
			case tc.noResponse:
				if err == nil {
					t.Fatalf("got a response (%d %s), want a transport error", resp.StatusCode, b)
				}
				if tc.kind == proxytest.FaultHangAfterCreate && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v, want the client's deadline", err)
				}
				if tc.kind == proxytest.FaultResetAfterCreate && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("error %v, want a connection reset", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				tc.check(t, resp, b)
			}

			want := 0
			if tc.wantCreated {
				want = 1
			}
			if got := srv.Fake.CreatesForBody(body); got != want {
				t.Errorf("CreatesForBody = %d, want %d", got, want)
			}
			if got := srv.Fake.Count(tc.kind); got != 1 {
				t.Errorf("Count(%s) = %d, want 1", tc.kind, got)
			}
			if got := srv.Fake.Stats().Faults[tc.kind]; got != 1 {
				t.Errorf("Stats().Faults[%s] = %d, want 1", tc.kind, got)
			}
			// The handler has ended (a hang noticed the client leaving) and the queue is spent.
			eventually(t, "no request in flight", func() bool { return srv.Fake.InFlight(acct) == 0 })
			if srv.Fake.Pending() != 0 {
				t.Errorf("Pending() = %d after one request", srv.Fake.Pending())
			}
			mustCreate(t, srv, kp, "after the fault")
		})
	}
}

func TestFaultQueue(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	for _, inj := range []struct {
		kind proxytest.Fault
		n    int
	}{{proxytest.Fault503, 1}, {proxytest.Fault429, 2}, {proxytest.Fault500AfterCreate, 0}} {
		if err := srv.Fake.Inject(inj.kind, inj.n); err != nil {
			t.Fatal(err)
		}
	}
	// A request rejected for its own reasons does not consume a fault.
	resp, b := create(t, srv, kp, url.Values{})
	wantError(t, resp, b, http.StatusBadRequest, 21602)

	var got []int
	for range 4 {
		resp, _ := create(t, srv, kp, url.Values{"Body": {"q"}})
		got = append(got, resp.StatusCode)
	}
	if want := []int{503, 429, 429, 201}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v (FIFO)", got, want)
	}
	s := srv.Fake.Stats()
	if s.TooManyRequests != 2 || s.Creates != 1 || s.Requests != 5 || s.Faults[proxytest.Fault503] != 1 {
		t.Errorf("Stats() = %+v", s)
	}
	if err := srv.Fake.Inject(proxytest.Fault(0), 1); !errors.Is(err, proxytest.ErrUnknownFault) {
		t.Errorf("Inject(0) error %v, want ErrUnknownFault", err)
	}
}

func TestFaultRates(t *testing.T) {
	t.Parallel()
	t.Run("certain", func(t *testing.T) {
		t.Parallel()
		srv := newServer(t, proxytest.Config{})
		if err := srv.Fake.SetFaultRates(map[proxytest.Fault]float64{proxytest.Fault503: 1}); err != nil {
			t.Fatal(err)
		}
		_ = srv.Fake.Inject(proxytest.Fault429, 1) // the script goes first
		for i, want := range []int{429, 503, 503} {
			if resp, _ := create(t, srv, kp, url.Values{"Body": {"r"}}); resp.StatusCode != want {
				t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, want)
			}
		}
		if err := srv.Fake.SetFaultRates(nil); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, srv, kp, "rates off")
	})

	t.Run("seeded sequence repeats", func(t *testing.T) {
		t.Parallel()
		rates := map[proxytest.Fault]float64{proxytest.Fault429: 0.3, proxytest.Fault500BeforeCreate: 0.2}
		run := func() []int {
			srv := newServer(t, proxytest.Config{Seed: 42})
			if err := srv.Fake.SetFaultRates(rates); err != nil {
				t.Fatal(err)
			}
			var out []int
			for range 30 {
				resp, _ := create(t, srv, kp, url.Values{"Body": {"r"}})
				out = append(out, resp.StatusCode)
			}
			return out
		}
		a, b := run(), run()
		if !slices.Equal(a, b) {
			t.Errorf("same seed, different sequences:\n%v\n%v", a, b)
		}
		seen := map[int]bool{}
		for _, s := range a {
			seen[s] = true
		}
		if !seen[201] || !seen[429] || !seen[500] || len(seen) != 3 {
			t.Errorf("statuses %v: want a mix of 201, 429 and 500 only", a)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		f := proxytest.New(proxytest.Config{})
		defer f.Close()
		for _, tc := range []struct {
			name  string
			rates map[proxytest.Fault]float64
			want  error
		}{
			{"negative", map[proxytest.Fault]float64{proxytest.Fault503: -0.1}, proxytest.ErrInvalidFaultRate},
			{"above one", map[proxytest.Fault]float64{proxytest.Fault503: 1.5}, proxytest.ErrInvalidFaultRate},
			{"NaN", map[proxytest.Fault]float64{proxytest.Fault503: math.NaN()}, proxytest.ErrInvalidFaultRate},
			{"sum above one", map[proxytest.Fault]float64{proxytest.Fault503: 0.6, proxytest.Fault429: 0.6}, proxytest.ErrInvalidFaultRate},
			{"unknown kind", map[proxytest.Fault]float64{proxytest.Fault(99): 0.1}, proxytest.ErrUnknownFault},
		} {
			if err := f.SetFaultRates(tc.rates); !errors.Is(err, tc.want) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestFaultNames(t *testing.T) {
	t.Parallel()
	kinds := proxytest.Faults()
	if len(kinds) != 9 {
		t.Fatalf("Faults() has %d kinds, want 9", len(kinds))
	}
	for _, k := range kinds {
		got, err := proxytest.ParseFault(k.String())
		if err != nil || got != k {
			t.Errorf("ParseFault(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := proxytest.ParseFault("teapot"); !errors.Is(err, proxytest.ErrUnknownFault) {
		t.Errorf("ParseFault(teapot) error %v", err)
	}
}

// TestMaxConcurrentPerAccount parks requests in latency until the account is at its limit,
// so the 429s do not depend on timing.
func TestMaxConcurrentPerAccount(t *testing.T) {
	t.Parallel()
	const limit = 2
	srv := newServer(t, proxytest.Config{MaxConcurrentPerAccount: limit, Latency: time.Minute})

	parked, cancelParked := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() {
			_, _, err := roundTrip(parked, srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp), acct, secret,
				url.Values{"Body": {"parked"}})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("parked request ended with %v, want context.Canceled", err)
			}
		})
	}
	eventually(t, "the account is at its limit", func() bool { return srv.Fake.InFlight(acct) == limit })

	const extra = 6
	statuses := make(chan int, extra)
	var burst sync.WaitGroup
	for range extra {
		burst.Go(func() {
			resp, b, err := roundTrip(t.Context(), srv.Client(), http.MethodGet, srv.URL+messagesPath(ks, kc, kp), acct, secret, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.StatusCode == http.StatusTooManyRequests {
				wantError(t, resp, b, 429, 20429)
			}
			statuses <- resp.StatusCode
		})
	}
	burst.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusTooManyRequests {
			t.Errorf("request beyond the limit answered %d, want 429", s)
		}
	}

	// Another account has its own budget: it waits in latency rather than getting a 429.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := roundTrip(ctx, srv.Client(), http.MethodGet, srv.URL+messagesPath(ks, kc, kp), acct2, secret, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("other account: %v, want to wait until its deadline", err)
	}

	cancelParked()
	wg.Wait()
	eventually(t, "parked requests end", func() bool { return srv.Fake.InFlight(acct) == 0 })

	s := srv.Fake.Stats()
	if got := srv.Fake.MaxConcurrencySeen(acct); got != limit {
		t.Errorf("MaxConcurrencySeen = %d, want %d", got, limit)
	}
	if s.TooManyRequests != extra || s.ConcurrencyRejections != extra || s.Creates != 0 {
		t.Errorf("Stats() = %+v, want %d concurrency 429s and no creates (parked requests were cancelled in latency)", s, extra)
	}

	// A burst with short latency: whatever the interleaving, the cap holds and every 201 is
	// one created interaction.
	srv.Fake.Reset() // restores Config.Latency, so set the short one after it
	srv.Fake.SetLatency(20 * time.Millisecond)
	var created sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	for range 10 {
		created.Go(func() {
			resp, _, err := roundTrip(t.Context(), srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp), acct, secret,
				url.Values{"Body": {"burst"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			counts[resp.StatusCode]++
			mu.Unlock()
		})
	}
	created.Wait()
	if counts[201]+counts[429] != 10 || counts[201] == 0 {
		t.Errorf("statuses %v, want only 201s and 429s, at least one 201", counts)
	}
	if got := srv.Fake.MaxConcurrencySeen(acct); got > limit || got < 1 {
		t.Errorf("MaxConcurrencySeen = %d, want 1..%d", got, limit)
	}
	if got := srv.Fake.CreatesForBody("burst"); got != counts[201] {
		t.Errorf("CreatesForBody = %d, want one per 201 (%d)", got, counts[201])
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	srv.Fake.SetLatency(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, _, err := roundTrip(ctx, srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp), acct, secret,
		url.Values{"Body": {"slow"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the client's deadline", err)
	}
	eventually(t, "the request ends with its client", func() bool { return srv.Fake.InFlight(acct) == 0 })
	if got := srv.Fake.CreatesForBody("slow"); got != 0 {
		t.Errorf("a request abandoned during latency was created %d times", got)
	}
	srv.Fake.SetLatency(0)
	mustCreate(t, srv, kp, "fast")
}

// TestCloseEndsWaits checks that Close releases latency waits and hangs (with 503), so a
// test's cleanup never blocks on them.
func TestCloseEndsWaits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		cfg         proxytest.Config
		fault       proxytest.Fault
		wantCreated int
	}{
		{"latency", proxytest.Config{Latency: time.Hour}, 0, 0},
		{"hang", proxytest.Config{}, proxytest.FaultHangAfterCreate, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.cfg)
			if tc.fault != 0 {
				_ = srv.Fake.Inject(tc.fault, 1)
			}
			type result struct {
				status int
				err    error
			}
			done := make(chan result, 1)
			go func() {
				resp, _, err := roundTrip(context.Background(), srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp),
					acct, secret, url.Values{"Body": {"waiting"}})
				r := result{err: err}
				if resp != nil {
					r.status = resp.StatusCode
				}
				done <- r
			}()
			eventually(t, "the request is waiting", func() bool { return srv.Fake.InFlight(acct) == 1 })
			srv.Fake.Close()
			select {
			case r := <-done:
				if r.err != nil || r.status != http.StatusServiceUnavailable {
					t.Errorf("after Close: status %d err %v, want 503", r.status, r.err)
				}
			case <-time.After(10 * time.Second): // a bound, not a speed check
				t.Fatal("request still waiting 10s after Close")
			}
			if got := srv.Fake.CreatesForBody("waiting"); got != tc.wantCreated {
				t.Errorf("CreatesForBody = %d, want %d", got, tc.wantCreated)
			}
			resp, b := create(t, srv, kp, url.Values{"Body": {"after close"}})
			wantError(t, resp, b, http.StatusServiceUnavailable, 20503)
		})
	}
}

func TestHangLimit(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{HangLimit: 20 * time.Millisecond})
	_ = srv.Fake.Inject(proxytest.FaultHangAfterCreate, 1)
	resp, b := create(t, srv, kp, url.Values{"Body": {"hung"}})
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(b), "504") {
		t.Errorf("after HangLimit: %d %q, want a gateway's 504", resp.StatusCode, b)
	}
	if got := srv.Fake.CreatesForBody("hung"); got != 1 {
		t.Errorf("CreatesForBody = %d, want 1", got)
	}
}
