package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

// keyLocks serialises requests that carry the same idempotency key within this process.
// asynq makes a task ID unique per queue only (its key is asynq:{queue}:t:{id}), so the same
// key sent to two queues at once could create two tasks; holding the key's lock across
// "look in every queue, then enqueue" closes that within one replica. Across replicas the
// per-queue check still stops same-queue duplicates; see doc.go for the remaining window.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks every key (deduplicated, in sorted order so two batches cannot deadlock) and
// returns the function that unlocks them.
func (k *keyLocks) lock(keys ...string) (unlock func()) {
	keys = slices.Clone(keys)
	sort.Strings(keys)
	keys = slices.Compact(keys)
	held := make([]*keyLock, 0, len(keys))
	for _, key := range keys {
		k.mu.Lock()
		if k.m == nil {
			k.m = make(map[string]*keyLock)
		}
		l := k.m[key]
		if l == nil {
			l = &keyLock{}
			k.m[key] = l
		}
		l.refs++
		k.mu.Unlock()
		l.mu.Lock()
		held = append(held, l)
	}
	return func() {
		for i, l := range held {
			l.mu.Unlock()
			k.mu.Lock()
			if l.refs--; l.refs == 0 {
				delete(k.m, keys[i])
			}
			k.mu.Unlock()
		}
	}
}

// findTask returns the asynq task with the given ID from whichever queue holds it, or an
// error matching tasks.ErrNotFound, or a Redis error. (tasks.Lookup returns the Status view,
// which leaves the body out; comparing bodies needs the payload itself.)
func (s *Server) findTask(ctx context.Context, id string) (*asynq.TaskInfo, error) {
	queues, err := s.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return s.findTaskIn(ctx, queues, id)
}

// findTaskIn is findTask over a queue list the caller already has (a batch lists it once).
func (s *Server) findTaskIn(ctx context.Context, queues []string, id string) (*asynq.TaskInfo, error) {
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := s.insp.GetTaskInfo(q, id)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			continue
		default:
			return nil, fmt.Errorf("look up task %q in queue %q: %w", id, q, err)
		}
	}
	return nil, tasks.ErrNotFound
}

// sameMessage compares a request with the task its idempotency key already names and
// returns the fields that differ (nil when the request is a faithful retry). "Same" means:
//
//   - service_sid, session_sid, participant_sid: equal strings;
//   - body: equal after JSON decoding (escapes and key order do not matter, every character
//     of the text does);
//   - media_url: the same URLs, as strings, in the same order;
//   - send_before: the same instant (the UTC offset it was written with does not matter), or
//     absent in both;
//   - queue: the same queue ("default" when absent);
//   - send_at: asynq schedules in whole seconds and forgets the schedule once it is due, so
//     only a pending schedule is compared: a send_at still in the future (at one-second
//     resolution) must equal the existing task's scheduled second, and an existing task still
//     scheduled for the future needs that same send_at. A send_at now past, or absent,
//     matches a task that is already due or done.
func sameMessage(info *asynq.TaskInfo, m message, now time.Time) []FieldError {
	differs := func(field string) FieldError {
		return FieldError{Field: field, Rule: "differs from the message first sent with this Idempotency-Key"}
	}
	if info.Type != tasks.TypeSendInteraction {
		return []FieldError{{Field: headerIdempotencyKey, Rule: "is in use by a task of another type (" + info.Type + ")"}}
	}
	var old tasks.Payload
	if err := json.Unmarshal(info.Payload, &old); err != nil {
		return []FieldError{{Field: headerIdempotencyKey, Rule: "is in use by a task whose payload cannot be read"}}
	}
	p := m.Payload
	var diffs []FieldError
	if p.ServiceSID != old.ServiceSID {
		diffs = append(diffs, differs("service_sid"))
	}
	if p.SessionSID != old.SessionSID {
		diffs = append(diffs, differs("session_sid"))
	}
	if p.ParticipantSID != old.ParticipantSID {
		diffs = append(diffs, differs("participant_sid"))
	}
	if p.Body != old.Body {
		diffs = append(diffs, differs("body"))
	}
	if !slices.Equal(p.MediaURLs, old.MediaURLs) {
		diffs = append(diffs, differs("media_url"))
	}
	if !sameInstant(p.SendBefore, old.SendBefore) {
		diffs = append(diffs, differs("send_before"))
	}
	if p.AccountSID != old.AccountSID {
		diffs = append(diffs, differs("account_sid"))
	}
	if m.Queue != info.Queue {
		diffs = append(diffs, differs("queue"))
	}
	nowSec := now.Unix()
	var want, have int64
	if m.SendAt != nil && m.SendAt.Unix() > nowSec {
		want = m.SendAt.Unix()
	}
	if info.State == asynq.TaskStateScheduled && info.NextProcessAt.Unix() > nowSec {
		have = info.NextProcessAt.Unix()
	}
	if want != have {
		diffs = append(diffs, differs("send_at"))
	}
	return diffs
}

func sameInstant(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// submitted is what became of one message with an idempotency key.
type submitted struct {
	status int // 202 created, 200 same message existed, 409 another message holds the key
	id     string
	queue  string
	state  string
	diffs  []FieldError // for 409
}

// errKeyChurn is returned when a key's task kept appearing and disappearing under us.
var errKeyChurn = errors.New("the idempotency key's task changed state repeatedly; retry the request")

// submitKeyed creates m under its key or reports the task that already holds the key. The
// caller holds the key's lock. It returns a Redis error, a tasks validation error, or
// errKeyChurn.
func (s *Server) submitKeyed(ctx context.Context, m message) (submitted, error) {
	// Three rounds: a task found absent can be created by another replica before our
	// enqueue (Duplicate), and a task found present can be deleted (DELETE, retention
	// ending) before we read it. Each round only repeats when the other side moved.
	for range 3 {
		info, err := s.findTask(ctx, m.Key)
		switch {
		case err == nil:
			return s.existing(info, m), nil
		case !errors.Is(err, tasks.ErrNotFound):
			return submitted{}, err
		}
		now := s.now()
		res, err := s.enq.Enqueue(ctx, m.Payload, m.options(now, s.cfg.EnqueueOptions...)...)
		if err != nil {
			return submitted{}, err
		}
		if !res.Duplicate {
			return submitted{status: 202, id: res.TaskID, queue: res.Queue, state: newState(m, now)}, nil
		}
	}
	return submitted{}, errKeyChurn
}

func (s *Server) existing(info *asynq.TaskInfo, m message) submitted {
	sub := submitted{status: 200, id: info.ID, queue: info.Queue, state: info.State.String()}
	if diffs := sameMessage(info, m, s.now()); len(diffs) > 0 {
		sub.status, sub.diffs = 409, diffs
	}
	return sub
}

// newState is the asynq state a message just enqueued is in.
func newState(m message, now time.Time) string {
	if m.SendAt != nil && m.SendAt.After(now) {
		return asynq.TaskStateScheduled.String()
	}
	return asynq.TaskStatePending.String()
}
