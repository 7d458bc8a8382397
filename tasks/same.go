package tasks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Intent is one message as a producer asked for it: what the "same message" rule compares
// when one idempotency key turns up twice (twice in one batch, or once more after the key's
// message exists).
type Intent struct {
	Payload Payload
	// Queue is the asynq queue ("" means DefaultQueue).
	Queue string
	// SendAt is when the message is to be sent; the zero time means as soon as possible.
	SendAt time.Time
}

// IntentOfTask returns the Intent an existing asynq task carries. A task that is scheduled
// for later has SendAt set to that time; asynq forgets the schedule once the task is due, so
// any other task has a zero SendAt. It returns an error for a task of another type or a
// payload that does not decode.
func IntentOfTask(info *asynq.TaskInfo) (Intent, error) {
	if info.Type != TypeSendInteraction {
		return Intent{}, fmt.Errorf("task %q is of type %q, not %q", info.ID, info.Type, TypeSendInteraction)
	}
	var p Payload
	if err := json.Unmarshal(info.Payload, &p); err != nil {
		return Intent{}, fmt.Errorf("task %q: payload does not decode: %w", info.ID, err)
	}
	in := Intent{Payload: p, Queue: info.Queue}
	if info.State == asynq.TaskStateScheduled {
		in.SendAt = info.NextProcessAt
	}
	return in, nil
}

// Differences returns the fields ("service_sid", "session_sid", "participant_sid", "body",
// "media_url", "send_before", "account_sid", "ordering_key", "queue", "send_at", in that order) in which b differs from a,
// or nil when they are the same message. This is the one definition of "the same message"
// shared by every producer path (Go EnqueueBatch, `proxyq enqueue --file`, the HTTP API):
//
//   - service_sid, session_sid, participant_sid: equal strings;
//   - body: equal strings (every character counts; JSON escapes are gone once decoded);
//   - media_url: the same URLs, as strings, in the same order;
//   - send_before: the same instant (the UTC offset it was written with does not matter), or
//     absent in both;
//   - account_sid, ordering_key: equal strings (or absent in both);
//   - queue: the same queue ("" counts as DefaultQueue);
//   - send_at: asynq schedules in whole seconds and forgets a schedule once it is due, so
//     only a pending schedule counts: a send time still in the future at now (one-second
//     resolution) must be the same second in both, and a send time now past, or absent,
//     matches a message that is already due.
func Differences(a, b Intent, now time.Time) []string {
	var diffs []string
	pa, pb := a.Payload, b.Payload
	if pa.ServiceSID != pb.ServiceSID {
		diffs = append(diffs, "service_sid")
	}
	if pa.SessionSID != pb.SessionSID {
		diffs = append(diffs, "session_sid")
	}
	if pa.ParticipantSID != pb.ParticipantSID {
		diffs = append(diffs, "participant_sid")
	}
	if pa.Body != pb.Body {
		diffs = append(diffs, "body")
	}
	if !slices.Equal(pa.MediaURLs, pb.MediaURLs) {
		diffs = append(diffs, "media_url")
	}
	if !sameInstant(pa.SendBefore, pb.SendBefore) {
		diffs = append(diffs, "send_before")
	}
	if pa.AccountSID != pb.AccountSID {
		diffs = append(diffs, "account_sid")
	}
	if pa.OrderingKey != pb.OrderingKey {
		diffs = append(diffs, "ordering_key")
	}
	if queueOrDefault(a.Queue) != queueOrDefault(b.Queue) {
		diffs = append(diffs, "queue")
	}
	if pendingSecond(a.SendAt, now) != pendingSecond(b.SendAt, now) {
		diffs = append(diffs, "send_at")
	}
	return diffs
}

func queueOrDefault(q string) string {
	if q == "" {
		return DefaultQueue
	}
	return q
}

// pendingSecond is the Unix second t is scheduled for if that is still in the future at now,
// else 0 (due: no schedule left to compare).
func pendingSecond(t, now time.Time) int64 {
	if t.IsZero() || t.Unix() <= now.Unix() {
		return 0
	}
	return t.Unix()
}

func sameInstant(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// KeyReuseError says a batch carries one idempotency key on two different messages. It is
// the Err of a *BatchError whose Index is the later message.
type KeyReuseError struct {
	Key    string
	First  int      // index of the earlier message with this key
	Fields []string // what differs, as Differences names it
}

func (e *KeyReuseError) Error() string {
	return fmt.Sprintf("idempotency_key: repeats the key of message %d with a different message (%s)", e.First, DiffersText(e.Fields))
}

// DiffersText renders a Differences result for error messages: "body differs",
// "body, queue differ".
func DiffersText(fields []string) string {
	verb := " differ"
	if len(fields) == 1 {
		verb = " differs"
	}
	return strings.Join(fields, ", ") + verb
}

// BatchErrors is every entry of a batch that failed one check (for instance every repeated
// key with a different message). errors.As finds the first *BatchError in it.
type BatchErrors []*BatchError

func (es BatchErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes each *BatchError to errors.Is and errors.As.
func (es BatchErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
