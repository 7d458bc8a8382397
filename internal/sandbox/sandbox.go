package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Settings are the sandbox's knobs, one field per flag of `proxyq sandbox` (the flag is named
// in each error). The zero value is not valid: start from Defaults.
type Settings struct {
	Addr      string        // --addr, host:port
	Prefix    string        // --prefix, the path the API is served under ("" for the root)
	ListOrder string        // --list-order
	Latency   time.Duration // --latency
	// MaxConcurrent is --max-concurrent, the requests one account may have in progress.
	MaxConcurrent int
	Seed          int64 // --seed of the fault generator

	// Shares of creates that get each fault (--rate-*), and any fault as name=rate (--fault-rate).
	Rate429, Rate503, Rate500AfterCreate, RateResetAfterCreate, RateHangAfterCreate float64
	FaultRates                                                                      []string
	UnknownParticipants                                                             []string // --unknown-participant KP…
	ClosedSessions                                                                  []string // --closed-session KC…

	// Delivery and status callbacks (proxytest.CallbackConfig), --callback-* and friends.
	CallbackURL, CallbackSigningURL, ErrorCodes                 string
	CallbackAuthTokens                                          []string // TOKEN or AC…=TOKEN
	CallbackDelay, CallbackTimeout                              time.Duration
	Undelivered, Failed, CallbackDuplicates, CallbackOutOfOrder float64
	CallbackBeforeAnswer, AdvanceStatus                         bool
	CallbackAttempts                                            int
	// ReceiptsURL is --receipts-url: the Conversation Service's onDeliveryUpdated webhook URL.
	ReceiptsURL string

	Limits Limits
}

// Limits are the sandbox's per-Service limits and accounts.
type Limits struct {
	ServiceRate        float64  // --service-rate
	ServiceLimits      []string // --service-limit KS…=rate
	Accounts           []string // --account USER=SECRET
	AccountConcurrency []string // --account-concurrency USER=N
}

// Defaults are the flags' defaults.
func Defaults() Settings {
	return Settings{Addr: DefaultAddr, ListOrder: string(proxytest.DefaultListOrder), Seed: 1,
		CallbackDelay: proxytest.DefaultCallbackDelay, CallbackAttempts: proxytest.DefaultCallbackAttempts,
		CallbackTimeout: proxytest.DefaultCallbackTimeout, ErrorCodes: DefaultErrorCodes, AdvanceStatus: true}
}

// Defaults of Settings.
const (
	DefaultAddr       = ":4010"
	DefaultErrorCodes = "30003,30005,30006,30007"
)

var (
	participantSIDPattern = regexp.MustCompile(`^KP[0-9a-fA-F]{32}$`)
	sessionSIDPattern     = regexp.MustCompile(`^KC[0-9a-fA-F]{32}$`)
	prefixPattern         = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*/?$`)
	serviceSIDPattern     = regexp.MustCompile(`^KS[0-9a-fA-F]{32}$`)
	accountSIDPattern     = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	apiKeyPattern         = regexp.MustCompile(`^SK[0-9a-fA-F]{32}$`)
)

// NewFake validates the settings and builds the fake. It returns the fake and the path prefix
// it is to be served under (normalised: "" or "/path"); errors name the flag.
func (f Settings) NewFake(log *zap.Logger) (*proxytest.Fake, string, error) {
	prefix := strings.TrimRight(strings.TrimSpace(f.Prefix), "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if !prefixPattern.MatchString(prefix) || strings.Contains(prefix, "/.") {
		return nil, "", fmt.Errorf(`--prefix=%q: want a path such as "/twilio", or "" for the root`, f.Prefix)
	}
	if _, port, err := net.SplitHostPort(f.Addr); err != nil || port == "" {
		return nil, "", fmt.Errorf("--addr=%q: want host:port such as :4010 or 127.0.0.1:4010", f.Addr)
	}
	callbacks, err := f.callbacks()
	if err != nil {
		return nil, "", err
	}
	cfg := proxytest.Config{
		Latency:                 f.Latency,
		MaxConcurrentPerAccount: f.MaxConcurrent,
		Seed:                    f.Seed,
		ListOrder:               proxytest.ListOrder(f.ListOrder),
		Logger:                  log,
		Callbacks:               callbacks,
	}
	if err := f.Limits.apply(&cfg); err != nil {
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
			return nil, "", fmt.Errorf("%s %s", flagOf[ce.Field], ce.Rule)
		}
		return nil, "", err
	}

	rates, err := f.faultRates()
	if err != nil {
		return nil, "", err
	}
	fake := proxytest.New(cfg)
	if err := fake.SetFaultRates(rates); err != nil {
		return nil, "", fmt.Errorf("fault rates: %v (the rates of all fault flags together must be at most 1)", err)
	}
	for _, kp := range f.UnknownParticipants {
		if !participantSIDPattern.MatchString(kp) {
			return nil, "", fmt.Errorf("--unknown-participant=%q: want a participant SID, KP followed by 32 hex digits", kp)
		}
		fake.MarkParticipantUnknown(kp)
	}
	for _, kc := range f.ClosedSessions {
		if !sessionSIDPattern.MatchString(kc) {
			return nil, "", fmt.Errorf("--closed-session=%q: want a session SID, KC followed by 32 hex digits", kc)
		}
		fake.CloseSession(kc)
	}
	return fake, prefix, nil
}

// callbacks builds the fake's delivery and callback settings. Errors name the flag; none
// quotes a token.
func (f Settings) callbacks() (proxytest.CallbackConfig, error) {
	cb := proxytest.CallbackConfig{
		URL:          f.CallbackURL,
		SigningURL:   f.CallbackSigningURL,
		Advance:      f.AdvanceStatus,
		Delay:        f.CallbackDelay,
		Undelivered:  f.Undelivered,
		Failed:       f.Failed,
		Duplicates:   f.CallbackDuplicates,
		OutOfOrder:   f.CallbackOutOfOrder,
		BeforeAnswer: f.CallbackBeforeAnswer,
		Attempts:     f.CallbackAttempts,
		Timeout:      f.CallbackTimeout,
	}
	switch {
	case f.CallbackDelay <= 0:
		return cb, fmt.Errorf("--callback-delay=%s: want a positive duration such as 250ms", f.CallbackDelay)
	case f.CallbackAttempts < 1:
		return cb, fmt.Errorf("--callback-attempts=%d: want 1 or more", f.CallbackAttempts)
	case f.CallbackTimeout <= 0:
		return cb, fmt.Errorf("--callback-timeout=%s: want a positive duration such as 5s", f.CallbackTimeout)
	case f.Undelivered >= 0 && f.Undelivered <= 1 && f.Failed >= 0 && f.Failed <= 1 && f.Undelivered+f.Failed > 1:
		return cb, fmt.Errorf("--undelivered=%v plus --failed=%v: want at most 1 together", f.Undelivered, f.Failed)
	case f.CallbackSigningURL != "" && f.CallbackURL == "":
		return cb, fmt.Errorf("--callback-signing-url needs --callback-url")
	}
	for _, c := range strings.Split(f.ErrorCodes, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return cb, fmt.Errorf("--error-codes=%q: want comma-separated positive Twilio error codes such as 30003,30005", f.ErrorCodes)
		}
		cb.ErrorCodes = append(cb.ErrorCodes, n)
	}
	if len(cb.ErrorCodes) == 0 {
		return cb, fmt.Errorf("--error-codes is empty: want at least one code such as 30003")
	}
	for _, t := range f.CallbackAuthTokens {
		sid, tok, one := strings.Cut(t, "=")
		switch {
		case one && !accountSIDPattern.MatchString(sid):
			return cb, fmt.Errorf("--callback-auth-token: want TOKEN or AC…=TOKEN with an Account SID (AC + 32 hex digits)")
		case one && tok == "", !one && t == "":
			return cb, fmt.Errorf("--callback-auth-token: the token is empty")
		case one:
			if cb.AuthTokens == nil {
				cb.AuthTokens = map[string]string{}
			}
			cb.AuthTokens[sid] = tok
		case cb.AuthToken != "":
			return cb, fmt.Errorf("--callback-auth-token: give one token for every account, or AC…=TOKEN per account")
		default:
			cb.AuthToken = t
		}
	}
	return cb, nil
}

// RedactQuery drops a URL's query for display: it may carry a token.
func RedactQuery(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

// Handler serves the fake under prefix (its /_proxytest endpoints included) and
// /healthz at the root.
func Handler(fake *proxytest.Fake, prefix string) http.Handler {
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

// FaultNames lists the fault kinds --fault-rate accepts.
func FaultNames() string {
	names := make([]string, 0, len(proxytest.Faults()))
	for _, k := range proxytest.Faults() {
		names = append(names, k.String())
	}
	return strings.Join(names, ", ")
}

// apply sets cfg's per-Service limits, credentials and per-account caps; errors name the flag.
func (f Limits) apply(cfg *proxytest.Config) error {
	if f.ServiceRate < 0 {
		return fmt.Errorf("--service-rate=%v: want 0 or more", f.ServiceRate)
	}
	cfg.ServiceLimits.Rate = f.ServiceRate
	for _, kv := range f.ServiceLimits {
		ks, v, ok := strings.Cut(kv, "=")
		r, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || r <= 0 || !serviceSIDPattern.MatchString(ks) {
			return fmt.Errorf("--service-limit=%q: want KS…=rate, e.g. KS0123456789abcdef0123456789abcdef=60", kv)
		}
		if cfg.ServiceLimits.Services == nil {
			cfg.ServiceLimits.Services = map[string]float64{}
		}
		cfg.ServiceLimits.Services[ks] = r
	}
	for _, kv := range f.Accounts {
		user, secret, ok := strings.Cut(kv, "=")
		if !ok || secret == "" || !(accountSIDPattern.MatchString(user) || apiKeyPattern.MatchString(user)) {
			// Never echo the value: it holds a secret.
			return fmt.Errorf("--account: want USER=SECRET with USER an AC… or SK… SID and a non-empty secret")
		}
		if cfg.Credentials == nil {
			cfg.Credentials = map[string]string{}
		}
		cfg.Credentials[user] = secret
	}
	for _, kv := range f.AccountConcurrency {
		user, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 || user == "" {
			return fmt.Errorf("--account-concurrency=%q: want USER=N, e.g. AC0123456789abcdef0123456789abcdef=20", kv)
		}
		if cfg.AccountConcurrency == nil {
			cfg.AccountConcurrency = map[string]int{}
		}
		cfg.AccountConcurrency[user] = n
	}
	return nil
}

// WriteBanner prints what a user of the sandbox listening on addr needs: the
// PROXYQ_API_BASE_URL to point a worker at (base), the credentials accepted, and the read-only
// endpoints. The callback URL's query is redacted.
func (f Settings) WriteBanner(w io.Writer, addr, base string) {
	fmt.Fprintf(w, "proxyq sandbox: fake Twilio Proxy API listening on %s\n\n", addr)
	fmt.Fprintf(w, "  PROXYQ_API_BASE_URL=%s\n", base)
	if len(f.Limits.Accounts) > 0 {
		fmt.Fprintf(w, "  credentials: the %d --account users given\n", len(f.Limits.Accounts))
	} else {
		fmt.Fprintf(w, "  credentials: any TWILIO_ACCOUNT_SID (AC + 32 hex) or TWILIO_API_KEY (SK + 32 hex) with any non-empty secret\n")
	}
	fmt.Fprintf(w, "  created:     %s/_proxytest/interactions\n", base)
	fmt.Fprintf(w, "  counters:    %s/_proxytest/stats\n", base)
	fmt.Fprintf(w, "  messages:    %s/2010-04-01/Accounts/{AC}/Messages/{SM}.json\n", base)
	if f.CallbackURL != "" {
		fmt.Fprintf(w, "  callbacks:   POST to %s, %s apart; sent: %s/_proxytest/callbacks\n", RedactQuery(f.CallbackURL), f.CallbackDelay, base)
	} else {
		fmt.Fprintf(w, "  callbacks:   none (--callback-url)\n")
	}
	fmt.Fprintln(w)
}

// faultRates reads --rate-* and --fault-rate; errors name the flag.
func (f Settings) faultRates() (map[proxytest.Fault]float64, error) {
	rates := map[proxytest.Fault]float64{}
	named := []struct {
		flag  string
		kind  proxytest.Fault
		value float64
	}{
		{"--rate-429", proxytest.Fault429, f.Rate429},
		{"--rate-503", proxytest.Fault503, f.Rate503},
		{"--rate-500-after-create", proxytest.Fault500AfterCreate, f.Rate500AfterCreate},
		{"--rate-reset-after-create", proxytest.FaultResetAfterCreate, f.RateResetAfterCreate},
		{"--rate-hang-after-create", proxytest.FaultHangAfterCreate, f.RateHangAfterCreate},
	}
	for _, n := range named {
		if n.value < 0 || n.value > 1 {
			return nil, fmt.Errorf("%s=%v: want a probability between 0 and 1", n.flag, n.value)
		}
		if n.value > 0 {
			rates[n.kind] = n.value
		}
	}
	for _, fr := range f.FaultRates {
		name, value, ok := strings.Cut(fr, "=")
		kind, err := proxytest.ParseFault(strings.TrimSpace(name))
		if !ok || err != nil {
			return nil, fmt.Errorf("--fault-rate=%q: want name=rate with name one of %s", fr, FaultNames())
		}
		rate, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || rate < 0 || rate > 1 {
			return nil, fmt.Errorf("--fault-rate=%q: want a rate between 0 and 1", fr)
		}
		rates[kind] = rate
	}
	return rates, nil
}
