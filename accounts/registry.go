package accounts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"sigs.k8s.io/yaml"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
)

// DefaultPollEvery is how often Watch looks at the file.
const DefaultPollEvery = 2 * time.Second

// maxFileBytes bounds the file: ten thousand accounts fit in a few MB.
const maxFileBytes = 16 << 20

// Limits are an account's own limits; zero fields inherit the worker's.
type Limits struct {
	MaxInFlight int                `json:"max_in_flight,omitempty"`
	Rate        float64            `json:"rate,omitempty"`
	Burst       int                `json:"burst,omitempty"`
	Services    map[string]float64 `json:"services,omitempty"` // KS… → requests/s per endpoint
}

// fileAccount is one entry of the file.
type fileAccount struct {
	AccountSID string  `json:"account_sid"`
	AuthToken  secret  `json:"auth_token,omitempty"`
	APIKey     string  `json:"api_key,omitempty"`
	APISecret  secret  `json:"api_secret,omitempty"`
	Limits     *Limits `json:"limits,omitempty"`
}

type fileDoc struct {
	Accounts []fileAccount `json:"accounts"`
}

// secret is a credential; it prints as [redacted].
type secret string

func (secret) String() string   { return "[redacted]" }
func (secret) GoString() string { return "[redacted]" }

// Options configure a Registry.
type Options struct {
	// Path is the accounts file. Empty: the registry holds no accounts (only the default's token).
	Path string
	// Client is the template of every account's client: API location, timeout, pool size,
	// user agent. Its credentials are ignored.
	Client proxyclient.Config
	// Conversations, when set, is the template of every account's Conversations client (built
	// with the same credentials as its Proxy client). Nil: no Conversations clients.
	Conversations *conversations.Config
	// DefaultAccountSID and DefaultAuthToken are the TWILIO_* account's, for AuthToken.
	DefaultAccountSID string
	DefaultAuthToken  string
	// Logger receives reload results (never secrets). Nil: no logs.
	Logger *zap.Logger
}

// Registry is the set of accounts of the file in force. Safe for concurrent use.
type Registry struct {
	opts Options
	log  *zap.Logger
	cur  atomic.Pointer[snapshot]
	mu   sync.Mutex // serialises Reload
}

type snapshot struct {
	byAccount map[string]*entry
	sum       [32]byte
	modTime   time.Time
	size      int64
}

type entry struct {
	client    *proxyclient.Client
	conv      *conversations.Client // nil without Options.Conversations
	creds     fileAccount           // for "unchanged?" comparisons
	authToken string
	limits    Limits
}

// New reads the file (when Path is set) and returns the registry, or the first problem of
// the file (naming the account and key, never a secret).
func New(opts Options) (*Registry, error) {
	r := &Registry{opts: opts, log: opts.Logger}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.cur.Store(&snapshot{byAccount: map[string]*entry{}})
	if opts.Path != "" {
		if _, err := r.Reload(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Client returns the Proxy client of accountSID.
func (r *Registry) Client(accountSID string) (*proxyclient.Client, bool) {
	e, ok := r.cur.Load().byAccount[accountSID]
	if !ok {
		return nil, false
	}
	return e.client, true
}

// ConversationsClient returns the Conversations client of accountSID (false too when the
// registry was built without Options.Conversations).
func (r *Registry) ConversationsClient(accountSID string) (*conversations.Client, bool) {
	e, ok := r.cur.Load().byAccount[accountSID]
	if !ok || e.conv == nil {
		return nil, false
	}
	return e.conv, true
}

// Has reports whether the file has credentials for accountSID.
func (r *Registry) Has(accountSID string) bool {
	_, ok := r.cur.Load().byAccount[accountSID]
	return ok
}

// Accounts returns the SIDs of the accounts in force, sorted.
func (r *Registry) Accounts() []string {
	m := r.cur.Load().byAccount
	out := make([]string, 0, len(m))
	for sid := range m {
		out = append(out, sid)
	}
	sort.Strings(out)
	return out
}

// AuthToken returns the Auth Token of an account (the file's, or the default account's from
// TWILIO_AUTH_TOKEN), which Twilio signs that account's callbacks with. ok is false when the
// token is not known (no account, or an account given with an API key only).
func (r *Registry) AuthToken(accountSID string) (string, bool) {
	if e, ok := r.cur.Load().byAccount[accountSID]; ok && e.authToken != "" {
		return e.authToken, true
	}
	if accountSID != "" && accountSID == r.opts.DefaultAccountSID && r.opts.DefaultAuthToken != "" {
		return r.opts.DefaultAuthToken, true
	}
	return "", false
}

// Limits returns the account's own limits.
func (r *Registry) Limits(accountSID string) (Limits, bool) {
	e, ok := r.cur.Load().byAccount[accountSID]
	if !ok || e.limits.MaxInFlight == 0 && e.limits.Rate == 0 {
		return Limits{}, false
	}
	return e.limits, true
}

// ServiceRate returns the account's own rate for a Service (a raised limit).
func (r *Registry) ServiceRate(accountSID, service string) (float64, bool) {
	e, ok := r.cur.Load().byAccount[accountSID]
	if !ok {
		return 0, false
	}
	rate, ok := e.limits.Services[service]
	return rate, ok
}

// Reload re-reads the file and puts it in force when it parses and validates; otherwise the
// accounts in force stay and the error says what is wrong. changed is false when the content
// was the same.
func (r *Registry) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Path == "" {
		return false, nil
	}
	f, err := os.Open(r.opts.Path)
	if err != nil {
		return false, fmt.Errorf("accounts file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("accounts file: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxFileBytes+1)); err != nil {
		return false, fmt.Errorf("accounts file: %w", err)
	}
	if buf.Len() > maxFileBytes {
		return false, fmt.Errorf("accounts file %s: larger than %d bytes", r.opts.Path, maxFileBytes)
	}
	data := buf.Bytes()
	old := r.cur.Load()
	sum := sha256.Sum256(data)
	if sum == old.sum {
		return false, nil
	}
	next, err := r.parse(data, old)
	if err != nil {
		return false, fmt.Errorf("accounts file %s: %w", r.opts.Path, err)
	}
	r.cur.Store(&snapshot{byAccount: next, sum: sum, modTime: st.ModTime(), size: st.Size()})
	added, removed, rotated := diff(old.byAccount, next)
	r.log.Info("accounts file loaded", zap.String("path", r.opts.Path), zap.Int("accounts", len(next)),
		zap.Strings("added", added), zap.Strings("removed", removed), zap.Strings("credentials_changed", rotated))
	return true, nil
}

// parse decodes and validates the file, reusing the clients of accounts whose credentials
// did not change.
func (r *Registry) parse(data []byte, old *snapshot) (map[string]*entry, error) {
	var doc fileDoc
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, &doc); err != nil {
			return nil, fmt.Errorf("not valid JSON or YAML of the accounts format: %s", scrub(err.Error(), data))
		}
	}
	out := make(map[string]*entry, len(doc.Accounts))
	for i, a := range doc.Accounts {
		where := fmt.Sprintf("accounts[%d]", i)
		if a.AccountSID != "" {
			where += " (" + a.AccountSID + ")"
		}
		if !proxyclient.ValidSID("AC", a.AccountSID) {
			return nil, fmt.Errorf("%s: account_sid must match ^AC[0-9a-fA-F]{32}$", where)
		}
		if _, dup := out[a.AccountSID]; dup {
			return nil, fmt.Errorf("%s: account_sid is listed twice", where)
		}
		if a.APIKey == "" && a.AuthToken == "" {
			return nil, fmt.Errorf("%s: give api_key and api_secret (recommended) or auth_token", where)
		}
		if err := checkLimits(a.Limits); err != nil {
			return nil, fmt.Errorf("%s: limits: %w", where, err)
		}
		if prev, ok := old.byAccount[a.AccountSID]; ok && prev.creds.AuthToken == a.AuthToken &&
			prev.creds.APIKey == a.APIKey && prev.creds.APISecret == a.APISecret {
			e := *prev
			e.limits = limitsOf(a.Limits)
			out[a.AccountSID] = &e
			continue
		}
		cfg := r.opts.Client
		cfg.AccountSID, cfg.AuthToken, cfg.APIKey, cfg.APISecret = a.AccountSID, string(a.AuthToken), a.APIKey, string(a.APISecret)
		c, err := proxyclient.New(cfg)
		if err != nil {
			var ve *proxyclient.ValidationError
			if errors.As(err, &ve) {
				return nil, fmt.Errorf("%s: %s %s", where, fileKey(ve.Field), ve.Rule)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var conv *conversations.Client
		if r.opts.Conversations != nil {
			ccfg := *r.opts.Conversations
			ccfg.AccountSID, ccfg.AuthToken, ccfg.APIKey, ccfg.APISecret = a.AccountSID, string(a.AuthToken), a.APIKey, string(a.APISecret)
			if conv, err = conversations.New(ccfg); err != nil {
				var ve *proxyclient.ValidationError
				if errors.As(err, &ve) {
					return nil, fmt.Errorf("%s: %s %s", where, fileKey(ve.Field), ve.Rule)
				}
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		out[a.AccountSID] = &entry{client: c, conv: conv, creds: a, authToken: string(a.AuthToken), limits: limitsOf(a.Limits)}
	}
	return out, nil
}

func limitsOf(l *Limits) Limits {
	if l == nil {
		return Limits{}
	}
	return *l
}

func checkLimits(l *Limits) error {
	if l == nil {
		return nil
	}
	switch {
	case l.MaxInFlight < 0:
		return fmt.Errorf("max_in_flight must not be negative, got %d", l.MaxInFlight)
	case l.Rate < 0 || math.IsInf(l.Rate, 0) || math.IsNaN(l.Rate):
		return fmt.Errorf("rate must be a finite number, 0 or more, got %v", l.Rate)
	case l.Burst < 0:
		return fmt.Errorf("burst must not be negative, got %d", l.Burst)
	}
	for ks, rate := range l.Services {
		if !proxyclient.ValidSID("KS", ks) {
			return fmt.Errorf("services: %q must match ^KS[0-9a-fA-F]{32}$", ks)
		}
		if !(rate > 0) || math.IsInf(rate, 0) {
			return fmt.Errorf("services: rate of %s must be a positive number, got %v", ks, rate)
		}
	}
	return nil
}

// fileKey names the file key behind a proxyclient.Config field.
func fileKey(field string) string {
	switch field {
	case "AccountSID":
		return "account_sid"
	case "AuthToken":
		return "auth_token"
	case "APIKey":
		return "api_key"
	case "APISecret":
		return "api_secret"
	}
	return field
}

// scrub removes any fragment of the file's values from a parser's message: YAML errors can
// quote a line, and a line can hold a secret. Only the line number survives.
func scrub(msg string, data []byte) string {
	for _, line := range strings.Split(string(data), "\n") {
		_, v, ok := strings.Cut(line, ":")
		v = strings.Trim(strings.TrimSpace(v), `"',`)
		if ok && len(v) >= 4 && strings.Contains(msg, v) {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}

func diff(old, next map[string]*entry) (added, removed, rotated []string) {
	for sid, e := range next {
		prev, ok := old[sid]
		switch {
		case !ok:
			added = append(added, sid)
		case prev.client != e.client:
			rotated = append(rotated, sid)
		}
	}
	for sid := range old {
		if _, ok := next[sid]; !ok {
			removed = append(removed, sid)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	sort.Strings(rotated)
	return
}

// Watch re-reads the file every `every` (DefaultPollEvery when 0) until ctx ends and puts it
// in force when its content changed (by SHA-256, so an edit that keeps the size and the
// modification time is seen too, and a Kubernetes Secret's symlink swap is followed) and then
// stayed the same for one more poll: a file caught half-written by an editor must not drop
// the accounts it had not reached yet. A bad file is logged (without secrets), once, and the
// accounts in force stay.
func (r *Registry) Watch(ctx context.Context, every time.Duration) {
	if r.opts.Path == "" {
		return
	}
	if every <= 0 {
		every = DefaultPollEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	var pending [32]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(r.opts.Path)
		if err != nil {
			if err.Error() != lastErr {
				lastErr = err.Error()
				r.log.Error("accounts file: cannot read; the accounts in force stay", zap.Error(err))
			}
			continue
		}
		sum := sha256.Sum256(data)
		if sum == r.cur.Load().sum {
			pending = [32]byte{}
			continue
		}
		if sum != pending {
			pending = sum // changed: apply once it reads the same at the next poll
			continue
		}
		_, err = r.Reload()
		switch {
		case err == nil:
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			r.log.Error("accounts file refused; the accounts in force stay", zap.Error(err))
		}
	}
}
