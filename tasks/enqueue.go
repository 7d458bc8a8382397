package tasks

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/replwait"
)

// Enqueue defaults. They are task options, fixed when the message is enqueued.
const (
	DefaultQueue         = "default"
	DefaultMaxRetry      = 25              // failed attempts before asynq archives the task
	DefaultTimeout       = 5 * time.Minute // one handler run: limiter wait + reconciliation + one POST
	DefaultRetention     = 72 * time.Hour  // how long a completed task and its outcome stay readable
	batchParallelism     = 16              // concurrent enqueue scripts in EnqueueBatch
	maxIdempotencyKeyLen = 200
)

var idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._:@+=-]+$`)

// ValidateIdempotencyKey checks a caller-chosen key. Keys become asynq task IDs and appear in
// URL paths, so they are limited to 1–200 characters of A–Z a–z 0–9 . _ : @ + = -, and "." and
// ".." are refused (HTTP clients and routers rewrite them as path segments). It returns nil or a
// *ValidationError with Field "idempotency_key".
func ValidateIdempotencyKey(key string) error {
	switch {
	case key == "":
		return &ValidationError{Field: "idempotency_key", Rule: "must not be empty"}
	case len(key) > maxIdempotencyKeyLen:
		return &ValidationError{Field: "idempotency_key", Rule: fmt.Sprintf("must be at most %d characters", maxIdempotencyKeyLen)}
	case !idempotencyKeyPattern.MatchString(key):
		return &ValidationError{Field: "idempotency_key", Rule: "may contain only A-Z a-z 0-9 . _ : @ + = -"}
	case key == "." || key == "..":
		return &ValidationError{Field: "idempotency_key", Rule: "must not be . or .."}
	}
	return nil
}

// Option adjusts how one message is enqueued.
type Option func(*enqueueOptions)

type enqueueOptions struct {
	queue          string
	processAt      time.Time
	processIn      time.Duration
	idempotencyKey string
	sendWithin     time.Duration
	retention      time.Duration
	maxRetry       int
}

// Queue puts the message on the named asynq queue (default "default").
func Queue(name string) Option { return func(o *enqueueOptions) { o.queue = name } }

// ProcessAt schedules the message to be sent no earlier than t.
func ProcessAt(t time.Time) Option { return func(o *enqueueOptions) { o.processAt = t } }

// ProcessIn schedules the message to be sent no earlier than d from now.
func ProcessIn(d time.Duration) Option { return func(o *enqueueOptions) { o.processIn = d } }

// IdempotencyKey makes key the task ID: enqueuing the same key again on the same queue while the
// task is retained returns the existing task ID with Result.Duplicate set. asynq scopes task IDs
// per queue, so the same key on two different queues makes two tasks: keep one queue per key.
func IdempotencyKey(key string) Option { return func(o *enqueueOptions) { o.idempotencyKey = key } }

// SendWithin sets the payload's send_before to the scheduled time (or now) plus d, unless the
// payload already carries one.
func SendWithin(d time.Duration) Option { return func(o *enqueueOptions) { o.sendWithin = d } }

// Retention keeps the completed task and its outcome readable for d (default DefaultRetention).
func Retention(d time.Duration) Option { return func(o *enqueueOptions) { o.retention = d } }

// MaxRetry sets how many failed attempts asynq allows before archiving (default DefaultMaxRetry).
// Waits for Twilio's 429s and for proxyq's own account limits are not failed attempts.
func MaxRetry(n int) Option { return func(o *enqueueOptions) { o.maxRetry = n } }

// Message is one entry of a batch.
type Message struct {
	Payload Payload
	Options []Option
}

// Result says what became of one enqueue call.
type Result struct {
	TaskID string
	Queue  string
	// Duplicate is true when the idempotency key was already in use: nothing new was enqueued
	// and TaskID names the existing task.
	Duplicate bool
}

// Enqueuer hands messages to the proxyq workers through asynq. It is safe for concurrent use.
type Enqueuer struct {
	client *asynq.Client
	owned  bool
	now    func() time.Time
	wait   *replwait.Waiter      // WaitForReplicas (replicas.go); nil: no wait
	rdb    redis.UniversalClient // its client, closed by Close
}

// NewEnqueuer returns an Enqueuer with its own asynq client on the given Redis; Close releases it.
func NewEnqueuer(redis asynq.RedisConnOpt, opts ...EnqueuerOption) *Enqueuer {
	e := &Enqueuer{client: asynq.NewClient(redis), owned: true, now: time.Now}
	for _, o := range opts {
		o(e, redis)
	}
	return e
}

// NewEnqueuerFromClient returns an Enqueuer on a client the caller owns (Close leaves it open).
func NewEnqueuerFromClient(c *asynq.Client) *Enqueuer {
	return &Enqueuer{client: c, now: time.Now}
}

// Close closes the asynq client if the Enqueuer created it.
func (e *Enqueuer) Close() error {
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
	if e.owned {
		return e.client.Close()
	}
	return nil
}

// Prepare validates a message and builds its asynq task without enqueuing it. It returns a
// ValidationErrors or *ValidationError naming the problem, or ErrPayloadTooLarge.
func (e *Enqueuer) Prepare(p Payload, opts ...Option) (*asynq.Task, []asynq.Option, error) {
	o := enqueueOptions{queue: DefaultQueue, retention: DefaultRetention, maxRetry: DefaultMaxRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.idempotencyKey != "" {
		if err := ValidateIdempotencyKey(o.idempotencyKey); err != nil {
			return nil, nil, err
		}
	}
	if o.queue == "" {
		return nil, nil, &ValidationError{Field: "queue", Rule: "must not be empty"}
	}
	if o.processIn < 0 || o.sendWithin < 0 || o.retention < 0 || o.maxRetry < 0 {
		return nil, nil, &ValidationError{Field: "options", Rule: "durations and retry counts must not be negative"}
	}
	sendAt := e.now()
	if !o.processAt.IsZero() {
		sendAt = o.processAt
	} else if o.processIn > 0 {
		sendAt = sendAt.Add(o.processIn)
	}
	if p.SendBefore == nil && o.sendWithin > 0 {
		t := sendAt.Add(o.sendWithin).UTC().Truncate(time.Millisecond)
		p.SendBefore = &t
	}
	if p.SendBefore != nil && !p.SendBefore.After(sendAt) {
		return nil, nil, &ValidationError{Field: "send_before", Rule: "must be after the scheduled send time"}
	}
	data, err := p.Encode()
	if err != nil {
		return nil, nil, err
	}
	aopts := []asynq.Option{
		asynq.Queue(o.queue),
		asynq.MaxRetry(o.maxRetry),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(o.retention),
	}
	if o.idempotencyKey != "" {
		aopts = append(aopts, asynq.TaskID(o.idempotencyKey))
	}
	if !o.processAt.IsZero() {
		aopts = append(aopts, asynq.ProcessAt(o.processAt))
	} else if o.processIn > 0 {
		aopts = append(aopts, asynq.ProcessIn(o.processIn))
	}
	return asynq.NewTask(TypeSendInteraction, data), aopts, nil
}

// Enqueue validates and enqueues one message. It returns a validation error or
// ErrPayloadTooLarge (nothing enqueued), a Redis error, or a Result; a reused idempotency key is
// not an error (Result.Duplicate).
func (e *Enqueuer) Enqueue(ctx context.Context, p Payload, opts ...Option) (Result, error) {
	task, aopts, err := e.Prepare(p, opts...)
	if err != nil {
		return Result{}, err
	}
	return e.enqueue(ctx, task, aopts)
}

func (e *Enqueuer) enqueue(ctx context.Context, task *asynq.Task, aopts []asynq.Option) (Result, error) {
	info, err := e.client.EnqueueContext(ctx, task, aopts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		id, queue := taskIDAndQueue(aopts)
		// The task found may be one whose own enqueue was not replicated: wait for it too.
		return Result{TaskID: id, Queue: queue, Duplicate: true}, e.replicated(ctx, queue)
	}
	if err != nil {
		return Result{}, fmt.Errorf("enqueue: %w", err)
	}
	return Result{TaskID: info.ID, Queue: info.Queue}, e.replicated(ctx, info.Queue)
}

// BatchError reports the entries of a batch that failed validation; nothing was enqueued.
type BatchError struct {
	Index int // position in the batch, from 0
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("message %d: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// EnqueueBatch validates every message first and enqueues nothing if any is invalid, returning
// a *BatchError for the first invalid one. Then it enqueues them concurrently and returns one
// Result per message in input order. If Redis fails part-way, the results of the messages that
// were enqueued are returned with the error; re-running the batch with idempotency keys is safe.
func (e *Enqueuer) EnqueueBatch(ctx context.Context, msgs []Message) ([]Result, error) {
	type prepared struct {
		task  *asynq.Task
		aopts []asynq.Option
	}
	ready := make([]prepared, len(msgs))
	seenKeys := make(map[string]int, len(msgs))
	for i, m := range msgs {
		task, aopts, err := e.Prepare(m.Payload, m.Options...)
		if err != nil {
			return nil, &BatchError{Index: i, Err: err}
		}
		if id, _ := taskIDAndQueue(aopts); id != "" {
			if first, dup := seenKeys[id]; dup {
				return nil, &BatchError{Index: i, Err: &ValidationError{Field: "idempotency_key",
					Rule: fmt.Sprintf("repeats the key of message %d in the same batch", first)}}
			}
			seenKeys[id] = i
		}
		ready[i] = prepared{task, aopts}
	}
	results := make([]Result, len(msgs))
	errs := make([]error, len(msgs))
	sem := make(chan struct{}, batchParallelism)
	var wg sync.WaitGroup
	for i := range ready {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = e.enqueue(ctx, ready[i].task, ready[i].aopts)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return results, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return results, nil
}

func taskIDAndQueue(aopts []asynq.Option) (id, queue string) {
	for _, o := range aopts {
		switch o.Type() {
		case asynq.TaskIDOpt:
			id, _ = o.Value().(string)
		case asynq.QueueOpt:
			queue, _ = o.Value().(string)
		}
	}
	return id, queue
}
