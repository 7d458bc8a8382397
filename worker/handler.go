package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// ProxyAPI is the part of the Proxy client the worker uses; *proxyclient.Client implements it.
type ProxyAPI interface {
	AccountKey() string
	CreateMessageInteraction(ctx context.Context, p proxyclient.CreateParams) (*proxyclient.MessageInteraction, error)
	ListMessageInteractions(ctx context.Context, service, session, participant string, opt proxyclient.ListOptions) (*proxyclient.InteractionPage, error)
}

// recordTimeout bounds the Redis writes that record an outcome. They run on a context detached
// from the task's, so a shutdown or task timeout never leaves a finished POST unrecorded.
const recordTimeout = 10 * time.Second

// Handler is the asynq handler for proxy:send_interaction and conversations:send_message: one
// send policy over each API's few operations (sender.go). It is safe for concurrent use.
type Handler struct {
	cfg     Config
	api     ProxyAPI
	conv    conversationsClients // Conversations clients (sender_conversations.go); none: not sent
	ledger  *Ledger
	limiter Limiter
	metrics *Metrics
	log     *zap.Logger
	now     func() time.Time
	sends   sync.WaitGroup // POSTs whose outcome is not recorded yet
	lanes   lanes          // ordered lanes (lane.go), on the ledger's Redis
	// delivery is told of each recorded send (delivery_hook.go); nil: nobody listens.
	delivery DeliveryHook
	// services (per-Service limits) and accounts (many accounts) are optional; see accounts.go.
	services *ServiceLimiter
	accounts Accounts
	// replicas, when set, holds each POST until its in-flight mark is on Redis replicas (replication.go).
	replicas *replicaWait
}

// NewHandler wires a handler. cfg must have passed WithDefaults and Validate; limiter and metrics
// may be nil (no limits, unregistered metrics).
func NewHandler(cfg Config, api ProxyAPI, ledger *Ledger, limiter Limiter, metrics *Metrics, log *zap.Logger) *Handler {
	if limiter == nil {
		limiter = NoLimit{}
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{cfg: cfg, api: api, ledger: ledger, limiter: limiter, metrics: metrics, log: log, now: time.Now,
		lanes: lanes{rdb: ledger.rdb, grace: tasks.LaneEnqueueGrace}}
}

// WaitForSends blocks until every POST that has started has its outcome recorded, or ctx ends.
func (h *Handler) WaitForSends(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.sends.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// claimLease covers what a run does before its POST when it cannot begin at once:
// reconciliation (bounded by HTTPTimeout+5s) and the ledger writes around it.
func (h *Handler) claimLease() time.Duration {
	return 2*h.cfg.HTTPTimeout + 10*time.Second
}

// sendLease covers one POST and the writes that record its outcome.
func (h *Handler) sendLease() time.Duration { return h.cfg.HTTPTimeout + recordTimeout }

// run is one handling of one message: its identity, payload and the ledger ownership it holds.
type run struct {
	*Handler
	api   accountClient // the message's account's client, kept for the whole run (rotation-safe)
	task  *asynq.Task
	id    string
	queue string
	msg   message       // the message with its API's operations (sender.go)
	p     tasks.Payload // the fields every API shares (msg.shared()): send_before, ordering_key, account_sid
	own   *Ownership
	posts int
	span  trace.Span // the run's span (tracing.go); a no-op one when tracing is off
	// slot is the create's place in its Service's window (nil: per-Service limits off), taken
	// with the account permit and checked again just before the POST (departing).
	slot *Reservation
	// logged is what the run's next ledger write adds to the attempt log (attemptlog_run.go).
	logged []LogEntry
}

// ProcessTask handles one message: decode, account limits, ledger (reconcile if needed,
// deadline), POST, classify, record. Its error tells asynq what to do next (see retry.go).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) (err error) {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	ctx, span := startAttempt(ctx, t, id, queue)
	defer func() { endAttempt(span, err) }()
	return h.handle(ctx, id, queue, t)
}

// handle is ProcessTask with the task's identity made explicit, so tests can call it directly.
//
// The account permit comes first: on the common path one ledger round trip (an HSETNX for a
// fresh message, else a script) both takes the message and begins its send. A run
// that finds reconciliation to do keeps the permit, because listing interactions is a request
// to the same account; just before its POST it takes its Service slot again and extends the
// permit's lease if reconciliation used them up (departing).
func (h *Handler) handle(ctx context.Context, id, queue string, t *asynq.Task) error {
	m, err := h.decode(t)
	if err != nil {
		h.metrics.Attempts.WithLabelValues(outcomeInvalid, apiOfType(t.Type())).Inc()
		traceOutcome(trace.SpanFromContext(ctx), outcomeInvalid, "", 0, nil)
		h.log.Warn("archived: invalid payload", zap.String("task_id", id), zap.String("queue", queue),
			zap.String("outcome", outcomeInvalid), zap.Error(err))
		return archive(fmt.Errorf("invalid payload: %w", err))
	}
	p := m.shared()
	r := &run{Handler: h, task: t, id: id, queue: queue, msg: m, p: p, span: trace.SpanFromContext(ctx)}
	m.trace(r.span)
	if p.OrderingKey != "" {
		// Its lane first: a message that must wait takes no permit and no ledger lease.
		return r.inLane(ctx, r.send)
	}
	return r.send(ctx)
}

// send is the rest of handle, for a message whose turn it is. A message for an account with no
// credentials ends here (archived), after its turn, so that its lane hands on at once.
func (r *run) send(ctx context.Context) error {
	h, p, id := r.Handler, r.p, r.id
	var err error
	if r.api, err = r.msg.bind(h); err != nil {
		return r.unknownAccount(err)
	}
	permit, err := r.acquirePermit(ctx)
	if err != nil {
		return r.limited(ctx, err)
	}
	intent := SendIntent{Lease: h.sendLease(), SendWithin: h.cfg.SendWithin}
	if p.SendBefore != nil {
		intent.SendBefore = *p.SendBefore
	}
	lctx, sp := startStep(ctx, SpanLedgerAcquire)
	own, err := h.ledger.AcquireToSend(lctx, r.queue, id, h.claimLease(), intent)
	sp.end(err)
	if err != nil {
		permit.Release(false)
		h.log.Warn("ledger unavailable", zap.String("task_id", id), zap.Error(err))
		return err
	}
	r.own, r.posts = own, own.Posts
	switch {
	case own.Gone:
		permit.Release(false)
		// asynq no longer has the task (deleted while this run was on its way): nothing to do.
		r.logOutcome(outcomeDuplicate, "", 0, nil, "task no longer exists; not sent")
		return nil
	case own.Sent:
		permit.Release(false)
		// Sent by an earlier run whose asynq bookkeeping did not finish: the outcome is already
		// the task's result (same hash); send nothing. That run may not have set delivery
		// tracking up (its MarkSent reply was lost, it died, its hook failed): set it up again.
		r.logOutcome(outcomeDuplicate, own.Outcome.CreatedSID(), 0, nil, "already sent; outcome kept")
		return r.trackFoundSent(ctx, own.Outcome)
	case own.BusyFor > 0:
		permit.Release(false)
		r.metrics.Attempts.WithLabelValues(outcomeDuplicate, r.apiLabel()).Inc()
		traceOutcome(r.span, outcomeDuplicate, "", own.Posts, nil)
		return &retryLater{After: own.BusyFor + jitter(time.Second), Err: errors.New("another run of this message holds its send lease")}
	case own.Began:
		return r.post(ctx, permit, own.StartedAt, time.Now())
	}
	return r.process(ctx, permit)
}

// limiterWait is how long a run may wait for its limits: LimiterMaxWait, never past the
// payload's deadline.
func (r *run) limiterWait() time.Duration {
	maxWait := r.cfg.LimiterMaxWait
	if r.p.SendBefore != nil {
		maxWait = max(0, min(maxWait, time.Until(*r.p.SendBefore)))
	}
	return maxWait
}

// acquirePermit waits for the message's Service slot and the account's limits, within
// limiterWait.
func (r *run) acquirePermit(ctx context.Context) (Permit, error) {
	maxWait := r.limiterWait()
	waitStart := r.now()
	// The Service's budget first: it holds nothing, while an account slot held during that
	// wait would keep other Services' messages from being sent.
	lctx, sp := startStep(ctx, SpanLimiterWait)
	rsv, err := r.acquireService(lctx, maxWait)
	if err != nil {
		sp.end(err)
		r.metrics.LimiterWait.Observe(r.now().Sub(waitStart).Seconds())
		return nil, err
	}
	permit, err := r.limiter.Acquire(lctx, r.api.AccountKey(), r.id, max(0, maxWait-r.now().Sub(waitStart)))
	sp.end(err)
	if err == nil {
		r.slot = rsv
		r.refreshClient()
	}
	r.metrics.LimiterWait.Observe(r.now().Sub(waitStart).Seconds())
	return permit, err
}

// limited handles a run that got no permit. The wait is not a failed attempt, so the deadline
// must bound it: the ledger is consulted (it knows when the message was first seen) and an
// expired message is archived rather than retried for ever.
func (r *run) limited(ctx context.Context, err error) error {
	var limitedErr *LimitedError
	if !errors.As(err, &limitedErr) {
		return fmt.Errorf("account limiter: %w", err)
	}
	r.metrics.Attempts.WithLabelValues(outcomeRateLimited, r.apiLabel()).Inc()
	traceOutcome(r.span, outcomeRateLimited, "", r.posts, nil)
	spread := limitedErr.RetryIn / 2
	if limitedErr.Service != "" {
		// A Service's window opens at a known instant for everyone: come back just after it.
		spread = limitedErr.RetryIn / 20
	}
	retry := &retryLater{After: limitedErr.RetryIn + jitter(spread+10*time.Millisecond), Err: err}
	own, lerr := r.ledger.Acquire(ctx, r.queue, r.id, r.claimLease())
	if lerr != nil || own.Sent || own.BusyFor > 0 || own.Gone {
		return retry // the next run sorts it out
	}
	r.own, r.posts = own, own.Posts
	if own.Attempt == attemptNone {
		if deadline := r.deadline(); !own.Now.Before(deadline) {
			return r.expire(ctx, deadline)
		}
	}
	r.noteWait(limitedErr)
	r.release(ctx, own.Attempt, nil)
	return retry
}

func (r *run) deadline() time.Time {
	if r.p.SendBefore != nil {
		return *r.p.SendBefore
	}
	return r.own.FirstSeen.Add(r.cfg.SendWithin)
}

// process handles a run that owns the message but could not begin at once: reconcile an
// unknown outcome, archive an expired message, or begin the send.
func (r *run) process(ctx context.Context, permit Permit) error {
	if r.own.Attempt == attemptUnknown {
		if done, err := r.reconcile(ctx); done {
			permit.Release(false)
			return err
		}
	}
	if deadline := r.deadline(); !r.own.Now.Before(deadline) {
		permit.Release(false)
		return r.expire(ctx, deadline)
	}
	lctx, sp := startStep(ctx, SpanLedgerBeginSend)
	startedAt, posts, err := r.ledger.BeginSend(lctx, r.queue, r.id, r.own.Fence, r.sendLease())
	sp.end(err)
	if err != nil {
		permit.Release(false)
		if errors.Is(err, ErrLostOwnership) {
			return &retryLater{After: time.Second, Err: err}
		}
		return err
	}
	r.posts = posts
	return r.post(ctx, permit, startedAt, time.Now())
}

// post makes the one POST that can create the interaction (the ledger already says it is in
// flight), and records what came of it.
//
// begun is when the ledger said in flight, on this process's monotonic clock. The ledger's lease
// covers the POST only if the POST starts promptly; a process frozen in between (a paused VM, a
// stop signal) gives the message up instead of sending under a lease that may have lapsed.
func (r *run) post(ctx context.Context, permit Permit, startedAt, begun time.Time) error {
	posts := r.posts
	if err := r.awaitReplicas(ctx, permit); err != nil {
		return err
	}
	if err := r.departing(ctx, permit); err != nil {
		return err
	}
	if stalled := time.Since(begun); stalled > r.cfg.HTTPTimeout/2 {
		permit.Release(false)
		r.release(ctx, attemptNone, nil) // refused if another run took over; then it decides
		return &retryLater{After: time.Second, Err: fmt.Errorf("not sent: this process stalled %v before its request could start", stalled.Round(time.Millisecond))}
	}
	r.sends.Add(1)
	defer r.sends.Done()

	// Detached from the task's context: asynq cancels that at shutdown or task timeout, and a
	// POST cut off midway is exactly the ambiguous outcome we must avoid creating ourselves.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.HTTPTimeout)
	r.metrics.InFlight.Inc()
	began := r.now()
	c, err := r.msg.create(sendCtx, r.id)
	latency := r.now().Sub(began)
	r.noteAttempt(began, latency, err)
	r.metrics.InFlight.Dec()
	r.metrics.RequestDuration.WithLabelValues("create", r.apiLabel()).Observe(latency.Seconds())
	cancel()

	var apiErr *proxyclient.Error
	if errors.As(err, &apiErr) {
		r.metrics.twilioError(apiErr.Code, apiErr.StatusCode)
	}
	rateLimited := apiErr != nil && apiErr.StatusCode == 429
	var after429 time.Duration
	slowAccount := rateLimited
	if rateLimited {
		after429, slowAccount = r.rateLimitRetry(err, posts)
	}
	permit.Release(slowAccount)

	recCtx, cancelRec := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancelRec()
	switch r.msg.classify(err) {
	case proxyclient.ClassNone:
		return r.recordSent(recCtx, &c, false, latency)
	case proxyclient.ClassRetryable:
		if rateLimited {
			// Twilio says a 429 was not processed: safe to resend, and not a failed attempt.
			r.release(recCtx, attemptNone, nil)
			r.logOutcome(outcomeRateLimited, "", latency, err, "")
			return &retryLater{After: after429, Err: err}
		}
		failure, inProgress := r.msg.handling(err)
		if inProgress {
			r.release(recCtx, attemptUnknown, nil) // 80623: reconcile before any resend
		} else {
			r.release(recCtx, attemptNone, nil)
		}
		after, _ := r.msg.retryAfter(err)
		r.logOutcome(outcomeRetried, "", latency, err, "")
		return &retryLater{After: after, Failure: failure, Err: err}
	case proxyclient.ClassPermanent:
		o := &tasks.Outcome{State: tasks.OutcomeFailed, Attempts: posts, Error: err.Error(), RecordedAt: r.now().UTC()}
		if apiErr != nil {
			o.ErrorCode, o.HTTPStatus, o.Error = apiErr.Code, apiErr.StatusCode, apiErr.Message
		}
		r.release(recCtx, attemptNone, o)
		r.logOutcome(outcomePermanent, "", latency, err, "")
		return archive(fmt.Errorf("permanent failure, not retried: %w", err))
	default: // ambiguous: the interaction may exist
		r.release(recCtx, attemptUnknown, &tasks.Outcome{State: tasks.OutcomeUnknown, Attempts: posts, RecordedAt: r.now().UTC(),
			Error: "the last request may have created the message; reconciling before any resend"})
		r.logOutcome(outcomeUnknown, "", latency, err, "")
		wait := max(time.Until(startedAt.Add(r.cfg.ReconcileSettle)), time.Second)
		return &retryLater{After: wait, Failure: true,
			Err: fmt.Errorf("outcome unknown, will reconcile before any resend: %w", err)}
	}
}

// departing makes the run's limits hold for a POST leaving now. Between the limits and the
// POST came the ledger, perhaps reconciliation (up to HTTPTimeout+5s) and a replica wait: a
// Service slot left behind is given back and a new one taken (Reservation.Departing), and an
// account slot whose lease was used up is extended to cover the POST and its release. When
// either cannot be had the message is given up unsent (ledger back to none, permit returned)
// and comes back later, not as a failed attempt.
func (r *run) departing(ctx context.Context, permit Permit) error {
	slot, err := r.slot.Departing(ctx, min(r.limiterWait(), r.services.MaxWait()))
	if err == nil {
		r.slot = slot
		err = permit.Extend(ctx, r.cfg.HTTPTimeout+time.Second) // the POST, and the release after it
	}
	if err == nil {
		return nil
	}
	permit.Release(false)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	r.release(rctx, attemptNone, nil) // refused if another run took over; then it decides
	var limited *LimitedError
	if errors.As(err, &limited) {
		r.metrics.Attempts.WithLabelValues(outcomeRateLimited, r.apiLabel()).Inc()
		traceOutcome(r.span, outcomeRateLimited, "", r.posts, nil)
		return &retryLater{After: limited.RetryIn + jitter(limited.RetryIn/20+10*time.Millisecond), Err: err}
	}
	r.log.Warn("not sent: the limits could not be renewed for the request; will retry", zap.String("task_id", r.id), zap.Error(err))
	return &retryLater{After: time.Second, Err: fmt.Errorf("not sent: %w", err)}
}

// reconcile decides, after a request whose answer we never saw, whether it created the
// interaction. done is false when the caller should go on and send (nothing was created).
func (r *run) reconcile(ctx context.Context) (done bool, err error) {
	if horizon := r.own.StartedAt.Add(-r.cfg.ReconcileSkew).Add(r.ledger.ClaimTTL()); r.msg.claimsInteraction() && !r.own.Now.Before(horizon) {
		// Claims of look-alike interactions made since that request may have expired: adopting
		// one could take another message's SMS, and resending could duplicate ours.
		reason := fmt.Sprintf("outcome unknown: the last request started %s, beyond reconciliation's horizon (claims are kept %v); not resent, to avoid a duplicate SMS",
			r.own.StartedAt.UTC().Format(time.RFC3339), r.ledger.ClaimTTL())
		r.release(ctx, attemptUnknown, &tasks.Outcome{State: tasks.OutcomeUnknown, Attempts: r.posts, Error: reason, RecordedAt: r.now().UTC()})
		r.logOutcome(outcomeUnknown, "", 0, nil, reason)
		return true, archive(errors.New(reason))
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.HTTPTimeout+5*time.Second)
	began := r.now()
	rctx, sp := startStep(rctx, SpanReconcile)
	res, err := r.msg.find(rctx, r)
	sp.end(err, reconcileAttrs(res)...)
	cancel()
	if err == nil {
		r.note(ReconcileEntry(began, len(res.Candidates), "", res.Inconclusive != ""))
	}
	r.metrics.RequestDuration.WithLabelValues("list", r.apiLabel()).Observe(r.now().Sub(began).Seconds())
	if err != nil {
		r.release(ctx, attemptUnknown, nil)
		if limited := (*LimitedError)(nil); errors.As(err, &limited) {
			// The Service's list budget is spent: not a failure, come back when it allows one.
			return true, &retryLater{After: limited.RetryIn + jitter(limited.RetryIn/2+10*time.Millisecond), Err: err}
		}
		r.logOutcome(outcomeUnknown, "", 0, err, "reconciliation failed; will try again, never resend blindly")
		return true, &retryLater{Failure: true, Err: fmt.Errorf("outcome unknown and reconciliation failed: %w", err)}
	}
	for i := range res.Candidates {
		r.logged = []LogEntry{ReconcileEntry(began, len(res.Candidates), res.Candidates[i].SID, res.Inconclusive != "")}
		err := r.recordSent(ctx, &res.Candidates[i], true, 0)
		if errors.Is(err, ErrClaimed) {
			continue // another message of ours adopted it between our list and our claim
		}
		return true, err
	}
	if res.Inconclusive != "" {
		reason := fmt.Sprintf("outcome unknown: %s; not resent, to avoid a duplicate SMS", res.Inconclusive)
		r.release(ctx, attemptUnknown, &tasks.Outcome{State: tasks.OutcomeUnknown, Attempts: r.posts, Error: reason, RecordedAt: r.now().UTC()})
		r.logOutcome(outcomeUnknown, "", 0, nil, reason)
		return true, archive(errors.New(reason))
	}
	if settleAt := r.own.StartedAt.Add(r.cfg.ReconcileSettle); r.own.Now.Before(settleAt) {
		r.release(ctx, attemptUnknown, nil)
		return true, &retryLater{After: settleAt.Sub(r.own.Now),
			Err: errors.New("outcome unknown and not found yet; waiting for Twilio to settle before deciding")}
	}
	// Settled and not found: the request created nothing. The caller sends.
	return false, nil
}

// recordSent records what was created as this message's outcome: its claim (when its API's
// reconciliation needs one), the ledger and the asynq result in one step (the result is what
// people read; the ledger stops a second send), then sets delivery tracking up (track). It runs
// on a context detached from the task's and bounded by recordTimeout: the message exists, and a
// task cancelled now (shutdown, task timeout, on the reconcile path too) must still record it
// and track it.
func (r *run) recordSent(ctx context.Context, mi *created, reconciled bool, latency time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	o := &tasks.Outcome{State: tasks.OutcomeSent, Attempts: r.posts, Reconciled: reconciled, RecordedAt: r.now().UTC()}
	r.msg.record(*mi, o)
	sentAt := mi.DateCreated
	if sentAt.IsZero() {
		sentAt = o.RecordedAt
	}
	o.SentAt = &sentAt
	account := r.interactionAccount(mi.AccountSID)
	var claim *Claim
	if r.msg.claimsInteraction() {
		claim = &Claim{AccountSID: account}
	}
	lctx, sp := startStep(ctx, SpanLedgerRecord)
	indexed, err := r.ledger.MarkSent(lctx, r.queue, r.id, claim, r.own.Fence, o, r.logged...)
	sp.end(err)
	if err != nil {
		if errors.Is(err, ErrClaimed) {
			return err
		}
		// Not known to be recorded. Either the script did not run — the ledger still says in
		// flight (or unknown), so whichever run comes next reconciles and finds it: no second
		// message — or it ran and its reply was lost: the next run finds the ledger sent and
		// sets delivery tracking up (track).
		r.log.Error("sent but not known to be recorded; the next run will reconcile or find it sent", zap.String("task_id", r.id),
			zap.String("api", r.msg.api()), zap.String("created_sid", mi.SID), zap.Error(err))
		return &retryLater{After: r.sendLease(), Err: fmt.Errorf("record sent %s %s: %w", r.msg.api(), mi.SID, err)}
	}
	traceResult(r.span, o)
	outcome := outcomeSent
	if reconciled {
		outcome = outcomeReconciled
	}
	r.logOutcome(outcome, mi.SID, latency, nil, "")
	return r.track(ctx, account, o, indexed)
}

func (r *run) expire(ctx context.Context, deadline time.Time) error {
	reason := fmt.Sprintf("expired: not sent before its deadline %s", deadline.UTC().Format(time.RFC3339))
	r.release(ctx, attemptNone, &tasks.Outcome{State: tasks.OutcomeExpired, Attempts: r.posts, Error: reason, RecordedAt: r.now().UTC()})
	r.logOutcome(outcomeExpired, "", 0, nil, reason)
	return archive(errors.New(reason))
}

// release gives up ownership and, with o, records it as the task's result in the same step;
// losing ownership to another run is fine here (that run decides now, and records).
func (r *run) release(ctx context.Context, attempt string, o *tasks.Outcome) {
	if o != nil {
		traceResult(r.span, o)
	}
	lctx, sp := startStep(ctx, SpanLedgerRelease)
	err := r.ledger.Release(lctx, r.queue, r.id, r.own.Fence, attempt, o, r.takeLog()...)
	sp.end(err)
	if err != nil && !errors.Is(err, ErrLostOwnership) {
		// The lease lapses by itself; the next run treats a lapsed in-flight attempt as unknown.
		r.log.Warn("ledger release failed; lease will lapse", zap.String("task_id", r.id), zap.Error(err))
	}
}

// logOutcome writes the one log line of an attempt. Never the body or media URLs.
func (r *run) logOutcome(outcome, interactionSID string, latency time.Duration, err error, note string) {
	r.metrics.Attempts.WithLabelValues(outcome, r.apiLabel()).Inc()
	traceOutcome(r.span, outcome, interactionSID, r.posts, err)
	// Room for every field below: one allocation, where growing from five took two.
	fields := make([]zap.Field, 0, 14)
	fields = append(fields, zap.String("task_id", r.id), zap.String("queue", r.queue))
	fields = append(fields, r.msg.logFields()...)
	fields = append(fields, zap.String("outcome", outcome), zap.Int("attempt", r.posts))
	if interactionSID != "" {
		key := "interaction_sid"
		if r.msg.api() == apiConversations {
			key = "message_sid"
		}
		fields = append(fields, zap.String(key, interactionSID))
	}
	if latency > 0 {
		fields = append(fields, zap.Duration("latency", latency))
	}
	var apiErr *proxyclient.Error
	if errors.As(err, &apiErr) {
		fields = append(fields, zap.Int("http_status", apiErr.StatusCode), zap.Int("twilio_code", apiErr.Code),
			zap.String("twilio_request_id", apiErr.RequestID))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if note != "" {
		fields = append(fields, zap.String("note", note))
	}
	switch outcome {
	case outcomeSent, outcomeReconciled, outcomeDuplicate:
		r.log.Info("attempt", fields...)
	case outcomePermanent, outcomeUnknown, outcomeExpired:
		r.log.Warn("attempt", fields...)
	default:
		r.log.Info("attempt", fields...)
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}
