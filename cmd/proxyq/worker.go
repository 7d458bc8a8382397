package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/deliverywire"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/worker"
)

const defaultAdminAddr = ":9090"

const workerDoc = `
Runs a pool of workers that take messages from Redis and send them through Twilio Proxy's
MessageInteractions endpoint, retrying what is worth retrying and recording each outcome.

Configuration comes from the environment (REDIS_URL, TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN or
TWILIO_API_KEY + TWILIO_API_SECRET, TWILIO_EDGE, TWILIO_REGION, PROXYQ_API_BASE_URL,
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

// workerFlags are the flags of `proxyq worker`; each overrides an environment variable.
type workerFlags struct {
	concurrency int
	queues      string
	httpTimeout time.Duration
	adminAddr   string
	logLevel    string
	set         map[string]bool // flags given on the command line
}

func runWorker(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("worker", "worker [flags]", workerDoc)
	var f workerFlags
	fs.IntVar(&f.concurrency, "concurrency", 0, "messages handled at once by this process (PROXYQ_CONCURRENCY, default 50)")
	fs.StringVar(&f.queues, "queues", "", `queues and priorities, e.g. "critical=6,default=3,low=1" (PROXYQ_QUEUES)`)
	fs.DurationVar(&f.httpTimeout, "http-timeout", 0, "timeout of one request to Twilio (PROXYQ_HTTP_TIMEOUT, default 15s)")
	fs.StringVar(&f.adminAddr, "admin-addr", "", `metrics and health address host:port, or "off" (PROXYQ_ADMIN_ADDR, default :9090)`)
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (PROXYQ_LOG_LEVEL, default info)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (the worker takes flags only)", fs.Arg(0))
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })

	// All configuration is read and checked before anything starts, so a bad value fails fast
	// with exit 2 and names its variable or flag.
	log, err := m.logger(f.logLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	wcfg, ccfg, adminAddr, err := m.workerConfig(f)
	if err != nil {
		return err
	}
	tr, err := m.startTracing(ctx, "worker", logWarn(log))
	if err != nil {
		return err
	}
	defer tr.stop() // last: after the pool has drained
	ccfg.WrapTransport = tr.clientTransport()
	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	dcfg, err := m.workerDeliveryConfigFromEnv()
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
	// asynq's queue collector reports Redis errors through the standard logger: keep them in
	// the structured log instead of interleaving plain text with it.
	restoreStdLog := zap.RedirectStdLog(log.Named("stdlog"))
	defer restoreStdLog()
	redis.SetLogger(zapRedisLog{log.Named("redis").Sugar()})

	accts, err := m.accountsFromEnv(ccfg, log.Named("accounts"))
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
	w, err := worker.New(wcfg, worker.Deps{Redis: redisOpt, API: api, Logger: log, Registerer: reg,
		Delivery: dlv.Service, Tasks: dlv.Worker.Handlers(), Accounts: worker.FromRegistry(accts)})
	if err != nil {
		return usageError{err}
	}
	dlv.Attach(w, api.AccountKey())

	var started atomic.Bool
	var admin *adminhttp.Server
	if adminAddr != "" {
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
		admin, err = adminhttp.Listen(adminAddr, adminhttp.New(reg, ready))
		if err != nil {
			source := "PROXYQ_ADMIN_ADDR"
			if f.set["admin-addr"] {
				source = "--admin-addr"
			}
			return adminListenError(err, source, adminAddr)
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

// workerConfig reads the worker's and the client's configuration from the environment and
// applies the flags over it. adminAddr is "" when the admin server is off. Errors are
// usageErrors naming the variable or flag.
func (m *Main) workerConfig(f workerFlags) (worker.Config, proxyclient.Config, string, error) {
	wcfg, err := usage(envconfig.RawWorker(m.Getenv))
	if err != nil {
		return wcfg, proxyclient.Config{}, "", err
	}
	flagOf := map[string]string{}
	if f.set["concurrency"] {
		if f.concurrency < 1 {
			return wcfg, proxyclient.Config{}, "", usagef("--concurrency=%d: want 1 or more", f.concurrency)
		}
		wcfg.Concurrency, flagOf["Concurrency"] = f.concurrency, "--concurrency"
	}
	if f.set["queues"] {
		queues, err := worker.ParseQueues(f.queues)
		if err != nil {
			return wcfg, proxyclient.Config{}, "", usagef("--queues=%q: %v", f.queues, err)
		}
		wcfg.Queues, flagOf["Queues"] = queues, "--queues"
	}
	if f.set["http-timeout"] {
		if f.httpTimeout <= 0 {
			return wcfg, proxyclient.Config{}, "", usagef("--http-timeout=%v: want a positive duration such as 15s", f.httpTimeout)
		}
		wcfg.HTTPTimeout, flagOf["HTTPTimeout"] = f.httpTimeout, "--http-timeout"
	}
	// The Service limits first: the worker's checks read their window.
	if wcfg.ServiceLimits, err = m.serviceLimitsFromEnv(); err != nil {
		return wcfg, proxyclient.Config{}, "", err
	}
	wcfg, err = usage(envconfig.FinishWorker(wcfg, flagOf))
	if err != nil {
		return wcfg, proxyclient.Config{}, "", err
	}

	ccfg, err := m.clientConfigFromEnv()
	if err != nil {
		return wcfg, ccfg, "", err
	}
	// The worker derives leases and the shutdown timeout from its HTTPTimeout: the client must
	// use the same one.
	ccfg.HTTPTimeout = wcfg.HTTPTimeout
	ccfg.UserAgent = "worker"

	addr, source := m.env().str("PROXYQ_ADMIN_ADDR", defaultAdminAddr), "PROXYQ_ADMIN_ADDR"
	if f.set["admin-addr"] {
		addr, source = strings.TrimSpace(f.adminAddr), "--admin-addr"
	}
	if strings.EqualFold(addr, "off") {
		return wcfg, ccfg, "", nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return wcfg, ccfg, "", usagef(`%s=%q: want host:port such as :9090 or 127.0.0.1:9090, or "off"`, source, addr)
	}
	return wcfg, ccfg, addr, nil
}
