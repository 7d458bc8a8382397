package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

// ErrMaySend is wrapped by the error a send guard returns when the send ledger says a request
// that could create the message's interaction is outstanding or done.
var ErrMaySend = errors.New("a send may be in flight or done")

// MaySendError is the send guard's refusal: the message's ledger entry as read, and when.
// It matches errors.Is(err, ErrMaySend). Its message names the task and the ledger state,
// never the message's content.
type MaySendError struct {
	TaskID string
	Entry  Entry
	// Now is Redis's clock when the entry was read: the lease is judged against it.
	Now time.Time
}

func (e *MaySendError) Error() string {
	var why string
	switch e.Entry.Attempt {
	case attemptInFlight:
		why = fmt.Sprintf("a request to Twilio started at %s", e.Entry.StartedAt.Format(time.RFC3339Nano))
	case attemptUnknown:
		why = "the last request to Twilio may have created the interaction (outcome unknown)"
	case attemptSent:
		why = "the message was sent"
	default:
		why = fmt.Sprintf("a worker holds the message until %s", e.Entry.LeaseUntil.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("send guard: task %q: %s: %v (%d request(s) so far)", e.TaskID, why, ErrMaySend, e.Entry.Posts)
}

func (e *MaySendError) Unwrap() error { return ErrMaySend }

// NewSendGuard returns the check that `proxyq serve` runs before it cancels a message
// (httpapi.SendGuard). The asynq state alone cannot tell whether a message is safe to delete:
// a worker holds a message in its ledger before and after the task is "active" (claiming,
// reconciling, recording), and a retrying task may have a request whose outcome is unknown.
// So the guard looks the task up (tasks.Lookup) for its queue, reads the message's ledger entry
// (a field of asynq's task hash), and judges its lease against Redis's own clock, the clock the
// lease was written with.
//
// The returned function returns nil for an unknown task (the cancel then answers 404) and
// for a message no request can have reached Twilio for; a *MaySendError (matching ErrMaySend)
// when a send may be in flight or done; and a wrapped Redis error when it cannot tell, which
// refuses the cancel too (it fails closed).
func NewSendGuard(l *Ledger, insp *asynq.Inspector) func(ctx context.Context, taskID string) error {
	return func(ctx context.Context, taskID string) error {
		st, err := tasks.Lookup(ctx, insp, taskID)
		switch {
		case errors.Is(err, tasks.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("send guard: look up task %q: %w", taskID, err)
		}
		// A payload without a participant SID fails tasks.Decode, and the worker archives
		// such a task before it takes a ledger entry: nothing can have been sent.
		if st.Message.ParticipantSID == "" {
			return nil
		}
		entry, err := l.Read(ctx, st.Queue, taskID)
		if err != nil {
			return fmt.Errorf("send guard: task %q: %w", taskID, err)
		}
		now, err := l.rdb.Time(ctx).Result()
		if err != nil {
			return fmt.Errorf("send guard: task %q: read the Redis clock: %w", taskID, err)
		}
		if entry.MaySend(now) {
			return &MaySendError{TaskID: taskID, Entry: entry, Now: now.UTC()}
		}
		return nil
	}
}
