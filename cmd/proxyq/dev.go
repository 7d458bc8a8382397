package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/deliverywire"
	"github.com/proxyq/proxyq/internal/devmode"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/internal/redisurl"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/worker"
)

const devDoc = `
Runs everything in one process, for a first look or local development: an embedded Redis
(miniredis, in memory) unless REDIS_URL is set, the fake Twilio Proxy API (unless --live), a
worker, and one HTTP server with the dashboard, /metrics, /healthz, /readyz and the fake's
/_proxytest endpoints. Nothing is sent to Twilio unless --live is given.

  go run ./cmd/proxyq dev --demo 50

--demo N enqueues N sample messages, every third a Twilio Conversations message sent to the
fake Conversations API (mounted at /conversations beside the Proxy fake at /twilio; its signed
delivery receipts go to the receipts route). The fakes answer some of them with 429s, 503s and
"500 after create" (the interaction exists but the answer says otherwise: proxyq finds it by
reconciliation instead of sending twice), and a few go to a removed participant or a closed
session so you can see a permanent failure archived. Progress is shown live, then a summary.

The dashboard asks for a login: PROXYQ_DASHBOARD_USER / PROXYQ_DASHBOARD_PASSWORD (or
PROXYQ_DASHBOARD_TOKEN) if set, else user "admin" with a password generated and printed at
start.

--live sends through the real API with TWILIO_* credentials (and PROXYQ_API_BASE_URL, if set);
it cannot be combined with --demo, whose sample SIDs are made up.

Dev defaults, each overridden by its variable: PROXYQ_LOG_LEVEL=error (info logs one line per
attempt), PROXYQ_LOG_FORMAT=console, PROXYQ_CONCURRENCY=10; against the fake also
PROXYQ_HTTP_TIMEOUT=5s, PROXYQ_SHUTDOWN_TIMEOUT=10s, PROXYQ_BACKOFF_BASE=200ms,
PROXYQ_BACKOFF_MAX=2s, PROXYQ_DELAYED_CHECK_INTERVAL=100ms, PROXYQ_RECONCILE_SETTLE=2s.

Stops on Ctrl-C (SIGINT) or SIGTERM, or after the demo's summary with --exit-after-demo.`

func init() {
	register(&command{name: "dev", summary: "run Redis, a fake Twilio, a worker and the dashboard in one process (try --demo 50)", run: runDev})
}

const (
	devDefaultAddr     = "127.0.0.1:8080"
	devMaxDemo         = 10000
	devFakeLatency     = 30 * time.Millisecond
	devShutdownTimeout = 5 * time.Second
)

type devFlags struct {
	addr          string
	demo          int
	live          bool
	exitAfterDemo bool
	demoTimeout   time.Duration
	seed          int64
}

func runDev(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("dev", "dev [--addr 127.0.0.1:8080] [--demo N] [--live]", devDoc)
	var f devFlags
	fs.StringVar(&f.addr, "addr", devDefaultAddr, "address of the one HTTP server (dashboard, metrics, health, fake API)")
	fs.IntVar(&f.demo, "demo", 0, "enqueue N sample messages and show their progress (0: none)")
	fs.BoolVar(&f.live, "live", false, "send through the real Twilio API with the TWILIO_* credentials instead of the fake")
	fs.BoolVar(&f.exitAfterDemo, "exit-after-demo", false, "stop after the demo's summary instead of serving until Ctrl-C")
	fs.DurationVar(&f.demoTimeout, "demo-timeout", 2*time.Minute, "how long the demo waits for its messages to finish")
	fs.Int64Var(&f.seed, "seed", 0, "seed of the fake's fault generator (0: random)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected argument %q (dev takes flags only)", fs.Arg(0))
	case f.demo < 0 || f.demo > devMaxDemo:
		return usagef("--demo=%d: want 0 to %d messages", f.demo, devMaxDemo)
	case f.live && f.demo > 0:
		return usagef("--demo cannot be combined with --live: the demo's SIDs are made up, and its point is the fake's faults")
	case f.exitAfterDemo && f.demo == 0:
		return usagef("--exit-after-demo needs --demo N")
	case f.demoTimeout <= 0:
		return usagef("--demo-timeout=%v: want a positive duration", f.demoTimeout)
	}
	if _, port, err := net.SplitHostPort(f.addr); err != nil || port == "" {
		return usagef("--addr=%q: want host:port such as 127.0.0.1:8080 or :8080", f.addr)
	}
	if f.seed == 0 {
		f.seed = time.Now().UnixNano()
	}
	return newDevRun(m, f).run(ctx)
}

// devRun is one `proxyq dev` process: what it started, for shutdown in reverse order.
type devRun struct {
	m     *Main // with dev defaults under the real environment
	out   io.Writer
	term  *devmode.Terminal // nil when stdout is not a terminal
	flags devFlags
	log   *zap.Logger

	cleanups []func()
}

func newDevRun(m *Main, f devFlags) *devRun {
	dm := *m
	dm.Getenv = devmode.Getenv(m.Getenv, f.live)
	r := &devRun{m: &dm, out: m.Stdout, flags: f}
	if devmode.IsTerminal(m.Stdout) && m.Getenv("TERM") != "dumb" {
		r.term = &devmode.Terminal{Out: m.Stdout}
		dm.Stderr = r.term.LogWriter(m.Stderr)
	}
	return r
}

func (r *devRun) defer_(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *devRun) shutdown() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

func (r *devRun) run(ctx context.Context) (err error) {
	m := r.m
	// Configuration first: a bad value exits 2 before anything starts.
	log, err := m.logger("")
	if err != nil {
		return err
	}
	r.log = log
	defer func() { _ = log.Sync() }()
	wcfg, err := m.workerConfigFromEnv()
	if err != nil {
		return err
	}
	enqOpts, err := m.enqueueOptionsFromEnv()
	if err != nil {
		return err
	}
	var ccfg proxyclient.Config
	if r.flags.live {
		if ccfg, err = m.clientConfigFromEnv(); err != nil {
			return err
		}
	}
	dcfg, err := usage(envconfig.WorkerDelivery(m.Getenv))
	if err != nil {
		return err
	}
	var dashCfg dashboard.Config
	envconfig.DashboardCredentials(m.Getenv, &dashCfg)
	generated := devmode.DashboardLogin(&dashCfg)
	if err := asUsage(envconfig.CheckDashboard(dashCfg)); err != nil {
		return err
	}

	tr, err := m.startTracing(ctx, "dev", logWarn(log))
	if err != nil {
		return err
	}
	defer tr.stop() // after r.shutdown (defers run in reverse)
	defer r.shutdown()

	redisOpt, redisDesc, err := r.startRedis(ctx)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", r.flags.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pick another with --addr, e.g. --addr 127.0.0.1:8090)", r.flags.addr, err)
	}
	r.defer_(func() { _ = ln.Close() }) // until the server owns it
	base := "http://" + adminhttp.Dialable(ln.Addr().String())

	var fake *proxytest.Fake
	var convFake *convtest.Fake
	if !r.flags.live {
		fake = proxytest.New(proxytest.Config{Latency: devFakeLatency, Seed: r.flags.seed, Logger: log.Named("fake")})
		if convFake, err = devmode.NewConversationsFake(base, uint64(r.flags.seed)); err != nil {
			return err
		}
		ccfg = proxyclient.Config{AccountSID: devmode.FakeAccountSID, AuthToken: devmode.FakeAuthToken, BaseURL: base + devmode.FakePrefix}.WithDefaults()
	}
	ccfg.HTTPTimeout = wcfg.HTTPTimeout
	ccfg.UserAgent = "dev"
	ccfg.MaxIdleConnsPerHost = wcfg.Concurrency
	ccfg.WrapTransport = tr.WrapTransport()
	api, err := proxyclient.New(ccfg)
	if err != nil {
		return usageError{envconfig.ClientError(err)}
	}
	// Conversations: the same account; the fake's beside the Proxy fake, or
	// PROXYQ_CONVERSATIONS_BASE_URL (default Twilio's) with --live.
	convCfg, err := usage(envconfig.Conversations(m.Getenv, ccfg))
	if err != nil {
		return err
	}
	if convFake != nil {
		convCfg.BaseURL = base + devmode.ConversationsPrefix
	}
	convCfg.WrapTransport = ccfg.WrapTransport
	conv, err := conversations.New(convCfg)
	if err != nil {
		return usageError{envconfig.ClientError(err)}
	}

	// Delivery status: serve's callback route and the worker's hook, tasks and sweeper.
	if dcfg.AccountSID == "" || fake != nil {
		dcfg.AccountSID = api.AccountKey()
	}
	reg := prometheus.NewRegistry()
	dlv, err := usage(deliverywire.New(dcfg, redisOpt, reg, log.Named("delivery"), api, nil))
	if err != nil {
		return err
	}
	r.defer_(func() { _ = dlv.Close() })
	dlv.Worker.SetReceiptLister(deliverywire.Receipts{Default: conv})
	w, err := worker.New(wcfg, worker.Deps{Redis: redisOpt, API: api, Logger: log, Registerer: reg,
		Delivery: dlv.Service, Tasks: dlv.Worker.Handlers(), Conversations: conv})
	if err != nil {
		return usageError{err}
	}
	dlv.Attach(w, api.AccountKey())
	queueMetrics, err := adminhttp.RegisterQueueMetrics(reg, redisOpt)
	if err != nil {
		return err
	}
	r.defer_(func() { _ = queueMetrics.Close() })
	d, err := newDashboard(dashCfg, redisOpt, log)
	if err != nil {
		return err
	}
	r.defer_(func() { _ = d.Close() })

	var started atomic.Bool
	ready := func(ctx context.Context) error {
		if !started.Load() {
			return errors.New("starting")
		}
		return w.Ready(ctx)
	}
	mux := http.NewServeMux()
	d.Mount(mux)
	admin := adminhttp.New(reg, ready)
	for _, p := range []string{"GET /metrics", "GET /healthz", "GET /readyz"} {
		mux.Handle(p, admin)
	}
	if fake != nil {
		if err := devmode.MountFake(mux, fake, dlv.Service, base); err != nil {
			return err
		}
		if err := devmode.MountConversationsFake(mux, convFake, dlv.Service, base); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	r.defer_(func() {
		sctx, cancel := context.WithTimeout(context.Background(), devShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http server did not close cleanly", zap.Error(err))
		}
	})
	if fake != nil {
		// Closed before the server (cleanups run in reverse): ends latency waits and hangs.
		r.defer_(fake.Close)
		r.defer_(convFake.Close)
	}

	if err := w.Start(); err != nil {
		return err
	}
	started.Store(true)
	r.defer_(w.Shutdown)
	r.defer_(dlv.StartPoller())

	devmode.Banner{BaseURL: base, Redis: redisDesc, Fake: fake != nil, User: dashCfg.User, Password: dashCfg.Password, Generated: generated,
		UnusedTwilio: m.Getenv("TWILIO_ACCOUNT_SID") != "" || m.Getenv("TWILIO_API_KEY") != ""}.Print(r.out)

	var demoErr error
	if r.flags.demo > 0 {
		demoErr = devmode.Demo{N: r.flags.demo, Timeout: r.flags.demoTimeout, Redis: redisOpt, Options: enqOpts,
			Fake: fake, Conv: convFake, BaseURL: base, Out: r.out, Terminal: r.term}.Run(ctx)
		if demoErr != nil || r.flags.exitAfterDemo {
			fmt.Fprintln(r.out, "Stopping.")
			return demoErr
		}
	}
	fmt.Fprintln(r.out, "Serving until Ctrl-C.")
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	r.term.Clear()
	fmt.Fprintln(r.out, "Stopping: letting messages in flight finish.")
	return nil
}

// startRedis connects to REDIS_URL when it is set, else starts an embedded miniredis.
func (r *devRun) startRedis(ctx context.Context) (asynq.RedisConnOpt, string, error) {
	if url := strings.TrimSpace(r.m.Getenv("REDIS_URL")); url != "" {
		opt, err := redisOpt(url)
		if err != nil {
			return nil, "", err
		}
		if err := r.m.pingRedis(ctx, opt); err != nil {
			return nil, "", err
		}
		return opt, redisurl.Redact(url) + " (from REDIS_URL)", nil
	}
	opt, desc, stop, err := devmode.StartEmbeddedRedis()
	if err != nil {
		return nil, "", err
	}
	r.defer_(stop)
	return opt, desc, nil
}
