package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

const devDoc = `
Runs everything in one process, for a first look or local development: an embedded Redis
(miniredis, in memory) unless REDIS_URL is set, the fake Twilio Proxy API (unless --live), a
worker, and one HTTP server with the dashboard, /metrics, /healthz, /readyz and the fake's
/_proxytest endpoints. Nothing is sent to Twilio unless --live is given.

  go run ./cmd/proxyq dev --demo 50

--demo N enqueues N sample messages. The fake answers some of them with 429s, 503s and
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

// Dev defaults. Those in devFakeDefaults suit the in-process fake only: against Twilio, a 2 s
// reconciliation settle window or a 200 ms backoff would be too eager.
var (
	devDefaults = map[string]string{
		"PROXYQ_LOG_LEVEL":   "error",
		"PROXYQ_LOG_FORMAT":  "console",
		"PROXYQ_CONCURRENCY": "10",
	}
	devFakeDefaults = map[string]string{
		"PROXYQ_HTTP_TIMEOUT":           "5s",
		"PROXYQ_SHUTDOWN_TIMEOUT":       "10s",
		"PROXYQ_BACKOFF_BASE":           "200ms",
		"PROXYQ_BACKOFF_MAX":            "2s",
		"PROXYQ_DELAYED_CHECK_INTERVAL": "100ms",
		"PROXYQ_RECONCILE_SETTLE":       "2s",
	}
)

const (
	devDefaultAddr     = "127.0.0.1:8080"
	devFakePrefix      = "/twilio"
	devAccountSID      = "AC00000000000000000000000000000000" // the fake accepts any AC… with any token
	devMaxDemo         = 10000
	devProgressEvery   = 500 * time.Millisecond
	devDefaultUser     = "admin"
	devFakeLatency     = 30 * time.Millisecond
	devDemoSendWithin  = 15 * time.Minute
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
	term  *terminal // nil when stdout is not a terminal
	flags devFlags
	log   *zap.Logger

	cleanups []func()
}

func newDevRun(m *Main, f devFlags) *devRun {
	defaults := map[string]string{}
	for k, v := range devDefaults {
		defaults[k] = v
	}
	if !f.live {
		for k, v := range devFakeDefaults {
			defaults[k] = v
		}
	}
	dm := *m
	dm.Getenv = func(k string) string {
		if v := m.Getenv(k); strings.TrimSpace(v) != "" {
			return v
		}
		return defaults[k]
	}
	r := &devRun{m: &dm, out: m.Stdout, flags: f}
	if isTerminal(m.Stdout) && m.Getenv("TERM") != "dumb" {
		r.term = &terminal{out: m.Stdout}
		dm.Stderr = r.term.logWriter(m.Stderr)
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
	var dcfg dashboard.Config
	m.dashboardCredentialsFromEnv(&dcfg)
	generated := dcfg.User == "" && dcfg.Password == "" && dcfg.Token == ""
	if generated {
		dcfg.User, dcfg.Password = devDefaultUser, rand.Text()[:16]
	}
	if err := checkDashboardConfig(dcfg); err != nil {
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
	base := "http://" + dialable(ln.Addr().String())

	var fake *proxytest.Fake
	if !r.flags.live {
		fake = proxytest.New(proxytest.Config{Latency: devFakeLatency, Seed: r.flags.seed, Logger: log.Named("fake")})
		ccfg = proxyclient.Config{AccountSID: devAccountSID, AuthToken: devAuthToken, BaseURL: base + devFakePrefix}.WithDefaults()
	}
	ccfg.HTTPTimeout = wcfg.HTTPTimeout
	ccfg.UserAgent = "dev"
	ccfg.MaxIdleConnsPerHost = wcfg.Concurrency
	ccfg.WrapTransport = tr.clientTransport()
	api, err := proxyclient.New(ccfg)
	if err != nil {
		return usageError{clientConfigError(err)}
	}

	reg := prometheus.NewRegistry()
	dev, err := r.newDevDelivery(redisOpt, api, reg, base, fake != nil)
	if err != nil {
		return err
	}
	w, err := worker.New(wcfg, worker.Deps{Redis: redisOpt, API: api, Logger: log, Registerer: reg,
		Delivery: dev.svc, Tasks: dev.work.Handlers()})
	if err != nil {
		return usageError{err}
	}
	dev.limits.set(w.Limiter(), api.AccountKey())
	queueMetrics, err := adminhttp.RegisterQueueMetrics(reg, redisOpt)
	if err != nil {
		return err
	}
	r.defer_(func() { _ = queueMetrics.Close() })
	d, err := newDashboard(dcfg, redisOpt, log)
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
	mountDashboard(mux, d)
	admin := adminhttp.New(reg, ready)
	for _, p := range []string{"GET /metrics", "GET /healthz", "GET /readyz"} {
		mux.Handle(p, admin)
	}
	if fake != nil {
		mux.Handle(devFakePrefix+"/", fake.Mount(devFakePrefix))
		mux.Handle("/_proxytest/", fake) // the fake's read-only endpoints, also at the root
		// The fake's Service posts signed status callbacks to the same route as serve's.
		mux.Handle("POST "+delivery.CallbackPath, dev.callbacks)
		if err := fake.SetCallbackConfig(proxytest.CallbackConfig{URL: base + delivery.CallbackPath, AuthToken: devAuthToken}); err != nil {
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
	}

	if err := w.Start(); err != nil {
		return err
	}
	started.Store(true)
	r.defer_(w.Shutdown)
	r.defer_(dev.startPoller())

	r.printBanner(base, redisDesc, fake != nil, dcfg, generated)

	var demoErr error
	if r.flags.demo > 0 {
		demoErr = r.runDemo(ctx, redisOpt, enqOpts, fake, base)
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
	r.term.clear()
	fmt.Fprintln(r.out, "Stopping: letting messages in flight finish.")
	return nil
}

// startRedis connects to REDIS_URL when it is set, else starts miniredis on a loopback port.
// miniredis runs asynq's Lua scripts and the worker's ledger scripts unchanged; ClockTTL makes
// keys expire with the wall clock as in Redis (miniredis's default is to never expire them
// unless a test fast-forwards), so dead servers and finished leases disappear as they should.
func (r *devRun) startRedis(ctx context.Context) (asynq.RedisConnOpt, string, error) {
	if url := strings.TrimSpace(r.m.Getenv("REDIS_URL")); url != "" {
		opt, err := redisOpt(url)
		if err != nil {
			return nil, "", err
		}
		if err := r.m.pingRedis(ctx, opt); err != nil {
			return nil, "", err
		}
		return opt, redactURL(url) + " (from REDIS_URL)", nil
	}
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, "", fmt.Errorf("start embedded redis: %w", err)
	}
	r.defer_(mr.Close)
	return asynq.RedisClientOpt{Addr: mr.Addr()}, "redis://" + mr.Addr() + "/0 (embedded miniredis, in memory: gone when dev stops)", nil
}

func (r *devRun) printBanner(base, redisDesc string, fake bool, dcfg dashboard.Config, generated bool) {
	out := r.out
	api := "the LIVE Twilio Proxy API"
	if fake {
		api = "a fake Twilio Proxy API"
	}
	fmt.Fprintf(out, "proxyq dev: Redis, %s, a worker and the dashboard in one process.\n\n", api)
	fmt.Fprintf(out, "  Dashboard   %s/\n", base)
	switch {
	case generated:
		fmt.Fprintf(out, "              user %s, password %s  (generated; set PROXYQ_DASHBOARD_USER/PASSWORD to choose)\n", dcfg.User, dcfg.Password)
	case dcfg.User != "":
		fmt.Fprintf(out, "              user %s, password from PROXYQ_DASHBOARD_PASSWORD\n", dcfg.User)
	default:
		fmt.Fprintf(out, "              bearer token from PROXYQ_DASHBOARD_TOKEN\n")
	}
	fmt.Fprintf(out, "  Metrics     %s/metrics\n", base)
	fmt.Fprintf(out, "  Health      %s/healthz  %s/readyz\n", base, base)
	if fake {
		fmt.Fprintf(out, "  Fake API    %s%s  (PROXYQ_API_BASE_URL for your own code; any AC… SID, any token)\n", base, devFakePrefix)
		fmt.Fprintf(out, "  Created     %s/_proxytest/interactions\n", base)
	}
	fmt.Fprintf(out, "  Redis       %s\n\n", redisDesc)
	if !fake {
		fmt.Fprintln(out, "  LIVE: messages you enqueue are sent through Twilio.")
		fmt.Fprintln(out)
	} else if r.m.Getenv("TWILIO_ACCOUNT_SID") != "" || r.m.Getenv("TWILIO_API_KEY") != "" {
		fmt.Fprintln(out, "  Note: TWILIO_* credentials are set but unused: dev talks to the fake unless --live.")
		fmt.Fprintln(out)
	}
}

// demoMessage is one sample message and why it should end the way it does.
type demoMessage struct {
	msg    tasks.Message
	key    string
	body   string
	reason string // "" for messages meant to be sent; else the failure it is meant to hit
}

// demoFailure says whether the demo's message i (from 0) is meant to fail permanently, and how:
// every 12th from the 6th goes to a participant removed from its session (404, code 20404),
// every 20th from the 10th to a closed session (400, code 80607).
func demoFailure(i int) string {
	switch {
	case i%12 == 5:
		return "unknown participant"
	case i%20 == 9:
		return "closed session"
	}
	return ""
}

var demoNames = []string{"Sam", "Ada", "Lin", "Omar", "Priya", "Jonas", "Mei", "Kofi", "Lucia"}

// demoMessages builds n sample messages with SIDs unique to this run (so runs against a
// persistent REDIS_URL never meet each other's ledgers), and marks the fake accordingly.
func demoMessages(n int, runID string, fake *proxytest.Fake, base []tasks.Option) []demoMessage {
	const service = "KS00000000000000000000000000000de0"
	session := "KC" + runID + strings.Repeat("0", 24)
	closedSession := "KC" + runID + strings.Repeat("0", 23) + "c"
	fake.CloseSession(closedSession)
	out := make([]demoMessage, n)
	for i := range out {
		p := tasks.Payload{
			ServiceSID:     service,
			SessionSID:     session,
			ParticipantSID: fmt.Sprintf("KP%s%024x", runID, i+1),
			Body: fmt.Sprintf("Demo %d/%d: %s, your driver is %d minutes away", i+1, n,
				demoNames[i%len(demoNames)], 1+i%9),
		}
		if i%4 == 3 {
			p.MediaURLs = []string{fmt.Sprintf("https://media.example.com/demo/map-%03d.png", i+1)}
		}
		reason := demoFailure(i)
		switch reason {
		case "unknown participant":
			fake.MarkParticipantUnknown(p.ParticipantSID)
		case "closed session":
			p.SessionSID = closedSession
		}
		key := fmt.Sprintf("demo-%s-%03d", runID, i+1)
		opts := append(append([]tasks.Option{}, base...), tasks.IdempotencyKey(key), tasks.SendWithin(devDemoSendWithin))
		out[i] = demoMessage{msg: tasks.Message{Payload: p, Options: opts}, key: key, body: p.Body, reason: reason}
	}
	return out
}

// demoFaultRates are the fake's random faults during the demo: enough for every kind to show
// up in a batch of 50.
var demoFaultRates = map[proxytest.Fault]float64{
	proxytest.Fault429:            0.10,
	proxytest.Fault503:            0.08,
	proxytest.Fault500AfterCreate: 0.05,
}

func (r *devRun) runDemo(ctx context.Context, redisOpt asynq.RedisConnOpt, base []tasks.Option, fake *proxytest.Fake, url string) error {
	n := r.flags.demo
	runID := randomHex(4)
	msgs := demoMessages(n, runID, fake, base)
	if err := fake.SetFaultRates(demoFaultRates); err != nil {
		return err
	}
	if err := fake.SetCallbackConfig(demoCallbacks(url)); err != nil {
		return err
	}
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	before := queueCounts(insp)

	enq := tasks.NewEnqueuer(redisOpt)
	defer enq.Close()
	batch := make([]tasks.Message, n)
	for i := range msgs {
		batch[i] = msgs[i].msg
	}
	began := time.Now()
	if _, err := enq.EnqueueBatch(ctx, batch); err != nil {
		return fmt.Errorf("demo: enqueue: %w", err)
	}
	fmt.Fprintf(r.out, "Demo: enqueued %d messages (IDs demo-%s-001…). The fake answers some with 429, 503 and \"500 after create\"; %d go to a removed participant or a closed session.\n",
		n, runID, countFailures(msgs))

	// Progress from queue counts (cheap at any size); the summary then reads every message.
	ticker := time.NewTicker(devProgressEvery)
	defer ticker.Stop()
	deadline := time.NewTimer(r.flags.demoTimeout)
	defer deadline.Stop()
	var lastLine string
	var lastPrint time.Time
	stopped := ""
loop:
	for {
		c := queueCounts(insp).minus(before)
		done := c.completed + c.archived
		line := progressLine(c, n, time.Since(began))
		switch {
		case r.term != nil:
			r.term.progress(line)
		case line != lastLine && (time.Since(lastPrint) >= time.Second || done >= n):
			fmt.Fprintln(r.out, line)
			lastLine, lastPrint = line, time.Now()
		}
		if done >= n && demoFinished(insp, msgs) {
			break
		}
		select {
		case <-ctx.Done():
			stopped = "interrupted"
			break loop
		case <-deadline.C:
			stopped = fmt.Sprintf("gave up after %v (--demo-timeout)", r.flags.demoTimeout)
			break loop
		case <-ticker.C:
		}
	}
	if stopped == "" {
		stopped = waitDeliveries(ctx, insp, msgs, deadline.C)
	}
	r.term.clear()
	s := summarize(insp, msgs, fake, time.Since(began))
	s.print(r.out, stopped)
	ds := summarizeDeliveries(insp, msgs)
	ds.print(r.out)
	fmt.Fprintf(r.out, "\nSee them in the console: %s/?state=completed (and ?state=archived; search any ID, KP… or KC…)\n", url)
	switch {
	case s.duplicates > 0:
		return fmt.Errorf("demo: %d messages were created more than once at the fake: this is a bug, please report it", s.duplicates)
	case stopped == "interrupted":
		return nil
	case s.unfinished > 0:
		return fmt.Errorf("demo: %d of %d messages did not finish (%s)", s.unfinished, n, stopped)
	case s.unexpected > 0:
		return fmt.Errorf("demo: %d messages ended differently than intended (see the summary)", s.unexpected)
	case ds.notFinal > 0:
		return fmt.Errorf("demo: %d sent messages have no final delivery status (%s)", ds.notFinal, stopped)
	}
	return nil
}

func countFailures(msgs []demoMessage) int {
	k := 0
	for _, m := range msgs {
		if m.reason != "" {
			k++
		}
	}
	return k
}

// counts are one queue's task counts by state.
type counts struct{ pending, active, scheduled, retry, archived, completed int }

func queueCounts(insp *asynq.Inspector) counts {
	qi, err := insp.GetQueueInfo(tasks.DefaultQueue)
	if err != nil {
		return counts{} // the queue does not exist yet, or Redis blinked: the next tick tells
	}
	return counts{qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed}
}

// minus subtracts what was finished before the demo began (a REDIS_URL may hold older work).
func (c counts) minus(before counts) counts {
	c.completed = max(c.completed-before.completed, 0)
	c.archived = max(c.archived-before.archived, 0)
	return c
}

func progressLine(c counts, n int, elapsed time.Duration) string {
	done := min(c.completed+c.archived, n)
	const width = 16 // the whole line stays under 80 columns, so \r can redraw it
	filled := done * width / max(n, 1)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	return fmt.Sprintf("  [%s%s] %d/%d  sent %d  retrying %d  archived %d  %.1f msgs/s  %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, n,
		c.completed, c.retry, c.archived, rate, elapsed.Round(100*time.Millisecond))
}

// demoFinished confirms, message by message, that every demo message is completed or archived.
func demoFinished(insp *asynq.Inspector, msgs []demoMessage) bool {
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil || (info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived) {
			return false
		}
	}
	return true
}

// demoSummary is what became of the demo's messages, read from asynq and the fake.
type demoSummary struct {
	n, sent, reconciled, failed, unfinished, duplicates, unexpected int
	reasons                                                         map[string]int
	faults                                                          map[string]int
	creates                                                         int
	elapsed                                                         time.Duration
}

// twilioReasons words the Twilio error codes the demo provokes.
var twilioReasons = map[int]string{
	20404: "participant not found (removed from its session)",
	80607: "session closed",
}

func summarize(insp *asynq.Inspector, msgs []demoMessage, fake *proxytest.Fake, elapsed time.Duration) demoSummary {
	s := demoSummary{n: len(msgs), reasons: map[string]int{}, faults: map[string]int{}, elapsed: elapsed}
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			s.unfinished++
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		switch {
		case info.State == asynq.TaskStateCompleted && o != nil && o.State == tasks.OutcomeSent:
			s.sent++
			if o.Reconciled {
				s.reconciled++
			}
			if m.reason != "" {
				s.unexpected++
			}
		case info.State == asynq.TaskStateArchived:
			s.failed++
			reason := strings.TrimSpace(info.LastErr)
			if o != nil && o.State == tasks.OutcomeFailed {
				reason = fmt.Sprintf("Twilio %d (HTTP %d)", o.ErrorCode, o.HTTPStatus)
				if words := twilioReasons[o.ErrorCode]; words != "" {
					reason += ": " + words
				}
			}
			s.reasons[reason]++
			if m.reason == "" {
				s.unexpected++
			}
		default:
			s.unfinished++
		}
		if fake != nil && fake.CreatesForBody(m.body) > 1 {
			s.duplicates++
		}
	}
	if fake != nil {
		st := fake.Stats()
		s.creates = st.Creates
		for k, v := range st.Faults {
			if v > 0 {
				s.faults[k.String()] = v
			}
		}
		if st.ConcurrencyRejections > 0 {
			s.faults["concurrency-limit 429"] = st.ConcurrencyRejections
		}
	}
	return s
}

func (s demoSummary) print(w io.Writer, stopped string) {
	head := fmt.Sprintf("Demo finished in %v", s.elapsed.Round(100*time.Millisecond))
	if stopped != "" {
		head = "Demo stopped (" + stopped + ") after " + s.elapsed.Round(100*time.Millisecond).String()
	}
	rate := float64(s.sent+s.failed) / max(s.elapsed.Seconds(), 0.001)
	fmt.Fprintf(w, "\n%s: %d messages, %.1f msgs/s\n", head, s.n, rate)
	fmt.Fprintf(w, "  sent        %4d  each created exactly once at the fake", s.sent)
	if s.reconciled > 0 {
		fmt.Fprintf(w, "; %d after a \"500 after create\", found by reconciliation instead of sent twice", s.reconciled)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  reconciled  %4d\n", s.reconciled)
	fmt.Fprintf(w, "  failed      %4d  archived, not retried\n", s.failed)
	reasons := make([]string, 0, len(s.reasons))
	for r := range s.reasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "                    %d × %s\n", s.reasons[r], r)
	}
	if s.unfinished > 0 {
		fmt.Fprintf(w, "  unfinished  %4d  still queued or retrying\n", s.unfinished)
	}
	if s.duplicates > 0 {
		fmt.Fprintf(w, "  DUPLICATES  %4d  created more than once at the fake\n", s.duplicates)
	}
	if s.unexpected > 0 {
		fmt.Fprintf(w, "  unexpected  %4d  ended differently than the demo intended\n", s.unexpected)
	}
	if len(s.faults) > 0 {
		kinds := make([]string, 0, len(s.faults))
		for k := range s.faults {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%s ×%d", k, s.faults[k])
		}
		fmt.Fprintf(w, "  faults served by the fake (retried or reconciled): %s\n", strings.Join(parts, ", "))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// isTerminal reports whether w is a character device (a terminal), where the progress line
// can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// terminal redraws one progress line on stdout and keeps log lines (stderr, same screen) from
// being written into the middle of it. Its methods are no-ops on a nil *terminal.
type terminal struct {
	mu   sync.Mutex
	out  io.Writer
	line string
}

func (t *terminal) progress(line string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprint(t.out, "\r\033[K"+line)
	t.line = line
}

// clear ends the progress line, leaving its last state on screen.
func (t *terminal) clear() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprintln(t.out)
		t.line = ""
	}
}

// logWriter wraps the log output: the progress line is erased before a log line and drawn again
// after it.
func (t *terminal) logWriter(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.line != "" {
			fmt.Fprint(t.out, "\r\033[K")
		}
		n, err := w.Write(p)
		if t.line != "" {
			fmt.Fprint(t.out, t.line)
		}
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
