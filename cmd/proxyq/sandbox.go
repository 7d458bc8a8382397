package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

const defaultSandboxAddr = ":4010"

const sandboxDoc = `
Serves a fake Twilio Proxy API (the one proxyq's own tests use: proxyclient/proxytest) so that
your code, or 'proxyq worker', can be exercised without Twilio and without sending an SMS.

Point a worker at it:
  PROXYQ_API_BASE_URL=http://127.0.0.1:4010 TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000 \
  TWILIO_AUTH_TOKEN=any proxyq worker

Any Account SID (AC + 32 hex) or API key (SK + 32 hex) with a non-empty secret is accepted;
every participant and session exists unless marked with --unknown-participant or
--closed-session. Fault flags make create requests fail the ways Twilio's can: the rates are
probabilities per create request (together at most 1), drawn from a generator seeded by --seed.

Read-only, unauthenticated endpoints beside the API:
  GET /_proxytest/interactions   every interaction created (JSON), bodies included
  GET /_proxytest/stats          request, create and fault counters
  GET /healthz                   200 while serving

Each request is logged (method, path, status, fault, account; never bodies or secrets).
Stops on SIGINT or SIGTERM.`

func init() {
	register(&command{name: "sandbox", summary: "serve a fake Twilio Proxy API with fault injection", run: runSandbox})
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// sandboxFlags are the fake's knobs.
type sandboxFlags struct {
	addr, prefix, listOrder                                             string
	latency                                                             time.Duration
	maxConcurrent                                                       int
	seed                                                                int64
	rate429, rate503, rate500AfterCreate, rateResetAfter, rateHangAfter float64
	faultRates, unknownParticipants, closedSessions                     repeated
	limits                                                              sandboxLimitFlags
}

var (
	participantSIDPattern = regexp.MustCompile(`^KP[0-9a-fA-F]{32}$`)
	sessionSIDPattern     = regexp.MustCompile(`^KC[0-9a-fA-F]{32}$`)
	prefixPattern         = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*/?$`)
	serviceSIDPattern     = regexp.MustCompile(`^KS[0-9a-fA-F]{32}$`)
	accountSIDPattern     = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	apiKeyPattern         = regexp.MustCompile(`^SK[0-9a-fA-F]{32}$`)
)

func runSandbox(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("sandbox", "sandbox [flags]", sandboxDoc)
	var f sandboxFlags
	fs.StringVar(&f.addr, "addr", defaultSandboxAddr, "listen address host:port (port 0 picks a free one)")
	fs.StringVar(&f.prefix, "prefix", "", `path the API is served under, e.g. "/twilio" (PROXYQ_API_BASE_URL then ends with it); default: the root`)
	fs.DurationVar(&f.latency, "latency", 0, "delay added to every API request, e.g. 150ms")
	fs.IntVar(&f.maxConcurrent, "max-concurrent", 0, "requests one account may have in progress; beyond it: 429 code 20429 (0: no limit)")
	fs.Float64Var(&f.rate429, "rate-429", 0, "share of creates answered 429 (nothing created), 0..1")
	fs.Float64Var(&f.rate503, "rate-503", 0, "share of creates answered 503 (nothing created), 0..1")
	fs.Float64Var(&f.rate500AfterCreate, "rate-500-after-create", 0, "share of creates that create the interaction, then answer 500, 0..1")
	fs.Float64Var(&f.rateResetAfter, "rate-reset-after-create", 0, "share of creates that create the interaction, then reset the connection, 0..1")
	fs.Float64Var(&f.rateHangAfter, "rate-hang-after-create", 0, "share of creates that create the interaction, then never answer (until the client gives up), 0..1")
	fs.Var(&f.faultRates, "fault-rate", `any fault kind as name=rate, repeatable: `+faultNames())
	fs.Var(&f.unknownParticipants, "unknown-participant", "participant SID (KP…) answered 404 code 20404, as if removed; repeatable")
	fs.Var(&f.closedSessions, "closed-session", "session SID (KC…) whose creates answer 400 code 80607 (session closed); repeatable")
	fs.Int64Var(&f.seed, "seed", 1, "seed of the fault generator, so a run can be repeated")
	f.limits.register(fs)
	fs.StringVar(&f.listOrder, "list-order", string(proxytest.DefaultListOrder), "order of list results: oldest-first, newest-first or shuffled (Twilio documents none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (the sandbox takes flags only)", fs.Arg(0))
	}
	log, err := m.logger("")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	fake, prefix, err := newSandboxFake(f, log.Named("sandbox"))
	if err != nil {
		return err
	}
	defer fake.Close()

	srv, err := adminhttp.Listen(f.addr, sandboxHandler(fake, prefix))
	if err != nil {
		return err
	}
	base := "http://" + dialable(srv.Addr()) + prefix
	fmt.Fprintf(m.Stdout, "proxyq sandbox: fake Twilio Proxy API listening on %s\n\n", srv.Addr())
	fmt.Fprintf(m.Stdout, "  PROXYQ_API_BASE_URL=%s\n", base)
	if len(f.limits.accounts) > 0 {
		fmt.Fprintf(m.Stdout, "  credentials: the %d --account users given\n", len(f.limits.accounts))
	} else {
		fmt.Fprintf(m.Stdout, "  credentials: any TWILIO_ACCOUNT_SID (AC + 32 hex) or TWILIO_API_KEY (SK + 32 hex) with any non-empty secret\n")
	}
	fmt.Fprintf(m.Stdout, "  created:     %s/_proxytest/interactions\n", base)
	fmt.Fprintf(m.Stdout, "  counters:    %s/_proxytest/stats\n\n", base)
	log.Info("sandbox listening", zap.String("addr", srv.Addr()), zap.String("base_url", base),
		zap.Duration("latency", f.latency), zap.Int("max_concurrent", f.maxConcurrent), zap.Int64("seed", f.seed))

	<-ctx.Done()
	// Close the fake first: it ends latency waits and hangs, so the server's shutdown does not
	// wait for them.
	fake.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(shutdownCtx); err != nil {
		log.Warn("sandbox did not close cleanly", zap.Error(err))
	}
	return nil
}

// newSandboxFake validates the flags and builds the fake. Errors are usageErrors naming the flag.
func newSandboxFake(f sandboxFlags, log *zap.Logger) (*proxytest.Fake, string, error) {
	prefix := strings.TrimRight(strings.TrimSpace(f.prefix), "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if !prefixPattern.MatchString(prefix) || strings.Contains(prefix, "/.") {
		return nil, "", usagef(`--prefix=%q: want a path such as "/twilio", or "" for the root`, f.prefix)
	}
	if _, port, err := net.SplitHostPort(f.addr); err != nil || port == "" {
		return nil, "", usagef("--addr=%q: want host:port such as :4010 or 127.0.0.1:4010", f.addr)
	}
	cfg := proxytest.Config{
		Latency:                 f.latency,
		MaxConcurrentPerAccount: f.maxConcurrent,
		Seed:                    f.seed,
		ListOrder:               proxytest.ListOrder(f.listOrder),
		Logger:                  log,
	}
	if err := f.limits.apply(&cfg); err != nil {
		return nil, "", err
	}
	if err := cfg.Validate(); err != nil {
		flagOf := map[string]string{"Latency": "--latency", "MaxConcurrentPerAccount": "--max-concurrent", "ListOrder": "--list-order"}
		var ce *proxytest.ConfigError
		if errors.As(err, &ce) && flagOf[ce.Field] != "" {
			return nil, "", usagef("%s %s", flagOf[ce.Field], ce.Rule)
		}
		return nil, "", usageError{err}
	}

	rates := map[proxytest.Fault]float64{}
	named := []struct {
		flag  string
		kind  proxytest.Fault
		value float64
	}{
		{"--rate-429", proxytest.Fault429, f.rate429},
		{"--rate-503", proxytest.Fault503, f.rate503},
		{"--rate-500-after-create", proxytest.Fault500AfterCreate, f.rate500AfterCreate},
		{"--rate-reset-after-create", proxytest.FaultResetAfterCreate, f.rateResetAfter},
		{"--rate-hang-after-create", proxytest.FaultHangAfterCreate, f.rateHangAfter},
	}
	for _, n := range named {
		if n.value < 0 || n.value > 1 {
			return nil, "", usagef("%s=%v: want a probability between 0 and 1", n.flag, n.value)
		}
		if n.value > 0 {
			rates[n.kind] = n.value
		}
	}
	for _, fr := range f.faultRates {
		name, value, ok := strings.Cut(fr, "=")
		kind, err := proxytest.ParseFault(strings.TrimSpace(name))
		if !ok || err != nil {
			return nil, "", usagef("--fault-rate=%q: want name=rate with name one of %s", fr, faultNames())
		}
		rate, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || rate < 0 || rate > 1 {
			return nil, "", usagef("--fault-rate=%q: want a rate between 0 and 1", fr)
		}
		rates[kind] = rate
	}
	fake := proxytest.New(cfg)
	if err := fake.SetFaultRates(rates); err != nil {
		return nil, "", usagef("fault rates: %v (the rates of all fault flags together must be at most 1)", err)
	}
	for _, kp := range f.unknownParticipants {
		if !participantSIDPattern.MatchString(kp) {
			return nil, "", usagef("--unknown-participant=%q: want a participant SID, KP followed by 32 hex digits", kp)
		}
		fake.MarkParticipantUnknown(kp)
	}
	for _, kc := range f.closedSessions {
		if !sessionSIDPattern.MatchString(kc) {
			return nil, "", usagef("--closed-session=%q: want a session SID, KC followed by 32 hex digits", kc)
		}
		fake.CloseSession(kc)
	}
	return fake, prefix, nil
}

// sandboxHandler serves the fake under prefix (its /_proxytest endpoints included) and
// /healthz at the root.
func sandboxHandler(fake *proxytest.Fake, prefix string) http.Handler {
	api := fake.Mount(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		api.ServeHTTP(w, r)
	})
}

func faultNames() string {
	names := make([]string, 0, len(proxytest.Faults()))
	for _, k := range proxytest.Faults() {
		names = append(names, k.String())
	}
	return strings.Join(names, ", ")
}

// dialable turns a listener address into one a local client can dial: an unspecified host
// (":4010", "0.0.0.0", "::") becomes 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
