package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/envconfig"
)

const defaultDashboardAddr = ":8080"

const dashboardDoc = `
Serves the proxyq console for the queues in REDIS_URL: find any message by ID, idempotency key,
KI, SM, KP or KC and read its whole story (docs/console.md); asynqmon's queue administration
is under /queues/.

Authentication is required: set PROXYQ_DASHBOARD_USER and PROXYQ_DASHBOARD_PASSWORD (HTTP Basic:
the browser asks), and/or PROXYQ_DASHBOARD_TOKEN (Authorization: Bearer, for scripts and
proxies). --insecure-no-auth serves it open instead, with a warning.

Message bodies and media URLs are personal data: payload views show "[redacted: N chars]" and
"[redacted: N URLs]" in their place, with the SIDs and send_before visible, unless
--show-message-content is given. --read-only refuses every change (delete, run, archive,
pause) and hides the buttons.

GET /healthz answers 200 while the process serves, and GET /readyz 200 while Redis answers;
neither needs credentials. Stops on SIGINT or SIGTERM.`

func init() {
	register(&command{name: "dashboard", summary: "serve the asynq web dashboard, with authentication", run: runDashboard})
}

func runDashboard(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("dashboard", "dashboard [flags]", dashboardDoc)
	addr := fs.String("addr", defaultDashboardAddr, "listen address host:port")
	var cfg dashboard.Config
	fs.BoolVar(&cfg.ReadOnly, "read-only", false, "refuse every change to queues and messages")
	fs.BoolVar(&cfg.AllowNoAuth, "insecure-no-auth", false, "serve without authentication when no PROXYQ_DASHBOARD_* credentials are set (anyone who can reach the address can read and change the queues)")
	fs.BoolVar(&cfg.ShowMessageContent, "show-message-content", false, "show message bodies and media URLs (personal data) instead of redacting them")
	fs.StringVar(&cfg.RootPath, "root-path", dashboard.DefaultRootPath, `URL path to serve the dashboard under, e.g. "/" or "/dashboard"`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (the dashboard takes flags only)", fs.Arg(0))
	}
	if _, port, err := net.SplitHostPort(*addr); err != nil || port == "" {
		return usagef("--addr=%q: want host:port such as :8080 or 127.0.0.1:8080", *addr)
	}
	log, err := m.logger("")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	envconfig.DashboardCredentials(m.Getenv, &cfg)
	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	d, err := newDashboard(cfg, redisOpt, log)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := m.pingRedis(ctx, redisOpt); err != nil {
		// Not fatal: the console shows Redis errors itself and /readyz reports it, and a
		// dashboard that starts before Redis (compose, Kubernetes) should not crash-loop.
		log.Warn("redis is not reachable yet", zap.Error(err))
	}

	rdb, ok := redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("unsupported Redis option %T", redisOpt)
	}
	defer rdb.Close()
	mux := http.NewServeMux()
	d.Mount(mux)
	health := adminhttp.New(nil, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)

	srv, err := adminhttp.Listen(*addr, mux)
	if err != nil {
		return err
	}
	url := "http://" + adminhttp.Dialable(srv.Addr()) + strings.TrimSuffix(d.RootPath(), "/") + "/"
	fmt.Fprintf(m.Stdout, "proxyq dashboard: %s\n", url)
	log.Info("dashboard listening", zap.String("addr", srv.Addr()), zap.String("url", url))

	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(shutdownCtx); err != nil {
		log.Warn("dashboard did not close cleanly", zap.Error(err))
	}
	return nil
}

// newDashboard builds the dashboard, turning its config errors into usage errors that name
// the environment variable or flag.
func newDashboard(cfg dashboard.Config, redisOpt asynq.RedisConnOpt, log *zap.Logger) (*dashboard.Dashboard, error) {
	if err := asUsage(envconfig.CheckDashboard(cfg)); err != nil {
		return nil, err
	}
	return dashboard.New(cfg, redisOpt, log.Named("dashboard"))
}
