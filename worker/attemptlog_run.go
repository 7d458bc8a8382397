package worker

import (
	"errors"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

// A run's side of the attempt log (attemptlog.go): what it noted goes to Redis with the
// ledger write that ends its step (release or record), never on its own.

// note adds an entry to what the run's next ledger write puts in the attempt log.
func (r *run) note(e LogEntry) { r.logged = append(r.logged, e) }

// takeLog returns the entries noted so far and forgets them, so that each is written once.
func (r *run) takeLog() []LogEntry {
	l := r.logged
	r.logged = nil
	return l
}

// noteAttempt notes one POST and what came of it, classified as the handler does.
func (r *run) noteAttempt(start time.Time, took time.Duration, err error) {
	result := ResultUnknown
	var apiErr *proxyclient.Error
	switch proxyclient.Classify(err) {
	case proxyclient.ClassNone:
		result = ResultSent
	case proxyclient.ClassRetryable:
		result = ResultRetried
		if errors.As(err, &apiErr) && apiErr.StatusCode == 429 {
			result = ResultRateLimited
		} else if _, inProgress := retryLaterHandling(err); inProgress {
			result = ResultUnknown
		}
	case proxyclient.ClassPermanent:
		result = ResultPermanent
	}
	r.note(AttemptEntry(start, took, result, err))
}

// noteWait counts a wait for the account's or a Service's limits.
func (r *run) noteWait(limited *LimitedError) {
	if limited.Service != "" {
		r.note(WaitEntry(WaitService))
		return
	}
	r.note(WaitEntry(WaitAccount))
}
