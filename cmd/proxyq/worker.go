package main

import (
	"context"
	"errors"
	"flag"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/deliverywire"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/worker"
)

const workerDoc = `
Runs a pool of workers that take messages from Redis and send them through Twilio Proxy's
MessageInteractions endpoint or, for Conversations messages, Twilio Conversations' Messages endpoint, retrying what is worth retrying and recording each outcome.

Configuration comes from the environment (REDIS_URL, TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN or
TWILIO_API_KEY + TWILIO_API_SECRET, TWILIO_EDGE, TWILIO_REGION, PROXYQ_API_BASE_URL,
PROXYQ_CONVERSATIONS_BASE_URL, PROXYQ_CONVERSATION_RATE, PROXYQ_CONVERSATION_WINDOW,
PROXYQ_CONCURRENCY, PROXYQ_QUEUES, PROXYQ_HTTP_TIMEOUT, PROXYQ_SHUTDOWN_TIMEOUT, PROXYQ_SEND_WITHIN,
PROXYQ_LOG_LEVEL, PROXYQ_LOG_FORMAT, PROXYQ_ADMIN_ADDR, the delivery status settings
PROXYQ_DELIVERY_* and PROXYQ_STATUS_WEBHOOK_*, … see the README); the flags below
override their variables.

The admin address serves GET /metrics (Prometheus), /healthz and /readyz. Several workers on
one host need one admin address each (PROXYQ_ADMIN_ADDR=:9091, …; port 0 picks a free one and
logs it) or "off": a second worker on an address in use exits 2 saying so, before it takes
any message.

On SIGTERM or SIGINT the worker stops taking messages, lets the ones in flight finish (within
PROXYQ_SHUTDOWN_TIMEOUT), and exits 0.

Exit codes: 0 stopped cleanly; 1 Redis unreachable at start or another runtime failure;
2 missing or malformed configuration (the message names the variable or flag).`

func init() {
	register(&command{name: "worker", summary: "run the worker pool that sends queued messages", run: runWorker})
}

func runWorker(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("worker", "worker [flags]", workerDoc)
	var f envconfig.WorkerFlags
	var logLevel string
	fs.IntVar(&f.Concurrency, "concurrency", 0, "messages handled at once by this process (PROXYQ_CONCURRENCY, default 50)")
	fs.StringVar(&f.Queues, "queues", "", `queues and priorities, e.g. "critical=6,default=3,low=1" (PROXYQ_QUEUES)`)
	fs.DurationVar(&f.HTTPTimeout, "http-timeout", 0, "timeout of one request to Twilio (PROXYQ_HTTP_TIMEOUT, default 15s)")
	fs.StringVar(&f.AdminAddr, "admin-addr", "", `metrics and health address host:port, or "off" (PROXYQ_ADMIN_ADDR, default :9090)`)
	fs.StringVar(&logLevel, "log-level", "", "debug, info, warn or error (PROXYQ_LOG_LEVEL, default info)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (the worker takes flags only)", fs.Arg(0))
	}
	f.Set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.Set[fl.Name] = true })

	// All configuration is read and checked before anything starts, so a bad value fails fast
	// with exit 2 and names its variable or flag.
	log, err := m.logger(logLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg, err := usage(envconfig.WorkerWithFlags(m.Getenv, f))
	if err != nil {
		return err
	}
	wcfg, ccfg := cfg.Worker, cfg.Client
	tr, err := m.startTracing(ctx, "worker", logWarn(log))
	if err != nil {
		return err
	}
	defer tr.stop() // last: after the pool has drained
	ccfg.WrapTransport = tr.WrapTransport()
	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	dcfg, err := usage(envconfig.WorkerDelivery(m.Getenv))
	if err != nil {
		return err
	}

	if err := m.pingRedis(ctx, redisOpt); err != nil {
		if ctx.Err() != nil {
			return nil // stopped by a signal while starting: nothing was taken
		}
		return err
	}
	ccfg.MaxIdleConnsPerHost = wcfg.Concurrency // one kept connection per concurrent send
	api, err := proxyclient.New(ccfg)
	if err != nil {
		return usageError{envconfig.ClientError(err)}
	}
	log.Info("proxy api", zap.String("endpoint", api.Endpoint()), zap.String("account", api.AccountKey()))
	convCfg := cfg.Conversations
	convCfg.WrapTransport, convCfg.MaxIdleConnsPerHost = ccfg.WrapTransport, ccfg.MaxIdleConnsPerHost
	conv, err := conversations.New(convCfg)
	if err != nil {
		return usageError{envconfig.ClientError(err)}
	}
	log.Info("conversations api", zap.String("endpoint", conv.Endpoint()))
	// asynq's queue collector reports Redis errors through the standard logger: keep them in
	// the structured log instead of interleaving plain text with it.
	restoreStdLog := zap.RedirectStdLog(log.Named("stdlog"))
	defer restoreStdLog()
	redis.SetLogger(zapRedisLog{log.Named("redis").Sugar()})

	accts, err := usage(envconfig.WorkerAccounts(m.Getenv, ccfg, convCfg, log.Named("accounts")))
	if err != nil {
		return err
	}
	m.watchAccounts(ctx, accts, log.Named("accounts"))

	reg := prometheus.NewRegistry()
	// Delivery status (package delivery): the hook after each recorded send, the error fetches
	// and status webhooks as tasks of this pool, and the polling sweeper.
	dlv, err := usage(deliverywire.New(dcfg, redisOpt, reg, log.Named("delivery"), api, accts))
	if err != nil {
		return err
	}
	defer dlv.Close()
	dlv.Worker.SetReceiptLister(deliverywire.Receipts{Default: conv, Accounts: accts})
	w, err := worker.New(wcfg, worker.Deps{Redis: redisOpt, API: api, Logger: log, Registerer: reg,
		Delivery: dlv.Service, Tasks: dlv.Worker.Handlers(), Accounts: worker.FromRegistry(accts),
		Conversations: conv, ConversationsAccounts: deliverywire.ConversationsAccounts{Accounts: accts}})
	if err != nil {
		return usageError{err}
	}
	dlv.Attach(w, api.AccountKey())

	var started atomic.Bool
	var admin *adminhttp.Server
	if cfg.AdminAddr != "" {
		queueMetrics, err := adminhttp.RegisterQueueMetrics(reg, redisOpt)
		if err != nil {
			return err
		}
		defer queueMetrics.Close()
		ready := func(ctx context.Context) error {
			if !started.Load() {
				return errors.New("starting")
			}
			return w.Ready(ctx)
		}
		admin, err = adminhttp.Listen(cfg.AdminAddr, adminhttp.New(reg, ready))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) { // a configuration error: nothing was started
				return usageError{adminhttp.AddrInUseError(cfg.AdminSource, cfg.AdminAddr)}
			}
			return err
		}
		log.Info("admin server listening", zap.String("addr", admin.Addr()))
	}

	if err := w.Start(); err != nil {
		closeAdmin(admin, log)
		return err
	}
	started.Store(true)
	stopPolls := dlv.StartPoller()
	<-ctx.Done()
	stopPolls()
	log.Info("shutting down: no new messages are taken; in-flight sends finish", zap.Duration("shutdown_timeout", wcfg.ShutdownTimeout))
	// The admin server stays up while the pool drains: /readyz answers 503 and the last
	// metrics can still be scraped.
	w.Shutdown()
	closeAdmin(admin, log)
	return nil
}

// zapRedisLog sends go-redis's internal log lines (connection pool trouble) to the worker's log.
type zapRedisLog struct{ log *zap.SugaredLogger }

func (z zapRedisLog) Printf(_ context.Context, format string, args ...any) {
	z.log.Warnf(format, args...)
}

func closeAdmin(admin *adminhttp.Server, log *zap.Logger) {
	if admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.Close(ctx); err != nil {
		log.Warn("admin server did not close cleanly", zap.Error(err))
	}
}
