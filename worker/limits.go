package worker

import (
	"context"
	"fmt"
	"time"
)

// Limiter enforces per-account limits shared by every worker process (see AccountLimiter).
type Limiter interface {
	// Acquire waits at most maxWait (and never past ctx) for permission to send one request on
	// the account. holder names the run, so a slot held by a killed process can be reclaimed.
	// It returns a Permit, or a *LimitedError when no permission came in time. Waiting sleeps; it
	// never spins.
	Acquire(ctx context.Context, account, holder string, maxWait time.Duration) (Permit, error)
}

// Permit is permission for one request. Release must be called once the request has ended.
type Permit interface {
	// Extend makes sure the permission lasts at least d from now. A slot is leased from
	// Acquire for about one request; a run that does other work first (reconciliation, which
	// may take the HTTP timeout and more) calls Extend just before its request. It returns an
	// error when the permission was lost meanwhile (its lease ran out, so another request may
	// hold the slot): the request must not be made under it.
	Extend(ctx context.Context, d time.Duration) error
	// Release frees the slot. rateLimited says Twilio answered 429, which slows the whole
	// account down.
	Release(rateLimited bool)
}

// LimitedError says the account's limits did not allow a request within the wait bound.
type LimitedError struct {
	RetryIn time.Duration // a good time to try again
	Reason  string        // which limit: "in-flight cap" or "request rate"
	Service string        // set when the limit is a Service's (ServiceLimiter), not the account's
}

func (e *LimitedError) Error() string {
	if e.Service != "" {
		return fmt.Sprintf("service limit reached (%s)", e.Reason)
	}
	return fmt.Sprintf("account limit reached (%s)", e.Reason)
}

// NoLimit is the Limiter used when no account limit is configured.
type NoLimit struct{}

// Acquire always grants.
func (NoLimit) Acquire(context.Context, string, string, time.Duration) (Permit, error) {
	return noPermit{}, nil
}

type noPermit struct{}

func (noPermit) Extend(context.Context, time.Duration) error { return nil }
func (noPermit) Release(bool)                                {}
