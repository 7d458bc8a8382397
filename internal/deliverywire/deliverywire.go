package deliverywire

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/worker"
)

// Delivery is the delivery side of one worker process: the service (the hook after each
// recorded send, the callback route), its worker (error fetches and status webhooks as tasks of
// the pool, the polling sweeper) and the limiter its fetches share with the sends.
type Delivery struct {
	Service *delivery.Service
	Worker  *delivery.Worker
	Limits  *Limiter
	rdb     redis.UniversalClient
}

// New builds the delivery side on its own connection to redisOpt. Fetches use api, or the
// client of the message's account in accts (nil: one account). Its errors are configuration
// errors. Call Attach once worker.New has returned, and Close at the end.
func New(cfg delivery.Config, redisOpt asynq.RedisConnOpt, reg prometheus.Registerer, log *zap.Logger,
	api delivery.MessageAPI, accts *accounts.Registry) (*Delivery, error) {
	rdb, ok := redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("delivery: unsupported Redis option")
	}
	d := &Delivery{Limits: &Limiter{Accounts: accts}, rdb: rdb}
	var err error
	if d.Service, err = delivery.New(cfg, rdb, delivery.NewMetrics(reg), log); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if d.Worker, err = d.Service.NewWorker(delivery.ClientFetcher(Messages{Default: api, Accounts: accts}), d.Limits); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return d, nil
}

// Attach hands the worker's limiter to the fetches; defaultAccount is the default account's
// key (its client's AccountKey, as for sends). The worker builds its limiter in worker.New,
// after the delivery handlers are handed to it, hence this second step.
func (d *Delivery) Attach(w *worker.Worker, defaultAccount string) {
	d.Limits.Set(w.Limiter(), defaultAccount)
}

// StartPoller runs the polling sweeper; stop ends it and waits for it.
func (d *Delivery) StartPoller() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Worker.RunPoller(ctx) }()
	return func() { cancel(); <-done }
}

// Close releases the Redis connection.
func (d *Delivery) Close() error { return d.rdb.Close() }

// Messages fetches a Message with the credentials of the account it belongs to: an account of
// the accounts file, else Default.
type Messages struct {
	Default  delivery.MessageAPI
	Accounts *accounts.Registry // nil: one account
}

// FetchMessage implements delivery.MessageAPI.
func (a Messages) FetchMessage(ctx context.Context, accountSID, messageSID string) (*proxyclient.Message, error) {
	if a.Accounts != nil {
		if c, ok := a.Accounts.Client(accountSID); ok {
			return c.FetchMessage(ctx, accountSID, messageSID)
		}
	}
	return a.Default.FetchMessage(ctx, accountSID, messageSID)
}

// Limiter adapts the worker's shared account limiter to delivery.Limiter: a fetch counts
// against the account it belongs to, under its client's AccountKey; an account not in the
// accounts file is the default account. It refuses every fetch until Set.
type Limiter struct {
	Accounts *accounts.Registry // nil: one account

	mu      sync.Mutex
	l       worker.Limiter
	account string // the default account's key
}

// Set puts the worker's limiter and the default account's key in force.
func (a *Limiter) Set(l worker.Limiter, defaultAccount string) {
	a.mu.Lock()
	a.l, a.account = l, defaultAccount
	a.mu.Unlock()
}

// Acquire implements delivery.Limiter.
func (a *Limiter) Acquire(ctx context.Context, accountSID string, maxWait time.Duration) (func(bool), error) {
	a.mu.Lock()
	l, key := a.l, a.account
	a.mu.Unlock()
	if l == nil {
		return nil, errors.New("account limiter not ready")
	}
	if a.Accounts != nil {
		if c, ok := a.Accounts.Client(accountSID); ok {
			key = c.AccountKey()
		}
	}
	p, err := l.Acquire(ctx, key, "delivery", maxWait)
	if err != nil {
		return nil, err
	}
	return p.Release, nil
}
