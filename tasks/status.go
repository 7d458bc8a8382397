package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// ErrNotFound is returned by Lookup and Cancel when no queue holds a task with the given ID.
var ErrNotFound = errors.New("no message with that task ID")

// Status is the one view of a message that `proxyq status --json` and the HTTP API both print.
type Status struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	// API is the Twilio API the message goes to: "proxy" or "conversations" (from its task type).
	API string `json:"api,omitempty"`
	// State is asynq's: pending, scheduled, active, retry, completed or archived.
	State         string     `json:"state"`
	Retried       int        `json:"retried"`   // failed attempts counted by asynq
	MaxRetry      int        `json:"max_retry"` // failed attempts allowed before archiving
	LastError     string     `json:"last_error,omitempty"`
	LastFailedAt  *time.Time `json:"last_failed_at,omitempty"`
	NextProcessAt *time.Time `json:"next_process_at,omitempty"`
	CompletedAt   *time.Time `json:"completed_at,omitempty"`
	// Message identifies the recipient; the body and media URLs are left out (personal data).
	Message struct {
		ServiceSID     string     `json:"service_sid"`
		SessionSID     string     `json:"session_sid"`
		ParticipantSID string     `json:"participant_sid"`
		SendBefore     *time.Time `json:"send_before,omitempty"`
		OrderingKey    string     `json:"ordering_key,omitempty"`
		// ConversationSID and ChatServiceSID address a Conversations message (the Proxy SIDs
		// above are then empty).
		ConversationSID string `json:"conversation_sid,omitempty"`
		ChatServiceSID  string `json:"chat_service_sid,omitempty"`
	} `json:"message"`
	// Lane is the message's place in its ordering lane (ReadLane), for messages with a key.
	Lane *LaneStatus `json:"lane,omitempty"`
	// Outcome is the worker's record, when it has written one.
	Outcome *Outcome `json:"outcome,omitempty"`
}

// Lookup finds a message by task ID in every queue. It returns ErrNotFound or a Redis error.
func Lookup(ctx context.Context, insp *asynq.Inspector, id string) (*Status, error) {
	info, err := findTask(ctx, insp, id)
	if err != nil {
		return nil, err
	}
	return statusOf(info), nil
}

func findTask(ctx context.Context, insp *asynq.Inspector, id string) (*asynq.TaskInfo, error) {
	if id == "" {
		return nil, ErrNotFound
	}
	queues, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := insp.GetTaskInfo(q, id)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			continue
		default:
			return nil, fmt.Errorf("look up task %q in queue %q: %w", id, q, err)
		}
	}
	return nil, ErrNotFound
}

func statusOf(info *asynq.TaskInfo) *Status {
	s := &Status{
		ID: info.ID, Queue: info.Queue, State: info.State.String(),
		Retried: info.Retried, MaxRetry: info.MaxRetry, LastError: info.LastErr,
	}
	if !info.LastFailedAt.IsZero() {
		t := info.LastFailedAt.UTC()
		s.LastFailedAt = &t
	}
	if !info.NextProcessAt.IsZero() && info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived {
		t := info.NextProcessAt.UTC()
		s.NextProcessAt = &t
	}
	if !info.CompletedAt.IsZero() {
		t := info.CompletedAt.UTC()
		s.CompletedAt = &t
	}
	switch info.Type {
	case TypeSendInteraction:
		s.API = "proxy"
	case TypeSendConversationMessage:
		s.API = APIConversations
		var p ConversationPayload
		if json.Unmarshal(info.Payload, &p) == nil {
			s.Message.ConversationSID, s.Message.ChatServiceSID = p.ConversationSID, p.ServiceSID
			s.Message.SendBefore, s.Message.OrderingKey = p.SendBefore, p.OrderingKey
		}
		if o, err := ParseOutcome(info.Result); err == nil {
			s.Outcome = o
		}
		return s
	}
	var p Payload
	if json.Unmarshal(info.Payload, &p) == nil {
		s.Message.ServiceSID, s.Message.SessionSID, s.Message.ParticipantSID = p.ServiceSID, p.SessionSID, p.ParticipantSID
		s.Message.SendBefore = p.SendBefore
		s.Message.OrderingKey = p.OrderingKey
	}
	if o, err := ParseOutcome(info.Result); err == nil {
		s.Outcome = o
	}
	return s
}

// ErrNotCancelable is returned by Cancel for a message that is being sent, was sent, or has
// finished; the Status that comes with it says which.
var ErrNotCancelable = errors.New("message can no longer be cancelled")

// Cancel deletes a message that has not been sent: one that is pending, scheduled or waiting to
// retry. A retrying message whose last request may have reached Twilio (outcome unknown) is not
// cancelled: it may already have been sent. Callers that keep more knowledge of in-flight sends
// (the worker's ledger) check it before calling Cancel. It returns the message's status before
// the cancel with nil, ErrNotFound, ErrNotCancelable, or a Redis error.
func Cancel(ctx context.Context, insp *asynq.Inspector, id string) (*Status, error) {
	info, err := findTask(ctx, insp, id)
	if err != nil {
		return nil, err
	}
	st := statusOf(info)
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry:
	default:
		return st, ErrNotCancelable
	}
	if st.Outcome != nil && st.Outcome.State == OutcomeUnknown {
		return st, ErrNotCancelable
	}
	// asynq refuses to delete an active task, so a worker that picked the message up in the
	// meantime wins and the cancel reports ErrNotCancelable.
	if err := insp.DeleteTask(info.Queue, id); err != nil {
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return st, ErrNotFound
		}
		if now, lookErr := findTask(ctx, insp, id); lookErr == nil && now.State == asynq.TaskStateActive {
			return statusOf(now), ErrNotCancelable
		}
		return st, fmt.Errorf("cancel %q: %w", id, err)
	}
	return st, nil
}
