package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/tasks"
)

// Deps are the worker's collaborators.
type Deps struct {
	Redis  asynq.RedisConnOpt // required
	API    ProxyAPI           // required: usually a *proxyclient.Client
	Logger *zap.Logger        // nil: no logs
	// Registerer receives the worker's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Limiter overrides the account limiter built from Config (tests, benchmarks).
	Limiter Limiter
	// Delivery sets up delivery tracking of every send, on every run that records it or finds
	// it recorded (the delivery package's Service; nil: nobody). See DeliveryHook.
	Delivery DeliveryHook
	// Tasks are more task types this pool runs beside the send (the delivery package's
	// error fetches and status webhooks), by type name.
	Tasks map[string]asynq.Handler
	// Accounts gives the credentials and limits of accounts other than API's (the accounts
	// file); nil: messages must be for API's account.
	Accounts AccountSource
	// Conversations is the default account's Conversations client (usually a
	// *conversations.Client). Nil: this pool does not take conversations:send_message tasks
	// (they wait in their queue for a worker that does, never sent through the wrong API).
	Conversations ConversationsAPI
	// ConversationsAccounts gives the Conversations clients of other accounts (nil: messages
	// must be for Conversations' account).
	ConversationsAccounts ConversationsAccounts
}

// Worker is one process's pool: Config.DequeueLoops asynq servers running the send handler.
type Worker struct {
	cfg      Config
	servers  []*asynq.Server
	handler  *Handler
	rdb      redis.UniversalClient
	metrics  *Metrics
	log      *zap.Logger
	stopping atomic.Bool
	tasks    map[string]asynq.Handler
}

// New validates cfg (after applying defaults) and wires a worker. It returns a config error
// naming the field, or an error for a Redis option it cannot use.
func New(cfg Config, deps Deps) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Redis == nil || deps.API == nil {
		return nil, errors.New("worker: Deps.Redis and Deps.API are required")
	}
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	rdb, ok := deps.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("worker: unsupported Redis option %T", deps.Redis)
	}
	metrics := NewMetrics(deps.Registerer)
	limiter := deps.Limiter
	if limiter == nil {
		// A slot's lease must outlast the request it covers, or a slow request frees its slot
		// early; and outlast reconciliation (HTTPTimeout+5s) with the ledger and replica waits
		// around it, so that a run that reconciled still holds the slot when it extends the
		// lease for its POST (Permit.Extend).
		var err error
		lim := AccountLimits{MaxInFlight: cfg.MaxInFlight, Rate: cfg.RateLimit, Burst: cfg.RateBurst,
			Lease: max(DefaultSlotLease, cfg.HTTPTimeout+recordTimeout)}
		limiter, err = newLimiterWithAccounts(rdb, lim, deps.Accounts, metrics, log)
		if err != nil {
			return nil, fmt.Errorf("worker config: %w", err)
		}
	}
	h := NewHandler(cfg, deps.API, NewLedger(rdb, cfg.LedgerTTL), limiter, metrics, log)
	h.SetDeliveryHook(deps.Delivery)
	if deps.Conversations != nil {
		h.SetConversations(deps.Conversations, deps.ConversationsAccounts)
	}
	h.replicas = newReplicaWait(rdb, cfg.RedisWaitReplicas, cfg.RedisWaitTimeout, log)
	if err := h.wireAccounts(rdb, cfg, deps, log); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, handler: h, rdb: rdb, metrics: metrics, log: log, tasks: deps.Tasks}
	// Each server is one dequeue loop (Config.DequeueLoops); the ones after the first are for
	// backlogs, so they poll an idle queue slowly.
	for i := range cfg.DequeueLoops {
		poll := cfg.PollInterval
		if i > 0 {
			poll = max(poll, DequeueLoopIdlePoll)
		}
		w.servers = append(w.servers, asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:              share(cfg.Concurrency, cfg.DequeueLoops, i),
			Queues:                   cfg.Queues,
			StrictPriority:           cfg.StrictPriority,
			RetryDelayFunc:           cfg.retryDelay,
			IsFailure:                isFailure,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			TaskCheckInterval:        poll,
			DelayedTaskCheckInterval: cfg.DelayedCheckInterval,
			Logger:                   log.Named("asynq").Sugar(),
			LogLevel:                 asynq.WarnLevel,
		}))
	}
	return w, nil
}

// share is loop i's part of n handlers split between loops: as even as it can be.
func share(n, loops, i int) int {
	if i < n%loops {
		return n/loops + 1
	}
	return n / loops
}

// Handler returns the send handler (for wiring into another asynq server, or tests).
func (w *Worker) Handler() *Handler { return w.handler }

// Start starts taking work; it returns once the pool is running.
func (w *Worker) Start() error {
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendInteraction, w.handler)
	if w.handler.conv.api != nil {
		mux.Handle(tasks.TypeSendConversationMessage, w.handler)
	}
	for typ, h := range w.tasks {
		mux.Handle(typ, h)
	}
	for i, srv := range w.servers {
		if err := srv.Start(mux); err != nil {
			for _, started := range w.servers[:i] {
				started.Shutdown()
			}
			return fmt.Errorf("worker: start: %w", err)
		}
	}
	w.metrics.Up.Set(1)
	w.log.Info("worker started", zap.Int("concurrency", w.cfg.Concurrency), zap.Int("dequeue_loops", w.cfg.DequeueLoops), zap.Any("queues", w.cfg.Queues),
		zap.Duration("http_timeout", w.cfg.HTTPTimeout), zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout),
		zap.Int("max_in_flight", w.cfg.MaxInFlight), zap.Float64("rate_limit", w.cfg.RateLimit))
	return nil
}

// Shutdown stops taking work, lets in-flight messages finish within the shutdown timeout, and
// then waits for any POST still in flight to have its outcome recorded (each is bounded by the
// HTTP timeout), so that no request's result is abandoned. It is safe to call once.
func (w *Worker) Shutdown() {
	w.stopping.Store(true)
	w.metrics.Up.Set(0)
	began := time.Now()
	var stopped sync.WaitGroup // side by side: in turn, each would take up to ShutdownTimeout
	for _, srv := range w.servers {
		stopped.Go(srv.Shutdown)
	}
	stopped.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.HTTPTimeout+recordTimeout)
	defer cancel()
	if err := w.handler.WaitForSends(ctx); err != nil {
		w.log.Error("shutdown: a request's outcome may be unrecorded; the next run will reconcile", zap.Error(err))
	}
	_ = w.rdb.Close()
	w.log.Info("worker stopped", zap.Duration("took", time.Since(began)))
}

// Ready reports whether the worker should receive traffic: Redis answers and it is not stopping.
func (w *Worker) Ready(ctx context.Context) error {
	if w.stopping.Load() {
		return errors.New("shutting down")
	}
	if err := w.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
