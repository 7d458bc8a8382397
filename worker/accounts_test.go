package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
)

// otherAPI is the stub client of a second account.
type otherAPI struct{ stubAPI }

func (o *otherAPI) AccountKey() string { return "AC0000000000000000000000000000000b" }

type stubAccounts map[string]ProxyAPI

func (s stubAccounts) Client(sid string) (ProxyAPI, bool) { a, ok := s[sid]; return a, ok }

func TestHandlerSendsWithTheMessagesAccount(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	other := &otherAPI{}
	other.creates.Store(1000) // its interaction SIDs differ from the default stub's
	f.h.SetAccounts(stubAccounts{other.AccountKey(): other})
	p := testPayload("for the subaccount")
	p.AccountSID = other.AccountKey()
	if err := f.run(t, "m1", p); err != nil {
		t.Fatal(err)
	}
	if f.api.creates.Load() != 0 || other.creates.Load() != 1001 {
		t.Fatalf("default creates %d, subaccount creates %d; want 0 and 1", f.api.creates.Load(), other.creates.Load())
	}
	// Naming the default account is the default client.
	p.AccountSID = f.api.AccountKey()
	if err := f.run(t, "m2", p); err != nil || f.api.creates.Load() != 1 {
		t.Fatalf("default account by name: %v, creates %d", err, f.api.creates.Load())
	}
}

func TestHandlerUnknownAccountIsArchived(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.h.SetAccounts(stubAccounts{})
	p := testPayload("hi")
	p.AccountSID = "AC0000000000000000000000000000000c"
	err := f.run(t, "m1", p)
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, ErrUnknownAccount) ||
		!strings.Contains(err.Error(), "AC0000000000000000000000000000000c") || !strings.Contains(err.Error(), "PROXYQ_ACCOUNTS_FILE") {
		t.Fatalf("err = %v, want archived naming the account and the accounts file", err)
	}
	if f.api.creates.Load() != 0 {
		t.Fatal("sent with the default account's credentials")
	}
}

func newServiceFixture(t *testing.T) *handlerFixture {
	t.Helper()
	f := newHandlerFixture(t, nil)
	l, err := NewServiceLimiter(redistest.NewDB(t).Client(t), ServiceLimits{BurstRate: 150}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.h.SetServiceLimiter(l)
	return f
}

func TestHandler80621SlowsTheServiceNotTheAccount(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	f.api.script = []error{apiError(429, 80621)}
	rl := wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	// A Service's 429 is retried about one second later, never with a growing backoff.
	if rl.After < time.Second || rl.After > 2*time.Second {
		t.Fatalf("retry after %v, want 1–2s", rl.After)
	}
	if got := f.h.services.Factor(f.api.AccountKey(), testKS); got != 0.5 {
		t.Fatalf("Service factor = %v, want 0.5", got)
	}
	if err := f.run(t, "m1", testPayload("hi")); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerServiceAtItsLimitGoesBackToTheQueue(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	// Spend Service A's window (150) directly.
	for range 150 {
		if err := f.h.services.Acquire(context.Background(), f.api.AccountKey(), testKS, EndpointCreate, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	err := f.run(t, "m1", testPayload("hi"))
	rl := wantRetry(t, err, false)
	if took := time.Since(began); took > 1500*time.Millisecond {
		t.Fatalf("held the worker %v, want at most the Service wait (1s)", took)
	}
	if rl.After < 3*time.Second {
		t.Fatalf("retry after %v, want when the window frees (≥ 3s)", rl.After)
	}
	if f.api.creates.Load() != 0 {
		t.Fatal("sent over the Service's limit")
	}
	// Another Service is sent at once.
	p := testPayload("other service")
	p.ServiceSID = "KS0000000000000000000000000000000b"
	if err := f.run(t, "m2", p); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerRetryLaterCodes(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, nil)
	f.api.script = []error{apiError(400, 14107), apiError(409, 80623), apiError(400, 80206)}
	rl := wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	if rl.After != 30*time.Second {
		t.Fatalf("14107: retry after %v, want 30s", rl.After)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptNone {
		t.Fatalf("14107 ledger = %+v, want nothing outstanding", e)
	}
	rl = wantRetry(t, f.run(t, "m2", testPayload("hi")), false)
	if rl.After != 10*time.Second {
		t.Fatalf("80623: retry after %v, want 10s", rl.After)
	}
	if e := f.entry(t, "m2"); e.Attempt != attemptUnknown {
		t.Fatalf("80623 ledger = %+v, want unknown (reconcile before any resend)", e)
	}
	rl = wantRetry(t, f.run(t, "m3", testPayload("hi")), true)
	if rl.After != 10*time.Minute {
		t.Fatalf("80206: retry after %v, want 10m", rl.After)
	}
	f.api.script = []error{apiError(400, 80205)}
	if err := f.run(t, "m4", testPayload("hi")); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("80205: %v, want archived (configuration)", err)
	}
}
