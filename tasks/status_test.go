package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// startWorker runs a small asynq server on the test's database until the test ends. Failed
// tasks wait an hour before their retry, so a test sees them sitting in the retry state.
func startWorker(t *testing.T, e *env, h asynq.HandlerFunc) {
	t.Helper()
	srv := asynq.NewServer(e.db.ConnOpt(), asynq.Config{
		Concurrency:       2,
		Queues:            map[string]int{DefaultQueue: 1},
		TaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return time.Hour },
		ShutdownTimeout:   2 * time.Second,
		LogLevel:          asynq.FatalLevel,
	})
	if err := srv.Start(h); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

// waitState polls until the task reaches state, failing the test after a bounded wait.
func waitState(t *testing.T, e *env, id string, state asynq.TaskState) *asynq.TaskInfo {
	t.Helper()
	var last *asynq.TaskInfo
	for range 500 { // 500 × 20 ms = 10 s at most
		info, err := e.insp.GetTaskInfo(DefaultQueue, id)
		if err == nil && info.State == state {
			return info
		}
		last = info
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s never reached state %v (last seen %+v)", id, state, last)
	return nil
}

// outcomeHandler writes the outcome named by the message body as the task result, then
// succeeds ("sent") or fails ("unknown", "nothing").
func outcomeHandler(recordedAt time.Time) asynq.HandlerFunc {
	return func(ctx context.Context, task *asynq.Task) error {
		p, err := Decode(task.Payload())
		if err != nil {
			return fmt.Errorf("bad payload: %w", asynq.SkipRetry)
		}
		switch p.Body {
		case "sent":
			return writeOutcome(task, Outcome{State: OutcomeSent, InteractionSID: "KI" + hex32,
				OutboundStatus: "sent", Attempts: 1, RecordedAt: recordedAt})
		case "unknown":
			if err := writeOutcome(task, Outcome{State: OutcomeUnknown, Attempts: 1,
				Error: "connection reset after request was written", RecordedAt: recordedAt}); err != nil {
				return err
			}
			return errors.New("ambiguous send")
		default:
			return errors.New("503 from upstream")
		}
	}
}

func writeOutcome(task *asynq.Task, o Outcome) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = task.ResultWriter().Write(data)
	return err
}

func TestLookupNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// No queues exist yet.
	if _, err := Lookup(ctx, e.insp, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup in empty Redis = %v, want ErrNotFound", err)
	}
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("exists")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"nope", "", "exist", "exists ", "EXISTS"} {
		st, err := Lookup(ctx, e.insp, id)
		if !errors.Is(err, ErrNotFound) || st != nil {
			t.Errorf("Lookup(%q) = %v, %v; want nil, ErrNotFound", id, st, err)
		}
	}
}

func TestLookupPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const secretBody = "secret-body-zq: your code is 774411"
	const secretMedia = "https://private-media.example.com/x.png?token=abc"
	p := validPayload()
	p.Body = secretBody
	p.MediaURLs = []string{secretMedia}
	res, err := e.enq.Enqueue(ctx, p, SendWithin(time.Hour), MaxRetry(7))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Lookup(ctx, e.insp, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != res.TaskID || st.Queue != DefaultQueue || st.State != "pending" || st.MaxRetry != 7 || st.Retried != 0 {
		t.Errorf("Status = %+v", st)
	}
	if st.Message.ServiceSID != p.ServiceSID || st.Message.SessionSID != p.SessionSID || st.Message.ParticipantSID != p.ParticipantSID {
		t.Errorf("Status.Message = %+v", st.Message)
	}
	if st.Message.SendBefore == nil || st.NextProcessAt == nil {
		t.Errorf("SendBefore %v NextProcessAt %v, want both set", st.Message.SendBefore, st.NextProcessAt)
	}
	if st.Outcome != nil || st.CompletedAt != nil || st.LastFailedAt != nil {
		t.Errorf("pending task has outcome %v completed %v failed %v", st.Outcome, st.CompletedAt, st.LastFailedAt)
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"secret-body", "774411", "private-media", "token=abc", `"body"`, "media_url"} {
		if strings.Contains(string(data), leak) {
			t.Errorf("Status JSON contains %q: %s", leak, data)
		}
	}
	for _, key := range []string{`"id"`, `"queue"`, `"state":"pending"`, `"service_sid"`, `"participant_sid"`, `"send_before"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("Status JSON lacks %s: %s", key, data)
		}
	}
}

func TestLookupOtherQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, q := range []string{"critical", "default", "low"} {
		if _, err := e.enq.Enqueue(ctx, validPayload(), Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.enq.Enqueue(ctx, validPayload(), Queue("low"), ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Lookup(ctx, e.insp, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Queue != "low" || st.State != "scheduled" || st.NextProcessAt == nil {
		t.Errorf("Status = %+v", st)
	}
}

func TestLookupCanceledContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.enq.Enqueue(context.Background(), validPayload()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Lookup(ctx, e.insp, "any"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup with canceled context = %v, want context.Canceled", err)
	}
}

func TestLookupOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	recorded := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := validPayload()
	p.Body = "sent"
	res, err := e.enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, e, outcomeHandler(recorded))
	waitState(t, e, res.TaskID, asynq.TaskStateCompleted)

	st, err := Lookup(ctx, e.insp, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "completed" || st.CompletedAt == nil || st.NextProcessAt != nil {
		t.Errorf("Status = %+v", st)
	}
	o := st.Outcome
	if o == nil || o.State != OutcomeSent || o.InteractionSID != "KI"+hex32 || o.OutboundStatus != "sent" ||
		o.Attempts != 1 || !o.RecordedAt.Equal(recorded) {
		t.Errorf("Outcome = %+v", o)
	}

	// Cancel refuses a completed message and leaves it readable.
	st, err = Cancel(ctx, e.insp, res.TaskID)
	if !errors.Is(err, ErrNotCancelable) || st == nil || st.State != "completed" {
		t.Errorf("Cancel(completed) = %+v, %v; want completed status, ErrNotCancelable", st, err)
	}
	if _, err := Lookup(ctx, e.insp, res.TaskID); err != nil {
		t.Errorf("Lookup after refused cancel = %v", err)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      []Option
		wantState string
	}{
		{"pending", nil, "pending"},
		{"scheduled", []Option{ProcessIn(time.Hour)}, "scheduled"},
		{"scheduled with key", []Option{ProcessAt(time.Now().Add(time.Hour)), IdempotencyKey("sched-1")}, "scheduled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			res, err := e.enq.Enqueue(ctx, validPayload(), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Cancel(ctx, e.insp, res.TaskID)
			if err != nil {
				t.Fatalf("Cancel() = %v", err)
			}
			if st.State != tt.wantState || st.ID != res.TaskID {
				t.Errorf("Cancel() status %+v, want state %s before the cancel", st, tt.wantState)
			}
			if _, err := Lookup(ctx, e.insp, res.TaskID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup after cancel = %v, want ErrNotFound", err)
			}
			if _, err := Cancel(ctx, e.insp, res.TaskID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Cancel = %v, want ErrNotFound", err)
			}
			// A cancelled key is free again.
			if again, err := e.enq.Enqueue(ctx, validPayload(), tt.opts...); err != nil || again.Duplicate {
				t.Errorf("re-enqueue after cancel = %+v, %v", again, err)
			}
		})
	}
}

func TestCancelNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := Cancel(ctx, e.insp, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel in empty Redis = %v, want ErrNotFound", err)
	}
	if _, err := e.enq.Enqueue(ctx, validPayload()); err != nil {
		t.Fatal(err)
	}
	st, err := Cancel(ctx, e.insp, "nope")
	if !errors.Is(err, ErrNotFound) || st != nil {
		t.Errorf("Cancel(unknown) = %v, %v; want nil, ErrNotFound", st, err)
	}
}

func TestCancelArchived(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.enq.Enqueue(ctx, validPayload())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.insp.ArchiveTask(DefaultQueue, res.TaskID); err != nil {
		t.Fatal(err)
	}
	st, err := Cancel(ctx, e.insp, res.TaskID)
	if !errors.Is(err, ErrNotCancelable) || st == nil || st.State != "archived" {
		t.Errorf("Cancel(archived) = %+v, %v", st, err)
	}
}

func TestCancelRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	recorded := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ambiguous, plain := validPayload(), validPayload()
	ambiguous.Body = "unknown"
	plain.Body = "nothing"
	amb, err := e.enq.Enqueue(ctx, ambiguous, IdempotencyKey("ambiguous"))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := e.enq.Enqueue(ctx, plain, IdempotencyKey("plain"))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, e, outcomeHandler(recorded))
	waitState(t, e, amb.TaskID, asynq.TaskStateRetry)
	waitState(t, e, pl.TaskID, asynq.TaskStateRetry)

	// The last request may have reached Twilio: not cancellable.
	st, err := Cancel(ctx, e.insp, amb.TaskID)
	if !errors.Is(err, ErrNotCancelable) {
		t.Fatalf("Cancel(retry, outcome unknown) = %v, want ErrNotCancelable", err)
	}
	if st.State != "retry" || st.Retried != 1 || st.LastError == "" || st.LastFailedAt == nil ||
		st.Outcome == nil || st.Outcome.State != OutcomeUnknown {
		t.Errorf("status %+v outcome %+v", st, st.Outcome)
	}
	if _, err := Lookup(ctx, e.insp, amb.TaskID); err != nil {
		t.Errorf("Lookup after refused cancel = %v", err)
	}

	// A retry that never reached Twilio (no outcome) is still cancellable.
	st, err = Cancel(ctx, e.insp, pl.TaskID)
	if err != nil || st.State != "retry" {
		t.Fatalf("Cancel(retry, no outcome) = %+v, %v", st, err)
	}
	if _, err := Lookup(ctx, e.insp, pl.TaskID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after cancel = %v, want ErrNotFound", err)
	}
}

// A Conversations message's status names its API and conversation, never its body.
func TestLookupConversation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := ConversationPayload{ConversationSID: "CH" + hex32, ServiceSID: "IS" + hex32, Body: "secret-body-zq", OrderingKey: "ride-1"}
	res, err := e.enq.EnqueueConversation(ctx, p, SendWithin(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Lookup(ctx, e.insp, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if st.API != APIConversations || st.Message.ConversationSID != p.ConversationSID || st.Message.ChatServiceSID != p.ServiceSID ||
		st.Message.OrderingKey != "ride-1" || st.Message.SendBefore == nil || st.Message.ParticipantSID != "" {
		t.Fatalf("Status = %+v, want the conversation's", st)
	}
	data, _ := json.Marshal(st)
	if strings.Contains(string(data), "secret-body") || !strings.Contains(string(data), `"api":"conversations"`) {
		t.Fatalf("Status JSON %s", data)
	}
}
