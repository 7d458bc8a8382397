package tasks

import (
	"context"
	"crypto/rand"
	"encoding/base32"
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
	via            string // through what it was enqueued (origin.go)
}

// Queue puts the message on the named asynq queue (default "default").
func Queue(name string) Option { return func(o *enqueueOptions) { o.queue = name } }

// ProcessAt schedules the message to be sent no earlier than t.
func ProcessAt(t time.Time) Option { return func(o *enqueueOptions) { o.processAt = t } }

// ProcessIn schedules the message to be sent no earlier than d from now.
func ProcessIn(d time.Duration) Option { return func(o *enqueueOptions) { o.processIn = d } }

// IdempotencyKey makes key the task ID and names one message whatever the queue: enqueuing the
// same key again, on any queue, while the task is kept returns the existing task's ID and queue
// with Result.Duplicate set (the key is reserved in Redis, see reserve.go and the package doc).
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
	// Duplicate is true when the idempotency key was already in use: nothing new was enqueued,
	// TaskID names the existing task and Queue its queue (which may differ from the one asked
	// for: a key names one message whatever the queue).
	Duplicate bool
}

// Enqueuer hands messages to the proxyq workers through asynq. It is safe for concurrent use.
type Enqueuer struct {
	client *asynq.Client
	// rdb reserves idempotency keys across queues (reserve.go); nil only for an Enqueuer
	// from NewEnqueuerFromClient.
	rdb   redis.UniversalClient
	insp  *asynq.Inspector // on rdb: withdraws a task enqueued under a reservation lost meanwhile
	owned bool
	now   func() time.Time
	// grace is how long a reservation whose task does not exist yet is left to its producer
	// before another producer takes it over (ReservationGrace; tests shorten it).
	grace time.Duration
	lanes laneRedis        // Redis for ordering lanes (lane.go): rdb, or WithLaneRedis's
	wait  *replwait.Waiter // WaitForReplicas (replicas.go); nil: no wait
}

// NewEnqueuer returns an Enqueuer with its own Redis connection pool; Close releases it.
func NewEnqueuer(r asynq.RedisConnOpt, opts ...EnqueuerOption) *Enqueuer {
	rdb, ok := r.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		panic(fmt.Sprintf("tasks: unsupported RedisConnOpt type %T", r))
	}
	e := NewEnqueuerFromRedis(rdb)
	e.owned = true
	for _, o := range opts {
		o(e)
	}
	return e
}

// NewEnqueuerFromRedis returns an Enqueuer on a go-redis client the caller owns (Close leaves
// it open). Any client asynq accepts will do: single node, Sentinel failover, or Cluster.
func NewEnqueuerFromRedis(rdb redis.UniversalClient) *Enqueuer {
	return &Enqueuer{client: asynq.NewClientFromRedisClient(rdb), rdb: rdb,
		insp: asynq.NewInspectorFromRedisClient(rdb), now: time.Now, grace: ReservationGrace,
		lanes: laneRedis{rdb: rdb}}
}

// NewEnqueuerFromClient returns an Enqueuer on an asynq client the caller owns (Close leaves
// it open).
//
// Deprecated: an asynq.Client does not expose its Redis connection, so this Enqueuer cannot
// reserve idempotency keys across queues: a key is unique only within one queue. Use
// NewEnqueuerFromRedis.
func NewEnqueuerFromClient(c *asynq.Client) *Enqueuer {
	return &Enqueuer{client: c, now: time.Now, grace: ReservationGrace}
}

// Close closes the Redis connections if the Enqueuer created them.
func (e *Enqueuer) Close() error {
	e.lanes.close()
	if !e.owned {
		return nil
	}
	if e.rdb == nil {
		return e.client.Close()
	}
	// The client and the inspector share rdb (asynq refuses to close a shared connection):
	// closing rdb releases all three.
	return e.rdb.Close()
}

// Prepare validates a message and builds its asynq task without enqueuing it. It returns a
// ValidationErrors or *ValidationError naming the problem, or ErrPayloadTooLarge.
func (e *Enqueuer) Prepare(p Payload, opts ...Option) (*asynq.Task, []asynq.Option, error) {
	pr, err := e.prepare(p, e.now(), opts...)
	if err != nil {
		return nil, nil, err
	}
	return pr.task, pr.aopts, nil
}

// prepared is one validated message ready for asynq, with what the idempotency key
// reservation (reserve.go) and the batch's same-message rule need.
type prepared struct {
	task   *asynq.Task
	aopts  []asynq.Option
	key    string // idempotency key, "" for none
	intent Intent
	// life is how long the message can be looked up (messageLife): its lookups expire then.
	life       time.Duration
	enqueuedAt time.Time // the batch's instant, in the origin header and the lookups (origin.go)
	// conversation is a Conversations message's CH…, filed under it instead of a participant
	// and session (origin.go); "" for a Proxy message.
	conversation string
}

// scheduled is what a message's options decide, whichever its API: the options, when it is due,
// its deadline (send_before, derived from SendWithin when the payload has none) and its asynq
// options, task ID included.
type scheduled struct {
	o          enqueueOptions
	sendAt     time.Time
	sendBefore *time.Time
	aopts      []asynq.Option
}

// schedule applies opts at now to a message whose payload says sendBefore, with the option rules
// both APIs share. It returns a *ValidationError for a bad key, queue, negative option or a
// deadline not after the send time.
func schedule(now time.Time, sendBefore *time.Time, opts []Option) (scheduled, error) {
	o := enqueueOptions{queue: DefaultQueue, retention: DefaultRetention, maxRetry: DefaultMaxRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.idempotencyKey != "" {
		if err := ValidateIdempotencyKey(o.idempotencyKey); err != nil {
			return scheduled{}, err
		}
	}
	if o.queue == "" {
		return scheduled{}, &ValidationError{Field: "queue", Rule: "must not be empty"}
	}
	if o.processIn < 0 || o.sendWithin < 0 || o.retention < 0 || o.maxRetry < 0 {
		return scheduled{}, &ValidationError{Field: "options", Rule: "durations and retry counts must not be negative"}
	}
	sendAt := now
	if !o.processAt.IsZero() {
		sendAt = o.processAt
	} else if o.processIn > 0 {
		sendAt = sendAt.Add(o.processIn)
	}
	if sendBefore == nil && o.sendWithin > 0 {
		t := sendAt.Add(o.sendWithin).UTC().Truncate(time.Millisecond)
		sendBefore = &t
	}
	if sendBefore != nil && !sendBefore.After(sendAt) {
		return scheduled{}, &ValidationError{Field: "send_before", Rule: "must be after the scheduled send time"}
	}
	id := o.idempotencyKey
	if id == "" {
		// Known before the enqueue (a lane place is taken first), and shorter than asynq's own.
		id = newTaskID()
	}
	aopts := []asynq.Option{
		asynq.Queue(o.queue),
		asynq.MaxRetry(o.maxRetry),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(o.retention),
		asynq.TaskID(id),
	}
	if !o.processAt.IsZero() {
		aopts = append(aopts, asynq.ProcessAt(o.processAt))
	} else if o.processIn > 0 {
		aopts = append(aopts, asynq.ProcessIn(o.processIn))
	}
	return scheduled{o: o, sendAt: sendAt, sendBefore: sendBefore, aopts: aopts}, nil
}

// delayed reports whether the options schedule the message later than its enqueue.
func (s scheduled) delayed() bool { return !s.o.processAt.IsZero() || s.o.processIn > 0 }

// prepare is Prepare at a given now, so a batch judges all its messages at one instant.
func (e *Enqueuer) prepare(p Payload, now time.Time, opts ...Option) (prepared, error) {
	s, err := schedule(now, p.SendBefore, opts)
	if err != nil {
		return prepared{}, err
	}
	p.SendBefore = s.sendBefore
	data, err := p.Encode()
	if err != nil {
		return prepared{}, err
	}
	pr := prepared{task: withOrigin(asynq.NewTask(TypeSendInteraction, data), originHeader(now, s.o.via)), aopts: s.aopts,
		key: s.o.idempotencyKey, intent: Intent{Payload: p, Queue: s.o.queue}, enqueuedAt: now,
		life: messageLife(now, s.sendAt, p.SendBefore, s.o.retention)}
	if s.delayed() {
		pr.intent.SendAt = s.sendAt
	}
	return pr, nil
}

// Enqueue validates and enqueues one message. It returns a validation error or
// ErrPayloadTooLarge (nothing enqueued), a Redis error, or a Result; a reused idempotency key is
// not an error (Result.Duplicate), whichever queue the key's message is on.
func (e *Enqueuer) Enqueue(ctx context.Context, p Payload, opts ...Option) (Result, error) {
	pr, err := e.prepare(p, e.now(), opts...)
	if err != nil {
		return Result{}, err
	}
	if p.OrderingKey == "" {
		return e.enqueue(ctx, pr)
	}
	places, err := e.takeLanePlaces(ctx, []Message{{Payload: p}}, func(int) []asynq.Option { return pr.aopts })
	if err != nil {
		return Result{}, err
	}
	res, err := e.enqueue(ctx, pr)
	if err != nil || res.Duplicate {
		// Nothing of ours was enqueued. A duplicate's message keeps the place it took when it
		// was enqueued (in its own queue's lane, which may not be this one): this place would
		// otherwise hold the lane behind an "enqueuing" head for LaneEnqueueGrace.
		places.release(ctx, 0)
	}
	return res, err
}

func (e *Enqueuer) enqueue(ctx context.Context, pr prepared) (res Result, err error) {
	var endSpan func(Result, error)
	pr.task, endSpan = startEnqueueSpan(ctx, pr.task, pr.aopts) // the task carries the trace context
	defer func() { endSpan(res, err) }()
	// Filed under its participant and session first, so that a message that exists can be found.
	if err := e.indexMessage(ctx, pr); err != nil {
		return Result{}, err
	}
	if pr.key != "" && e.rdb != nil {
		return e.enqueueKeyed(ctx, pr) // reserve.go
	}
	return e.enqueueTask(ctx, pr)
}

// enqueueTask hands the task to asynq: an ID already on the task's queue is a duplicate.
func (e *Enqueuer) enqueueTask(ctx context.Context, pr prepared) (Result, error) {
	info, err := e.client.EnqueueContext(ctx, pr.task, pr.aopts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		id, queue := taskIDAndQueue(pr.aopts)
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
// a *BatchError for the first invalid one. An idempotency key repeated within the batch is one
// message when the repeats are the same message (Differences): it is enqueued once and every
// later occurrence gets the first's task ID with Duplicate set. Repeats that differ are an
// error: a BatchErrors with one *BatchError (Err a *KeyReuseError) per differing occurrence,
// and nothing is enqueued. Then the messages are enqueued concurrently and one Result per
// message comes back in input order. If Redis fails part-way, the results of the messages that
// were enqueued are returned with the error; re-running the batch with idempotency keys is safe.
func (e *Enqueuer) EnqueueBatch(ctx context.Context, msgs []Message) (_ []Result, err error) {
	ctx, endSpan := startBatchSpan(ctx, len(msgs))
	defer func() { endSpan(err) }()
	ready, firstOf, err := e.prepareBatch(msgs)
	if err != nil {
		return nil, err
	}
	// Lane places in input order, one per message: a repeat of an earlier message has none.
	firsts := make([]Message, len(msgs))
	for i := range msgs {
		if firstOf[i] == i {
			firsts[i] = msgs[i]
		}
	}
	places, err := e.takeLanePlaces(ctx, firsts, func(i int) []asynq.Option { return ready[i].aopts })
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(msgs))
	errs := make([]error, len(msgs))
	sem := make(chan struct{}, batchParallelism)
	var wg sync.WaitGroup
	for i := range ready {
		if firstOf[i] != i {
			continue // a repeat of an earlier message: answered from its result below
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = e.enqueue(ctx, ready[i])
			if errs[i] != nil || results[i].Duplicate {
				places.release(ctx, i) // as in Enqueue
			}
		}(i)
	}
	wg.Wait()
	for i, f := range firstOf {
		if f != i && results[f].TaskID != "" {
			results[i] = Result{TaskID: results[f].TaskID, Queue: results[f].Queue, Duplicate: true}
		}
	}
	for i, err := range errs {
		if err != nil {
			return results, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return results, nil
}

// CheckBatch runs EnqueueBatch's checks without touching Redis: it returns nil when
// EnqueueBatch would go on to enqueue, else the same error EnqueueBatch would return.
func (e *Enqueuer) CheckBatch(msgs []Message) error {
	_, _, err := e.prepareBatch(msgs)
	return err
}

// prepareBatch prepares every message at one instant (so the same input makes the same
// Intent) and maps each message to the first message carrying its idempotency key (itself
// when it is the first, or has none).
func (e *Enqueuer) prepareBatch(msgs []Message) ([]prepared, []int, error) {
	now := e.now()
	ready := make([]prepared, len(msgs))
	firstOf := make([]int, len(msgs))
	firstOfKey := make(map[string]int, len(msgs))
	var reused BatchErrors
	for i, m := range msgs {
		pr, err := e.prepare(m.Payload, now, m.Options...)
		if err != nil {
			return nil, nil, &BatchError{Index: i, Err: err}
		}
		ready[i], firstOf[i] = pr, i
		if pr.key == "" {
			continue
		}
		f, seen := firstOfKey[pr.key]
		if !seen {
			firstOfKey[pr.key] = i
			continue
		}
		firstOf[i] = f
		if diffs := Differences(ready[f].intent, pr.intent, now); diffs != nil {
			reused = append(reused, &BatchError{Index: i, Err: &KeyReuseError{Key: pr.key, First: f, Fields: diffs}})
		}
	}
	if len(reused) > 0 {
		return nil, nil, reused
	}
	return ready, firstOf, nil
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

// taskIDEncoding writes task IDs in lowercase letters and digits: safe in URLs, Redis keys and
// file names, and never mistaken for a command-line flag.
var taskIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// taskIDBytes is how much randomness a generated task ID carries: 104 bits, 21 characters. Two
// of 10^10 messages share an ID with a chance of about 10^-11; asynq's own task IDs (UUIDs,
// 122 random bits) take 36 characters. Short IDs pay on every message: a task ID is stored
// several times (the task's key and message, asynq's completed set, the claim, the delivery
// index, the console's lookups), and packed (PackTaskID) it is 14 bytes, which fits a value in
// Redis's smallest allocations.
const taskIDBytes = 13

// newTaskID is a random task ID for a message without an idempotency key.
func newTaskID() string {
	var b [taskIDBytes]byte
	_, _ = rand.Read(b[:])
	return taskIDEncoding.EncodeToString(b[:])
}
