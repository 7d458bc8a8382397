package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/httpapi"
	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

const (
	defaultServeAddr = ":8081"
	// defaultServeShutdownTimeout matches the worker's (PROXYQ_SHUTDOWN_TIMEOUT, 45s): far
	// above the API's own bounds (10s of Redis work per request, a 30s write timeout), so
	// every request in progress at SIGTERM can finish.
	defaultServeShutdownTimeout = 45 * time.Second
	// defaultServeDrainDelay is how long /readyz answers 503 before the listener closes, so
	// load balancers and Kubernetes endpoints stop routing new requests here first.
	defaultServeDrainDelay = 2 * time.Second
	// serveDashboardRoot is where --dashboard mounts the console (asynqmon's RootPath).
	serveDashboardRoot = "/dashboard"
)

const serveDoc = `
Serves the HTTP API (see httpapi/README.md) so that services in any language can enqueue
messages, read their status and cancel them:

  POST   /v1/message-interactions          enqueue one message (Idempotency-Key header)
  POST   /v1/message-interactions:batch    enqueue up to 100 messages
  GET    /v1/message-interactions/{id}     the message's status (= proxyq status --json)
  DELETE /v1/message-interactions/{id}     cancel a message not yet sent
  GET    /v1/openapi.json                  the OpenAPI 3.1 description
  GET    /healthz, /readyz                 probes, open without a token
  POST   /v1/twilio/proxy/callbacks        Twilio Proxy status callbacks (with PROXYQ_PUBLIC_URL)

Every other route needs "Authorization: Bearer <token>" with a token from PROXYQ_API_TOKENS
(comma separated) or PROXYQ_API_TOKENS_FILE (one per line); without a token the server does
not start. With --dashboard the asynq console is served at /dashboard/, and with --metrics
Prometheus metrics at /metrics, both behind the same tokens (the console's own
PROXYQ_DASHBOARD_* login is not used here; a browser needs a proxy that adds the header).

Other configuration from the environment: REDIS_URL; PROXYQ_QUEUES (the queues a request may
name, as the workers read them; default critical, default, low); PROXYQ_MAX_RETRY and
PROXYQ_RETENTION (applied to every message enqueued, as by proxyq enqueue);
PROXYQ_SHUTDOWN_TIMEOUT (default 45s); PROXYQ_LOG_LEVEL, PROXYQ_LOG_FORMAT. The deadline of a
message without send_before is the worker's PROXYQ_SEND_WITHIN.

Twilio status callbacks: set PROXYQ_PUBLIC_URL (the URL Twilio calls, e.g.
https://proxyq.example.com) and the Proxy Service's callback_url to it followed by
/v1/twilio/proxy/callbacks. The route needs no bearer token but checks X-Twilio-Signature with
TWILIO_AUTH_TOKEN of TWILIO_ACCOUNT_SID (required then, also when the worker uses an API key).
PROXYQ_STATUS_WEBHOOK_URL makes each status change a signed webhook to the application (sent
by the workers); PROXYQ_DELIVERY_* tune the pending callbacks (see the README).

The server starts even when Redis is down (a warning is logged; /readyz answers 503 until it
answers). On SIGTERM or SIGINT /readyz turns 503 at once, new connections are still accepted
for --drain-delay, then the listener closes and requests in progress finish; the process exits
within PROXYQ_SHUTDOWN_TIMEOUT, with 0.

Exit codes: 0 stopped cleanly; 1 the address cannot be listened on, or another runtime
failure; 2 missing or malformed configuration (the message names the variable or flag).`

func init() {
	register(&command{name: "serve", summary: "serve the HTTP API: enqueue, status and cancel over HTTP", run: runServe})
}

// serveFlags are the flags of `proxyq serve`.
type serveFlags struct {
	addr       string
	dashboard  bool
	metrics    bool
	drainDelay time.Duration
}

func runServe(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("serve", "serve [--addr :8081] [--dashboard] [--metrics]", serveDoc)
	var f serveFlags
	fs.StringVar(&f.addr, "addr", defaultServeAddr, "listen address host:port")
	fs.BoolVar(&f.dashboard, "dashboard", false, "serve the asynq dashboard at "+serveDashboardRoot+"/, behind the API tokens")
	fs.BoolVar(&f.metrics, "metrics", false, "serve Prometheus metrics at /metrics, behind the API tokens")
	fs.DurationVar(&f.drainDelay, "drain-delay", defaultServeDrainDelay, "on SIGTERM, how long /readyz answers 503 before the listener closes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected argument %q (serve takes flags only)", fs.Arg(0))
	case f.drainDelay < 0:
		return usagef("--drain-delay=%v: must not be negative", f.drainDelay)
	}
	if _, port, err := net.SplitHostPort(f.addr); err != nil || port == "" {
		return usagef("--addr=%q: want host:port such as :8081 or 127.0.0.1:8081", f.addr)
	}

	// All configuration is read and checked before anything starts: a bad value exits 2.
	log, err := m.logger("")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg, err := usage(envconfig.Serve(m.Getenv, defaultServeShutdownTimeout))
	if err != nil {
		return err
	}
	tr, err := m.startTracing(ctx, "serve", logWarn(log))
	if err != nil {
		return err
	}
	defer tr.stop()
	if f.drainDelay >= cfg.ShutdownTimeout {
		return usagef("--drain-delay=%v must be shorter than PROXYQ_SHUTDOWN_TIMEOUT (%v): requests in progress need time to finish", f.drainDelay, cfg.ShutdownTimeout)
	}

	if err := m.pingRedis(ctx, cfg.Redis); err != nil {
		if ctx.Err() != nil {
			return nil // stopped by a signal while starting
		}
		// Not fatal: an API that starts before Redis (compose, Kubernetes) should not
		// crash-loop; /readyz keeps it out of rotation until Redis answers.
		log.Warn("redis is not reachable yet; /readyz answers 503 until it is", zap.Error(err))
	}

	rdb, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("unsupported Redis option %T", cfg.Redis)
	}
	// Closed after the HTTP server has shut down (defers run in reverse order).
	defer rdb.Close()
	enq := tasks.NewEnqueuer(cfg.Redis, cfg.Enqueuer...)
	defer enq.Close()
	insp := asynq.NewInspector(cfg.Redis)
	defer insp.Close()
	cfg.API.ReadyCheck = func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
	// The ledger is only read here; its TTL matters to writers only.
	guard := worker.NewSendGuard(worker.NewLedger(rdb, worker.DefaultLedgerTTL), insp)
	reg := prometheus.NewRegistry()
	if cfg.Callbacks != nil {
		dsvc, err := delivery.New(cfg.Delivery, rdb, delivery.NewMetrics(reg), log.Named("delivery"))
		if err != nil {
			return usageError{err}
		}
		if cfg.API.Callbacks, err = dsvc.CallbackHandler(*cfg.Callbacks); err != nil {
			return usageError{err}
		}
		// Conversations' onDeliveryUpdated receipts: the same public URL, tokens and signature check.
		if cfg.API.Receipts, err = dsvc.ReceiptsHandler(*cfg.Callbacks); err != nil {
			return usageError{err}
		}
		log.Info("twilio status callbacks enabled", zap.String("callback_url", cfg.Callbacks.PublicURL+delivery.CallbackPath),
			zap.String("receipts_url", cfg.Callbacks.PublicURL+delivery.ReceiptsPath),
			zap.Bool("status_webhooks", cfg.Delivery.WebhookURL != ""))
	}

	// Refuse messages for accounts no worker can send for, when the accounts file is readable
	// here; it is watched like the worker's, so a rotation applies to both.
	if cfg.Accounts != nil {
		m.watchAccounts(ctx, cfg.Accounts, log.Named("accounts"))
	}

	api, err := httpapi.New(cfg.API, enq, insp, guard, log.Named("api"))
	if err != nil {
		return usageError{envconfig.APIError(err)}
	}
	if f.dashboard {
		// The API's bearer check runs before any mounted handler, so the console's own
		// authentication is off here (a request carries one Authorization header, and it
		// holds the API token).
		d, err := dashboard.New(dashboard.Config{RootPath: serveDashboardRoot, AuthenticatedUpstream: true}, cfg.Redis, log.Named("dashboard"))
		if err != nil {
			return err
		}
		defer func() { _ = d.Close() }()
		api.Mount(serveDashboardRoot+"/", d)
		log.Info("dashboard mounted behind the API's bearer tokens", zap.String("path", serveDashboardRoot+"/"))
	}
	if f.metrics {
		queueMetrics, err := adminhttp.RegisterQueueMetrics(reg, cfg.Redis)
		if err != nil {
			return err
		}
		defer queueMetrics.Close()
		// asynq's queue collector reports Redis errors through the standard logger: keep
		// them in the structured log.
		defer zap.RedirectStdLog(log.Named("stdlog"))()
		api.Mount("/metrics", adminhttp.New(reg, nil))
	}

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	srv := httpapi.NewHTTPServer(f.addr, tr.Handler(api))
	// net/http's own complaints (TLS handshakes, malformed requests) go to the structured log.
	if errLog, err := zap.NewStdLogAt(log.Named("http"), zap.WarnLevel); err == nil {
		srv.ErrorLog = errLog
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	url := "http://" + adminhttp.Dialable(ln.Addr().String())
	fmt.Fprintf(m.Stdout, "proxyq serve: %s\n", url)
	log.Info("api listening", zap.String("addr", ln.Addr().String()), zap.String("url", url),
		zap.Strings("queues", cfg.API.Queues), zap.Int("tokens", len(cfg.API.Tokens)),
		zap.Bool("dashboard", f.dashboard), zap.Bool("metrics", f.metrics))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	began := time.Now()
	log.Info("shutting down: /readyz answers 503, then requests in progress finish",
		zap.Duration("drain_delay", f.drainDelay), zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))
	api.Drain()
	// A plain sleep: ctx is already done, and a second signal ends the process anyway (main
	// restores the default action after the first).
	time.Sleep(f.drainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout-f.drainDelay)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Requests still running past the timeout are cut off; their clients see a broken
		// connection and, with an Idempotency-Key, can retry safely.
		log.Warn("requests still in progress were cut off", zap.Error(err))
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http server", zap.Error(err))
	}
	log.Info("api stopped", zap.Duration("took", time.Since(began)))
	return nil
}
