package main

import (
	"context"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/devmode"
	"github.com/proxyq/proxyq/proxyclient"
)

// devDelivery is dev mode's delivery status wiring: the same as serve's callback route and the
// worker's hook, tasks and sweeper, in one process.
type devDelivery struct {
	svc       *delivery.Service
	work      *delivery.Worker
	limits    *accountLimiter
	callbacks http.Handler // nil with --live: Twilio cannot reach a dev machine
	rdb       redis.UniversalClient
}

func (r *devRun) newDevDelivery(redisOpt asynq.RedisConnOpt, api *proxyclient.Client, reg prometheus.Registerer, base string, fake bool) (*devDelivery, error) {
	dcfg, err := r.m.workerDeliveryConfigFromEnv()
	if err != nil {
		return nil, err
	}
	if dcfg.AccountSID == "" || fake {
		dcfg.AccountSID = api.AccountKey()
	}
	d := &devDelivery{limits: &accountLimiter{}, rdb: redisOpt.MakeRedisClient().(redis.UniversalClient)}
	r.defer_(func() { _ = d.rdb.Close() })
	if d.svc, err = delivery.New(dcfg, d.rdb, delivery.NewMetrics(reg), r.log.Named("delivery")); err != nil {
		return nil, usageError{err}
	}
	if d.work, err = d.svc.NewWorker(delivery.ClientFetcher(api), d.limits); err != nil {
		return nil, usageError{err}
	}
	if fake {
		d.callbacks, err = d.svc.CallbackHandler(delivery.CallbackConfig{PublicURL: base,
			Tokens: delivery.StaticToken{AccountSID: devmode.FakeAccountSID, Token: devmode.FakeAuthToken}})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// startPoller runs the polling sweeper and returns its stop function.
func (d *devDelivery) startPoller() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.work.RunPoller(ctx) }()
	return func() { cancel(); <-done }
}
