package tasks

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// env is one test's Redis database with an Enqueuer and an Inspector on it.
type env struct {
	db   redistest.DB
	enq  *Enqueuer
	insp *asynq.Inspector
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := redistest.NewDB(t)
	e := &env{db: db, enq: NewEnqueuer(db.ConnOpt()), insp: asynq.NewInspector(db.ConnOpt())}
	t.Cleanup(func() {
		_ = e.enq.Close()
		_ = e.insp.Close()
	})
	return e
}

// keyCount is how many Redis keys the test's database holds: 0 proves nothing was enqueued.
func (e *env) keyCount(t *testing.T) int64 {
	t.Helper()
	n, err := e.db.Client(t).DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) taskInfo(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := e.insp.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatalf("GetTaskInfo(%q, %q): %v", queue, id, err)
	}
	return info
}

// storedPayload decodes the payload asynq holds for a task, the way the worker will.
func storedPayload(t *testing.T, info *asynq.TaskInfo) Payload {
	t.Helper()
	p, err := Decode(info.Payload)
	if err != nil {
		t.Fatalf("stored payload does not decode: %v", err)
	}
	return p
}

func (e *env) pendingCount(t *testing.T, queue string) int {
	t.Helper()
	q, err := e.insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatalf("GetQueueInfo(%q): %v", queue, err)
	}
	return q.Size
}

func TestValidateIdempotencyKey(t *testing.T) {
	t.Parallel()
	const charsRule = "may contain only A-Z a-z 0-9 . _ : @ + = -"
	tests := []struct {
		key  string
		rule string // "" means valid
	}{
		{"a", ""},
		{"order-1234", ""},
		{"order_1234.v2:reminder@acme+x=y", ""},
		{"...", ""},
		{"a..b", ""},
		{strings.Repeat("k", 200), ""},
		{"", "must not be empty"},
		{strings.Repeat("k", 201), "must be at most 200 characters"},
		{".", "must not be . or .."},
		{"..", "must not be . or .."},
		{"a b", charsRule},
		{"a/b", charsRule},
		{"../x", charsRule},
		{"a?b", charsRule},
		{"a#b", charsRule},
		{"a%2Fb", charsRule},
		{"a\nb", charsRule},
		{"a\x00", charsRule},
		{"key\n", charsRule},
		{"clé", charsRule},
		{"\uff4b\uff45\uff59", charsRule}, // fullwidth "key"
		{"a*", charsRule},
		{"{a}", charsRule},
	}
	for _, tt := range tests {
		name := tt.key
		if len(name) > 20 {
			name = fmt.Sprintf("%d chars", len(name))
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := ValidateIdempotencyKey(tt.key)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("ValidateIdempotencyKey(%q) = %v, want nil", tt.key, err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("ValidateIdempotencyKey(%q) = %v (%T), want *ValidationError", tt.key, err, err)
			}
			if verr.Field != "idempotency_key" || verr.Rule != tt.rule {
				t.Errorf("got %q: %q, want idempotency_key: %q", verr.Field, verr.Rule, tt.rule)
			}
		})
	}
}

// TestPrepare covers option handling without Redis: Prepare is pure apart from the clock.
func TestPrepare(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 678e6, time.UTC)
	at := now.Add(3 * time.Hour)
	explicit := now.Add(10 * time.Minute)
	past := now.Add(-time.Minute)
	withSB := func(sb *time.Time) Payload { p := validPayload(); p.SendBefore = sb; return p }

	tests := []struct {
		name     string
		p        Payload
		opts     []Option
		wantSB   *time.Time // expected send_before in the task payload
		wantProb string     // "field: rule" when Prepare must fail
	}{
		{"defaults", validPayload(), nil, nil, ""},
		{"send within now", validPayload(), []Option{SendWithin(time.Hour)}, ptr(now.Add(time.Hour)), ""},
		{"send within after process in", validPayload(), []Option{ProcessIn(30 * time.Minute), SendWithin(time.Hour)},
			ptr(now.Add(90 * time.Minute)), ""},
		{"send within after process at", validPayload(), []Option{ProcessAt(at), SendWithin(time.Hour)},
			ptr(at.Add(time.Hour)), ""},
		{"option order irrelevant", validPayload(), []Option{SendWithin(time.Hour), ProcessAt(at)},
			ptr(at.Add(time.Hour)), ""},
		{"process at wins over process in", validPayload(), []Option{ProcessIn(time.Minute), ProcessAt(at), SendWithin(time.Minute)},
			ptr(at.Add(time.Minute)), ""},
		{"payload send_before kept", withSB(&explicit), []Option{SendWithin(time.Hour)}, &explicit, ""},
		{"send_before before schedule", withSB(&explicit), []Option{ProcessIn(time.Hour)}, nil,
			"send_before: must be after the scheduled send time"},
		{"send_before in the past", withSB(&past), nil, nil, "send_before: must be after the scheduled send time"},
		{"send_before equal to now", withSB(&now), nil, nil, "send_before: must be after the scheduled send time"},
		{"invalid payload", Payload{}, nil, nil, "service_sid: is required"},
		{"invalid key", validPayload(), []Option{IdempotencyKey("a/b")}, nil,
			"idempotency_key: may contain only A-Z a-z 0-9 . _ : @ + = -"},
		{"empty queue", validPayload(), []Option{Queue("")}, nil, "queue: must not be empty"},
		{"negative process in", validPayload(), []Option{ProcessIn(-time.Second)}, nil,
			"options: durations and retry counts must not be negative"},
		{"negative send within", validPayload(), []Option{SendWithin(-time.Second)}, nil,
			"options: durations and retry counts must not be negative"},
		{"negative retention", validPayload(), []Option{Retention(-time.Second)}, nil,
			"options: durations and retry counts must not be negative"},
		{"negative max retry", validPayload(), []Option{MaxRetry(-1)}, nil,
			"options: durations and retry counts must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &Enqueuer{now: func() time.Time { return now }}
			task, _, err := e.Prepare(tt.p, tt.opts...)
			if tt.wantProb != "" {
				if got := problems(t, err); len(got) == 0 || got[0] != tt.wantProb {
					t.Fatalf("Prepare() problems %q, want first %q", got, tt.wantProb)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			if task.Type() != TypeSendInteraction {
				t.Errorf("task type %q", task.Type())
			}
			p, err := Decode(task.Payload())
			if err != nil {
				t.Fatalf("task payload does not decode: %v", err)
			}
			switch {
			case tt.wantSB == nil && p.SendBefore != nil:
				t.Errorf("send_before = %v, want none", p.SendBefore)
			case tt.wantSB != nil && (p.SendBefore == nil || !p.SendBefore.Equal(*tt.wantSB)):
				t.Errorf("send_before = %v, want %v", p.SendBefore, tt.wantSB)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestEnqueuePending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := validPayload()
	p.MediaURLs = mediaURLs(2)

	res, err := e.enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if res.TaskID == "" || res.Queue != DefaultQueue || res.Duplicate {
		t.Fatalf("Enqueue() = %+v", res)
	}
	// Without an idempotency key the ID is ours: 26 lowercase letters and digits (docs/performance.md,
	// Redis cost per message), unique.
	if !regexp.MustCompile(`^[a-z2-7]{21}$`).MatchString(res.TaskID) {
		t.Errorf("task ID %q, want 21 characters of a-z 2-7", res.TaskID)
	}
	if again, err := e.enq.Enqueue(ctx, p); err != nil || again.TaskID == res.TaskID {
		t.Errorf("second Enqueue() = %+v, %v; want a new task ID", again, err)
	}
	info := e.taskInfo(t, DefaultQueue, res.TaskID)
	if info.State != asynq.TaskStatePending || info.Type != TypeSendInteraction {
		t.Errorf("state %v type %q, want pending %q", info.State, info.Type, TypeSendInteraction)
	}
	if info.MaxRetry != DefaultMaxRetry || info.Retention != DefaultRetention || info.Timeout != DefaultTimeout {
		t.Errorf("MaxRetry %d Retention %v Timeout %v, want %d %v %v",
			info.MaxRetry, info.Retention, info.Timeout, DefaultMaxRetry, DefaultRetention, DefaultTimeout)
	}
	got := storedPayload(t, info)
	if got.Body != p.Body || got.ServiceSID != p.ServiceSID || got.SessionSID != p.SessionSID ||
		got.ParticipantSID != p.ParticipantSID || strings.Join(got.MediaURLs, " ") != strings.Join(p.MediaURLs, " ") ||
		got.SendBefore != nil {
		t.Errorf("stored payload %+v, want %+v", got, p)
	}
}

func TestEnqueueOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, err := e.enq.Enqueue(context.Background(), validPayload(),
		Queue("critical"), MaxRetry(3), Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Queue != "critical" {
		t.Errorf("Result.Queue = %q", res.Queue)
	}
	info := e.taskInfo(t, "critical", res.TaskID)
	if info.State != asynq.TaskStatePending || info.MaxRetry != 3 || info.Retention != time.Hour || info.Timeout != DefaultTimeout {
		t.Errorf("state %v MaxRetry %d Retention %v Timeout %v", info.State, info.MaxRetry, info.Retention, info.Timeout)
	}
	// MaxRetry(0) is allowed: one attempt, then archive.
	res, err = e.enq.Enqueue(context.Background(), validPayload(), MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	if info := e.taskInfo(t, DefaultQueue, res.TaskID); info.MaxRetry != 0 {
		t.Errorf("MaxRetry(0) stored %d", info.MaxRetry)
	}
}

func TestEnqueueScheduled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	before := time.Now()

	in, err := e.enq.Enqueue(ctx, validPayload(), ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	info := e.taskInfo(t, DefaultQueue, in.TaskID)
	if info.State != asynq.TaskStateScheduled {
		t.Errorf("ProcessIn: state %v, want scheduled", info.State)
	}
	// asynq stores whole seconds.
	if info.NextProcessAt.Before(before.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("ProcessIn: NextProcessAt %v is before now+1h", info.NextProcessAt)
	}

	at := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	res, err := e.enq.Enqueue(ctx, validPayload(), ProcessAt(at))
	if err != nil {
		t.Fatal(err)
	}
	info = e.taskInfo(t, DefaultQueue, res.TaskID)
	if info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(at) {
		t.Errorf("ProcessAt: state %v NextProcessAt %v, want scheduled %v", info.State, info.NextProcessAt, at)
	}
}

func TestEnqueueSendWithin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A fixed clock in the present: asynq schedules with its own clock, Prepare with ours.
	now := time.Now().UTC().Truncate(time.Millisecond)
	e.enq.now = func() time.Time { return now }
	at := now.Add(2 * time.Hour).Truncate(time.Second)

	tests := []struct {
		name string
		opts []Option
		want time.Time
	}{
		{"now", []Option{SendWithin(time.Hour)}, now.Add(time.Hour)},
		{"process in", []Option{ProcessIn(10 * time.Minute), SendWithin(time.Hour)}, now.Add(70 * time.Minute)},
		{"process at", []Option{ProcessAt(at), SendWithin(30 * time.Minute)}, at.Add(30 * time.Minute)},
	}
	for _, tt := range tests {
		res, err := e.enq.Enqueue(context.Background(), validPayload(), tt.opts...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		p := storedPayload(t, e.taskInfo(t, DefaultQueue, res.TaskID))
		if p.SendBefore == nil || !p.SendBefore.Equal(tt.want) {
			t.Errorf("%s: send_before %v, want %v", tt.name, p.SendBefore, tt.want)
		}
	}
}

func TestEnqueueInvalidEnqueuesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := validPayload()
	bad.ParticipantSID = "KP../../Participants"
	tooBig := validPayload()
	for range MaxMediaURLs {
		tooBig.MediaURLs = append(tooBig.MediaURLs, "https://m.example.com/?"+strings.Repeat("&", 2000))
	}
	tests := []struct {
		name string
		p    Payload
		opts []Option
		want func(error) bool
	}{
		{"payload", bad, nil, func(err error) bool { var v ValidationErrors; return errors.As(err, &v) }},
		{"key", validPayload(), []Option{IdempotencyKey("../x")}, func(err error) bool { var v *ValidationError; return errors.As(err, &v) }},
		{"negative", validPayload(), []Option{ProcessIn(-time.Hour)}, func(err error) bool { var v *ValidationError; return errors.As(err, &v) }},
		{"too large encoded", tooBig, nil, func(err error) bool { return errors.Is(err, ErrPayloadTooLarge) }},
	}
	for _, tt := range tests {
		res, err := e.enq.Enqueue(context.Background(), tt.p, tt.opts...)
		if !tt.want(err) {
			t.Errorf("%s: Enqueue() = %+v, %v (%T)", tt.name, res, err, err)
		}
		if res != (Result{}) {
			t.Errorf("%s: Result %+v with an error", tt.name, res)
		}
	}
	if n := e.keyCount(t); n != 0 {
		t.Errorf("%d Redis keys after invalid enqueues, want 0", n)
	}
}

func TestEnqueueIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := validPayload()
	first.Body = "first"
	second := validPayload()
	second.Body = "second"

	r1, err := e.enq.Enqueue(ctx, first, IdempotencyKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.enq.Enqueue(ctx, second, IdempotencyKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.TaskID != "order-42" || r1.Duplicate {
		t.Errorf("first = %+v, want TaskID order-42, not duplicate", r1)
	}
	if r2.TaskID != r1.TaskID || !r2.Duplicate || r2.Queue != DefaultQueue {
		t.Errorf("second = %+v, want duplicate of %q", r2, r1.TaskID)
	}
	if n := e.pendingCount(t, DefaultQueue); n != 1 {
		t.Errorf("%d tasks in queue, want 1", n)
	}
	// The first message stands; the duplicate's payload is dropped.
	if p := storedPayload(t, e.taskInfo(t, DefaultQueue, "order-42")); p.Body != "first" {
		t.Errorf("stored body %q, want first", p.Body)
	}
	// A scheduled task holds its key too.
	r3, err := e.enq.Enqueue(ctx, first, IdempotencyKey("later"), ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r4, err := e.enq.Enqueue(ctx, first, IdempotencyKey("later"))
	if err != nil {
		t.Fatal(err)
	}
	if r3.Duplicate || !r4.Duplicate || r4.TaskID != "later" {
		t.Errorf("scheduled key: %+v then %+v", r3, r4)
	}
}

func TestEnqueueIdempotencyRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 50
	results := make([]Result, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p := validPayload()
			p.Body = fmt.Sprintf("attempt %d", i)
			results[i], errs[i] = e.enq.Enqueue(context.Background(), p, IdempotencyKey("race-key"))
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if results[i].TaskID != "race-key" {
			t.Errorf("goroutine %d: TaskID %q", i, results[i].TaskID)
		}
		if !results[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d non-duplicate results, want exactly 1", fresh)
	}
	if got := e.pendingCount(t, DefaultQueue); got != 1 {
		t.Errorf("%d tasks in queue, want 1", got)
	}
}

func TestNewEnqueuerFromClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := asynq.NewClient(e.db.ConnOpt())
	t.Cleanup(func() { _ = c.Close() })
	enq := NewEnqueuerFromClient(c)
	if _, err := enq.Enqueue(context.Background(), validPayload()); err != nil {
		t.Fatal(err)
	}
	if err := enq.Close(); err != nil {
		t.Fatal(err)
	}
	// The caller's client is still open.
	if _, err := enq.Enqueue(context.Background(), validPayload()); err != nil {
		t.Fatalf("Enqueue after Close of a borrowed client: %v", err)
	}
	if n := e.pendingCount(t, DefaultQueue); n != 2 {
		t.Errorf("%d tasks, want 2", n)
	}
}

func batchOf(n int, keyed bool) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		p := validPayload()
		p.Body = fmt.Sprintf("message %d", i)
		msgs[i].Payload = p
		if keyed {
			msgs[i].Options = []Option{IdempotencyKey(fmt.Sprintf("batch-%d", i))}
		}
	}
	return msgs
}

func TestEnqueueBatchOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// More messages than batchParallelism, some keyed and some not, so results finish out of order.
	msgs := batchOf(3*batchParallelism+5, false)
	for i := 0; i < len(msgs); i += 3 {
		msgs[i].Options = []Option{IdempotencyKey(fmt.Sprintf("key-%d", i))}
	}
	results, err := e.enq.EnqueueBatch(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(results), len(msgs))
	}
	for i, r := range results {
		if r.Duplicate || r.Queue != DefaultQueue {
			t.Errorf("result %d = %+v", i, r)
		}
		if i%3 == 0 && r.TaskID != fmt.Sprintf("key-%d", i) {
			t.Errorf("result %d TaskID %q, want key-%d", i, r.TaskID, i)
		}
		if p := storedPayload(t, e.taskInfo(t, DefaultQueue, r.TaskID)); p.Body != fmt.Sprintf("message %d", i) {
			t.Errorf("result %d names the task holding %q", i, p.Body)
		}
	}
	if n := e.pendingCount(t, DefaultQueue); n != len(msgs) {
		t.Errorf("%d tasks, want %d", n, len(msgs))
	}
}

func TestEnqueueBatchInvalidEnqueuesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msgs := batchOf(6, true)
	msgs[3].Payload.Body = ""
	results, err := e.enq.EnqueueBatch(context.Background(), msgs)
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("EnqueueBatch() = %v (%T), want *BatchError", err, err)
	}
	if be.Index != 3 {
		t.Errorf("BatchError.Index = %d, want 3", be.Index)
	}
	if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], "body: is required") {
		t.Errorf("problems %q", got)
	}
	if !strings.HasPrefix(err.Error(), "message 3: invalid payload: body: ") {
		t.Errorf("Error() = %q", err)
	}
	if results != nil {
		t.Errorf("results %v with a validation error", results)
	}
	if n := e.keyCount(t); n != 0 {
		t.Errorf("%d Redis keys after a rejected batch, want 0", n)
	}

	// An invalid option is a batch error too.
	msgs = batchOf(3, false)
	msgs[2].Options = []Option{ProcessIn(-time.Second)}
	if _, err := e.enq.EnqueueBatch(context.Background(), msgs); !errors.As(err, &be) || be.Index != 2 {
		t.Errorf("negative option: %v", err)
	}
	if n := e.keyCount(t); n != 0 {
		t.Errorf("%d Redis keys after a rejected batch, want 0", n)
	}
}

func TestEnqueueBatchRepeatedKeyDifferentMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msgs := batchOf(6, true)
	msgs[4].Options = []Option{IdempotencyKey("batch-1")}               // body differs from message 1
	msgs[5].Options = []Option{IdempotencyKey("batch-2"), Queue("low")} // body and queue differ from 2
	_, err := e.enq.EnqueueBatch(context.Background(), msgs)
	var all BatchErrors
	if !errors.As(err, &all) || len(all) != 2 {
		t.Fatalf("EnqueueBatch() = %v, want BatchErrors with 2 entries", err)
	}
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 4 {
		t.Errorf("first *BatchError %v, want index 4", be)
	}
	var kre *KeyReuseError
	if !errors.As(all[0], &kre) || kre.Key != "batch-1" || kre.First != 1 || strings.Join(kre.Fields, ",") != "body" {
		t.Errorf("entry 0 = %v", all[0])
	}
	if !errors.As(all[1], &kre) || all[1].Index != 5 || kre.First != 2 || strings.Join(kre.Fields, ",") != "body,queue" {
		t.Errorf("entry 1 = %v", all[1])
	}
	if got := all[1].Error(); got != "message 5: idempotency_key: repeats the key of message 2 with a different message (body, queue differ)" {
		t.Errorf("Error() = %q", got)
	}
	if err := e.enq.CheckBatch(msgs); !errors.As(err, &all) || len(all) != 2 {
		t.Errorf("CheckBatch() = %v, want the same BatchErrors", err)
	}
	if n := e.keyCount(t); n != 0 {
		t.Errorf("%d Redis keys after a rejected batch, want 0", n)
	}
}

// TestEnqueueBatchRepeatedKeySameMessage: a key repeated with the same message is one message,
// as it would be across two calls.
func TestEnqueueBatchRepeatedKeySameMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msgs := batchOf(4, true)
	msgs = append(msgs, msgs[1], msgs[3], msgs[1])
	// The same send time written twice, and SendWithin resolved at one instant for the batch.
	at := time.Now().Add(time.Hour)
	msgs[0].Options = append(msgs[0].Options, ProcessAt(at), SendWithin(time.Minute))
	msgs = append(msgs, Message{Payload: msgs[0].Payload, Options: []Option{IdempotencyKey("batch-0"), ProcessAt(at), SendWithin(time.Minute)}})
	if err := e.enq.CheckBatch(msgs); err != nil {
		t.Fatalf("CheckBatch() = %v", err)
	}
	results, err := e.enq.EnqueueBatch(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	r := func(id string, dup bool) Result { return Result{TaskID: id, Queue: DefaultQueue, Duplicate: dup} }
	want := []Result{r("batch-0", false), r("batch-1", false), r("batch-2", false), r("batch-3", false),
		r("batch-1", true), r("batch-3", true), r("batch-1", true), r("batch-0", true)}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("results\n got %v\nwant %v", results, want)
	}
	q, err := e.insp.GetQueueInfo(DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Size != 4 {
		t.Errorf("%d tasks, want 4", q.Size)
	}
	// Again: every entry is now a duplicate of the stored message.
	again, err := e.enq.EnqueueBatch(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if !r.Duplicate || r.TaskID != want[i].TaskID {
			t.Errorf("rerun %d = %+v", i, r)
		}
	}
}

func TestEnqueueBatchRerun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msgs := batchOf(20, true)
	first, err := e.enq.EnqueueBatch(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.enq.EnqueueBatch(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if first[i].Duplicate || !again[i].Duplicate || again[i].TaskID != first[i].TaskID || first[i].TaskID != fmt.Sprintf("batch-%d", i) {
			t.Errorf("message %d: first %+v, again %+v", i, first[i], again[i])
		}
	}
	if n := e.pendingCount(t, DefaultQueue); n != len(msgs) {
		t.Errorf("%d tasks, want %d", n, len(msgs))
	}
}

func TestEnqueueBatchEmpty(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	results, err := e.enq.EnqueueBatch(context.Background(), nil)
	if err != nil || len(results) != 0 {
		t.Errorf("EnqueueBatch(nil) = %v, %v", results, err)
	}
}

// TestEnqueueRedisDown checks that a Redis failure is an error, not a validation error, and not
// a duplicate. The address is a loopback port nothing listens on.
func TestEnqueueRedisDown(t *testing.T) {
	t.Parallel()
	enq := NewEnqueuer(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = enq.Close() })
	// The deadline only cuts go-redis's dial retries short; any failure to reach Redis will do.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := enq.Enqueue(ctx, validPayload(), IdempotencyKey("k"))
	if err == nil || res.Duplicate {
		t.Fatalf("Enqueue() = %+v, %v; want a Redis error", res, err)
	}
	var verr *ValidationError
	if errors.As(err, &verr) {
		t.Errorf("Redis failure reported as validation error: %v", err)
	}
	results, err := enq.EnqueueBatch(ctx, batchOf(1, true))
	if err == nil || !strings.HasPrefix(err.Error(), "message ") {
		t.Errorf("EnqueueBatch() error %v", err)
	}
	var be *BatchError
	if errors.As(err, &be) {
		t.Errorf("Redis failure reported as *BatchError: %v", err)
	}
	if len(results) != 1 {
		t.Errorf("%d results, want one (empty) per message", len(results))
	}
}
