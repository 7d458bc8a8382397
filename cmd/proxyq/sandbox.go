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

It also serves each message's Messaging API resource (GET /2010-04-01/Accounts/{AC}/Messages/
{SM}.json: status, error_code, error_message), and moves every message queued -> sent ->
delivered, --callback-delay apart (or undelivered/failed with an error code, by --undelivered,
--failed and --error-codes); --advance-status=false keeps every message "queued".

Status callbacks: with --callback-url (the Proxy Service's callback_url, e.g.
http://127.0.0.1:8080/v1/twilio/proxy/callbacks of 'proxyq serve') each status change is POSTed
there as Twilio does, form-encoded and signed with X-Twilio-Signature (HMAC-SHA1 keyed with
the account's Auth Token: --callback-auth-token, PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN, or else
the secret the worker authenticates with as TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN; a worker
using an API key needs one of the first two). --callback-signing-url signs another URL than
the one posted to (the public URL of a receiver behind a proxy). --callback-duplicates,
--callback-out-of-order and --callback-before-answer make them arrive twice, out of order, and
before the create is answered. Failed POSTs are retried (--callback-attempts).

Read-only, unauthenticated endpoints beside the API:
  GET /_proxytest/interactions   every interaction created (JSON), bodies included
  GET /_proxytest/stats          request, create and fault counters
  GET /_proxytest/callbacks      callbacks sent (parameters included) and their counters
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

	// Delivery and status callbacks (proxytest.CallbackConfig).
	callbackURL, callbackSigningURL, errorCodes                 string
	callbackTokens                                              repeated
	callbackDelay, callbackTimeout                              time.Duration
	undelivered, failed, callbackDuplicates, callbackOutOfOrder float64
	callbackBeforeAnswer, advanceStatus                         bool
	callbackAttempts                                            int

	limits sandboxLimitFlags
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
	fs.StringVar(&f.callbackURL, "callback-url", "", "the Proxy Service's callback_url: POST signed status callbacks there (default: none)")
	fs.StringVar(&f.callbackSigningURL, "callback-signing-url", "", "URL the signature covers when it differs from --callback-url (a public URL behind a proxy)")
	fs.Var(&f.callbackTokens, "callback-auth-token", "Auth Token signing callbacks: TOKEN for every account, or AC…=TOKEN for one; repeatable (or PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN)")
	fs.DurationVar(&f.callbackDelay, "callback-delay", proxytest.DefaultCallbackDelay, "time between a message's statuses (queued, sent, final)")
	fs.Float64Var(&f.undelivered, "undelivered", 0, "share of messages ending undelivered (queued, sent, undelivered) with an error code, 0..1")
	fs.Float64Var(&f.failed, "failed", 0, "share of messages ending failed (queued, failed) with an error code, 0..1")
	fs.StringVar(&f.errorCodes, "error-codes", "30003,30005,30006,30007", "comma-separated Messaging error codes drawn for undelivered and failed messages")
	fs.Float64Var(&f.callbackDuplicates, "callback-duplicates", 0, "share of callbacks POSTed twice (same signature and I-Twilio-Idempotency-Token), 0..1")
	fs.Float64Var(&f.callbackOutOfOrder, "callback-out-of-order", 0, "share of messages whose callbacks are held to the final status, then sent newest first, 0..1")
	fs.BoolVar(&f.callbackBeforeAnswer, "callback-before-answer", false, "POST each message's first callback, and wait for its answer, before answering the create")
	fs.IntVar(&f.callbackAttempts, "callback-attempts", proxytest.DefaultCallbackAttempts, "POSTs per callback at most while answered non-2xx or not at all")
	fs.DurationVar(&f.callbackTimeout, "callback-timeout", proxytest.DefaultCallbackTimeout, "bound on one callback POST")
	fs.BoolVar(&f.advanceStatus, "advance-status", true, "move messages through their statuses even without --callback-url (for pollers); false keeps them queued")
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
	if tok := m.Getenv("PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN"); tok != "" && len(f.callbackTokens) == 0 {
		f.callbackTokens = repeated{tok}
	}
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
	fmt.Fprintf(m.Stdout, "  counters:    %s/_proxytest/stats\n", base)
	fmt.Fprintf(m.Stdout, "  messages:    %s/2010-04-01/Accounts/{AC}/Messages/{SM}.json\n", base)
	if f.callbackURL != "" {
		fmt.Fprintf(m.Stdout, "  callbacks:   POST to %s, %s apart; sent: %s/_proxytest/callbacks\n", sandboxRedactQuery(f.callbackURL), f.callbackDelay, base)
	} else {
		fmt.Fprintf(m.Stdout, "  callbacks:   none (--callback-url)\n")
	}
	fmt.Fprintln(m.Stdout)
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
	callbacks, err := sandboxCallbacks(f)
	if err != nil {
		return nil, "", err
	}
	cfg := proxytest.Config{
		Latency:                 f.latency,
		MaxConcurrentPerAccount: f.maxConcurrent,
		Seed:                    f.seed,
		ListOrder:               proxytest.ListOrder(f.listOrder),
		Logger:                  log,
		Callbacks:               callbacks,
	}
	if err := f.limits.apply(&cfg); err != nil {
		return nil, "", err
	}
	if err := cfg.Validate(); err != nil {
		flagOf := map[string]string{"Latency": "--latency", "MaxConcurrentPerAccount": "--max-concurrent", "ListOrder": "--list-order",
			"Callbacks.URL": "--callback-url", "Callbacks.SigningURL": "--callback-signing-url", "Callbacks.AuthTokens": "--callback-auth-token",
			"Callbacks.Delay": "--callback-delay", "Callbacks.Undelivered": "--undelivered", "Callbacks.Failed": "--failed",
			"Callbacks.ErrorCodes": "--error-codes", "Callbacks.Duplicates": "--callback-duplicates",
			"Callbacks.OutOfOrder": "--callback-out-of-order", "Callbacks.Attempts": "--callback-attempts", "Callbacks.Timeout": "--callback-timeout"}
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

// sandboxCallbacks builds the fake's delivery and callback settings from the flags. Errors
// are usageErrors naming the flag; none quotes a token.
func sandboxCallbacks(f sandboxFlags) (proxytest.CallbackConfig, error) {
	cb := proxytest.CallbackConfig{
		URL:          f.callbackURL,
		SigningURL:   f.callbackSigningURL,
		Advance:      f.advanceStatus,
		Delay:        f.callbackDelay,
		Undelivered:  f.undelivered,
		Failed:       f.failed,
		Duplicates:   f.callbackDuplicates,
		OutOfOrder:   f.callbackOutOfOrder,
		BeforeAnswer: f.callbackBeforeAnswer,
		Attempts:     f.callbackAttempts,
		Timeout:      f.callbackTimeout,
	}
	switch {
	case f.callbackDelay <= 0:
		return cb, usagef("--callback-delay=%s: want a positive duration such as 250ms", f.callbackDelay)
	case f.callbackAttempts < 1:
		return cb, usagef("--callback-attempts=%d: want 1 or more", f.callbackAttempts)
	case f.callbackTimeout <= 0:
		return cb, usagef("--callback-timeout=%s: want a positive duration such as 5s", f.callbackTimeout)
	case f.undelivered >= 0 && f.undelivered <= 1 && f.failed >= 0 && f.failed <= 1 && f.undelivered+f.failed > 1:
		return cb, usagef("--undelivered=%v plus --failed=%v: want at most 1 together", f.undelivered, f.failed)
	case f.callbackSigningURL != "" && f.callbackURL == "":
		return cb, usagef("--callback-signing-url needs --callback-url")
	}
	for _, c := range strings.Split(f.errorCodes, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return cb, usagef("--error-codes=%q: want comma-separated positive Twilio error codes such as 30003,30005", f.errorCodes)
		}
		cb.ErrorCodes = append(cb.ErrorCodes, n)
	}
	if len(cb.ErrorCodes) == 0 {
		return cb, usagef("--error-codes is empty: want at least one code such as 30003")
	}
	for _, t := range f.callbackTokens {
		sid, tok, one := strings.Cut(t, "=")
		switch {
		case one && !accountSIDPattern.MatchString(sid):
			return cb, usagef("--callback-auth-token: want TOKEN or AC…=TOKEN with an Account SID (AC + 32 hex digits)")
		case one && tok == "", !one && t == "":
			return cb, usagef("--callback-auth-token: the token is empty")
		case one:
			if cb.AuthTokens == nil {
				cb.AuthTokens = map[string]string{}
			}
			cb.AuthTokens[sid] = tok
		case cb.AuthToken != "":
			return cb, usagef("--callback-auth-token: give one token for every account, or AC…=TOKEN per account")
		default:
			cb.AuthToken = t
		}
	}
	return cb, nil
}

// sandboxRedactQuery drops a URL's query for display: it may carry a token.
func sandboxRedactQuery(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
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
