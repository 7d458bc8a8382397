package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultMaxBodyBytes   int64 = 1 << 20 // 1 MiB
	DefaultMaxBatch             = 100
	DefaultRequestTimeout       = 10 * time.Second
	DefaultReadyTimeout         = 2 * time.Second

	// MaxMaxBatch bounds Config.MaxBatch: a batch is validated and locked whole, in memory.
	MaxMaxBatch = 1000
	// MinTokenLen is the shortest bearer token accepted. A token is the only thing between
	// the network and the queue; `openssl rand -hex 32` makes a good one.
	MinTokenLen = 16
)

// DefaultQueues are the queues a request may name when Config.Queues is empty: the ones in
// the default PROXYQ_QUEUES ("critical=6,default=3,low=1").
var DefaultQueues = []string{"critical", "default", "low"}

// ErrNoTokens is returned (wrapped) by New, Config.Validate and LoadTokens when no bearer
// token is configured: the API never runs open.
var ErrNoTokens = errors.New("no API bearer token configured (set PROXYQ_API_TOKENS or PROXYQ_API_TOKENS_FILE)")

// Config configures a Server. Zero values of optional fields mean "use the default"; call
// WithDefaults to see the effective values. The environment mapping lives in cmd.
type Config struct {
	// EnqueueOptions are applied to every message this server enqueues, before the
	// request's own (queue, send_at, key), which win. cmd passes the producer settings from
	// the environment: tasks.MaxRetry (PROXYQ_MAX_RETRY) and tasks.Retention
	// (PROXYQ_RETENTION). Do not pass tasks.SendWithin: it would stamp a send_before that
	// differs on every retry, so a faithful retry of a keyed POST would answer 409.
	EnqueueOptions []tasks.Option

	// KnownAccount, when set, says whether workers have credentials for a message's
	// account_sid ("" is the default account); a message for another account is refused with
	// 422 instead of being archived by the worker. cmd sets it from PROXYQ_ACCOUNTS_FILE.
	KnownAccount func(accountSID string) bool

	// MaxBatch is the most messages one POST /v1/message-interactions:batch may carry.
	// Default 100, at most MaxMaxBatch.
	MaxBatch int

	// MaxBodyBytes limits every request body; a larger one is refused with 413 before it
	// is decoded. Default 1 MiB. Each message is additionally held to
	// tasks.MaxPayloadBytes (32 KiB) of payload JSON.
	MaxBodyBytes int64

	// Queues are the asynq queue names a request's "queue" may name. A message on a queue
	// no worker reads would never be sent, so cmd should pass the worker's PROXYQ_QUEUES
	// names. Default DefaultQueues. "default" is used when a request names none, so it must
	// be in the list.
	Queues []string

	// Callbacks serves Twilio Proxy's status callbacks at POST /v1/twilio/proxy/callbacks,
	// without the bearer tokens (Twilio cannot send them): it must check X-Twilio-Signature
	// itself, as the delivery package's handler does. nil: the route answers 404.
	Callbacks http.Handler

	// Receipts serves Twilio Conversations' onDeliveryUpdated webhooks at POST
	// /v1/twilio/conversations/receipts (delivery.ReceiptsPath), like Callbacks: public, the
	// handler checks X-Twilio-Signature (delivery.Service.ReceiptsHandler). nil: 404.
	Receipts http.Handler

	// ReadyCheck answers GET /readyz. Nil means a Redis round trip through the Inspector
	// (listing the queues). It runs with a ReadyTimeout deadline.
	ReadyCheck func(ctx context.Context) error

	// ReadyTimeout bounds ReadyCheck. Default 2s.
	ReadyTimeout time.Duration

	// RequestTimeout bounds the Redis work of one API request. Default 10s. Keep it below
	// the http.Server's WriteTimeout (NewHTTPServer uses 30s).
	RequestTimeout time.Duration

	// Tokens are the accepted bearer tokens; any of them grants access, so several can be
	// live during a rotation. Required: with none, New fails. Each must be at least
	// MinTokenLen characters of the RFC 6750 token alphabet (A-Z a-z 0-9 - . _ ~ + / and
	// trailing =). An entry "name:token" names its token (name: 1 to 32 of A-Z a-z 0-9 _ . -):
	// messages enqueued with it say they came through "http:<name>" (the console shows
	// "HTTP API (proxyq serve), token <name>"); an unnamed token's say "http". See LoadTokens.
	Tokens []string
}

// WithDefaults returns a copy of c with the defaults filled in for zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if len(c.Queues) == 0 {
		c.Queues = append([]string(nil), DefaultQueues...)
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// ConfigError names the Config field that broke a rule. Its message never contains a token.
type ConfigError struct {
	Field string
	Rule  string
	Err   error // ErrNoTokens for a missing token, else nil
}

func (e *ConfigError) Error() string { return "httpapi: " + e.Field + " " + e.Rule }
func (e *ConfigError) Unwrap() error { return e.Err }

func invalid(field, rule string, args ...any) error {
	return &ConfigError{Field: field, Rule: fmt.Sprintf(rule, args...)}
}

// Validate reports the first rule c breaks as a *ConfigError naming the field; a missing
// token also matches errors.Is(err, ErrNoTokens). Zero values of defaultable fields are
// accepted, so Validate works before or after WithDefaults.
func (c Config) Validate() error {
	if len(c.Tokens) == 0 {
		return &ConfigError{Field: "Tokens", Rule: "must hold at least one token", Err: ErrNoTokens}
	}
	for i, tok := range c.Tokens {
		if rule := tokenEntryProblem(tok); rule != "" {
			// The index, never the value: error messages end up in logs.
			return invalid(fmt.Sprintf("Tokens[%d]", i), "%s", rule)
		}
	}
	switch {
	case c.MaxBatch < 0 || c.MaxBatch > MaxMaxBatch:
		return invalid("MaxBatch", "must be between 1 and %d (0 means %d), got %d", MaxMaxBatch, DefaultMaxBatch, c.MaxBatch)
	case c.MaxBodyBytes < 0:
		return invalid("MaxBodyBytes", "must not be negative (0 means %d)", DefaultMaxBodyBytes)
	case c.MaxBodyBytes > 0 && c.MaxBodyBytes < 1024:
		return invalid("MaxBodyBytes", "must be at least 1024 bytes, got %d", c.MaxBodyBytes)
	case c.ReadyTimeout < 0:
		return invalid("ReadyTimeout", "must not be negative (0 means %s)", DefaultReadyTimeout)
	case c.RequestTimeout < 0:
		return invalid("RequestTimeout", "must not be negative (0 means %s)", DefaultRequestTimeout)
	}
	if len(c.Queues) > 0 {
		seen := make(map[string]bool, len(c.Queues))
		for i, q := range c.Queues {
			switch {
			case strings.TrimSpace(q) == "" || q != strings.TrimSpace(q):
				return invalid(fmt.Sprintf("Queues[%d]", i), "must be a non-empty name without surrounding spaces")
			case seen[q]:
				return invalid(fmt.Sprintf("Queues[%d]", i), "repeats queue %q", q)
			}
			seen[q] = true
		}
		if !seen["default"] {
			return invalid("Queues", "must include %q, the queue used when a request names none", "default")
		}
	}
	return nil
}

// tokenProblem returns the rule tok breaks, or "".
func tokenProblem(tok string) string {
	if len(tok) < MinTokenLen {
		return fmt.Sprintf("must be at least %d characters long", MinTokenLen)
	}
	if !isB64Token(tok) {
		return "may contain only A-Z a-z 0-9 - . _ ~ + / and trailing = (RFC 6750 b64token)"
	}
	return ""
}

// isB64Token reports whether s is RFC 6750's b64token, the only thing a Bearer credential
// may be: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// LoadTokens reads bearer tokens from an environment variable's value and from a file (either
// may be empty) and returns them all, de-duplicated, in order. Entries are separated by commas
// or newlines; surrounding spaces are trimmed, blank entries skipped, and '#' starts a comment
// that runs to the end of the line ('#' cannot occur in a token). A file mounted from a
// Kubernetes Secret, one token per line, works as is.
//
// An entry is a token, or "name:token" to name it: the text before the entry's first ':' is the
// name (1 to 32 of A-Z a-z 0-9 _ . -), the rest is the token (':' cannot occur in a token). A
// named token's messages record it ("http:<name>"); an unnamed one's record "http". The same
// token listed twice under different names is an error.
//
// It returns an error naming the source ("PROXYQ_API_TOKENS", the file path and line) for an
// unreadable file or a malformed token (never quoting the token), or one wrapping ErrNoTokens
// when neither source holds a token.
func LoadTokens(envValue, filePath string) ([]string, error) {
	var tokens []string
	seen := map[string]string{} // token → its name
	add := func(source, text string) error {
		for lineNo, line := range strings.Split(text, "\n") {
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			for _, tok := range strings.Split(line, ",") {
				tok = strings.TrimSpace(tok)
				if tok == "" {
					continue
				}
				if rule := tokenEntryProblem(tok); rule != "" {
					return fmt.Errorf("httpapi: bearer token in %s line %d: %s", source, lineNo+1, rule)
				}
				name, secret := splitTokenEntry(tok)
				if prev, ok := seen[secret]; ok {
					if prev != name {
						return fmt.Errorf("httpapi: bearer token in %s line %d: the same token is listed before under another name", source, lineNo+1)
					}
					continue
				}
				seen[secret] = name
				tokens = append(tokens, tok)
			}
		}
		return nil
	}
	if err := add("PROXYQ_API_TOKENS", envValue); err != nil {
		return nil, err
	}
	if filePath != "" {
		data, err := os.ReadFile(filePath)
		if err != nil {
			return nil, fmt.Errorf("httpapi: read bearer tokens file %s: %w", filePath, err)
		}
		if err := add(filePath, string(data)); err != nil {
			return nil, err
		}
	}
	if len(tokens) == 0 {
		src := "PROXYQ_API_TOKENS"
		if filePath != "" {
			src += " and " + filePath
		}
		return nil, fmt.Errorf("httpapi: %s hold no token: %w", src, ErrNoTokens)
	}
	return tokens, nil
}
