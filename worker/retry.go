package worker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// retryLater is how the handler tells asynq "run this message again after a while". Retry
// intent crosses into asynq only here: RetryDelayFunc reads After, IsFailure reads Failure.
type retryLater struct {
	// After is the delay the handler asks for (Retry-After, a lease, a settle window). Zero
	// means: use exponential backoff.
	After time.Duration
	// Failure is false for waits that are nobody's fault — Twilio's 429 (which Twilio says was
	// not processed), our own account limits, another run holding the message — so asynq does
	// not count them against MaxRetry. The message's deadline bounds them instead.
	Failure bool
	Err     error
}

func (e *retryLater) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("%v (retry in %v)", e.Err, e.After.Round(time.Millisecond))
	}
	return e.Err.Error()
}

func (e *retryLater) Unwrap() error { return e.Err }

// archive wraps err so asynq archives the message now without burning retries.
func archive(err error) error { return fmt.Errorf("%w: %w", err, asynq.SkipRetry) }

// Backoff is exponential backoff with full jitter: a random delay in [d/2, d) where
// d = base·2^n, capped at max. rnd returns a float in [0,1); inject it in tests.
func Backoff(n int, base, max time.Duration, rnd func() float64) time.Duration {
	d := max
	if n < 32 {
		if b := base << n; b > 0 && b < max {
			d = b
		}
	}
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// retryDelay is asynq's RetryDelayFunc: the delay the error asked for, else backoff.
func (c Config) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var rl *retryLater
	if errors.As(err, &rl) && rl.After > 0 {
		return rl.After
	}
	return Backoff(n, c.BackoffBase, c.BackoffMax, rand.Float64)
}

// isFailure is asynq's IsFailure: everything is a failure except waits marked otherwise.
func isFailure(err error) bool {
	var rl *retryLater
	if errors.As(err, &rl) {
		return rl.Failure
	}
	return true
}
