package proxytest

import (
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Defaults applied by Config.WithDefaults.
const (
	// DefaultCreateStatus is the status of a successful create. Twilio's pages and the API
	// description of 2022-10 to 2024-06 say 201; the current description says 200.
	DefaultCreateStatus = http.StatusCreated
	// DefaultHangLimit bounds FaultHangAfterCreate when no client deadline or Close ends it first.
	DefaultHangLimit = 2 * time.Minute
	// DefaultListOrder is the order of list results.
	DefaultListOrder = ListOldestFirst
)

// ListOrder is the order in which list endpoints return interactions. Twilio does not
// document an order, so a client must not assume one; the default (oldest first) is the one
// that breaks code which assumes newest first.
type ListOrder string

// List orders.
const (
	// ListOldestFirst returns interactions in creation order.
	ListOldestFirst ListOrder = "oldest-first"
	// ListNewestFirst returns the most recently created interaction first.
	ListNewestFirst ListOrder = "newest-first"
	// ListShuffled returns a permutation fixed by Config.Seed and each interaction's SID,
	// stable across requests so that paging neither repeats nor skips items.
	ListShuffled ListOrder = "shuffled"
)

// Config configures a Fake. The zero value is valid: any well-formed Account SID or API key
// with a non-empty secret is accepted, creates answer 201, lists are oldest first, no latency,
// no concurrency limit, no logging.
type Config struct {
	// CreateStatus is the HTTP status of a successful create: 201 (default) or 200. Twilio has
	// documented both at different times; clients should accept any 2xx.
	CreateStatus int

	// Credentials maps a Basic-auth user (Account SID "AC…" or API key SID "SK…") to its
	// secret. Nil accepts any user matching ^(AC|SK)[0-9a-fA-F]{32}$ with a non-empty secret.
	// The user is the account key for per-account accounting (concurrency, Created records).
	Credentials map[string]string

	// HangLimit bounds FaultHangAfterCreate: after it the Fake answers 504 with a gateway's
	// HTML body, as a load balancer would. Default 2m. A client deadline or Close ends a hang
	// sooner.
	HangLimit time.Duration

	// Latency is added to every API request (not to /_proxytest) after authentication and
	// before handling. It counts towards the account's concurrency and ends early when the
	// client goes away or the Fake is closed. SetLatency changes it at run time.
	Latency time.Duration

	// ListOrder is the order of list results; default ListOldestFirst.
	ListOrder ListOrder

	// Logger receives one line per request (method, path, status, fault, account, request ID,
	// duration); never bodies, media URLs or secrets. Nil logs nothing.
	Logger *zap.Logger

	// MaxConcurrentPerAccount, when positive, is the number of requests one account may have
	// in progress at once; a request beyond it is answered 429 (code 20429) immediately, as
	// Twilio's concurrency limit does. Zero means no limit.
	MaxConcurrentPerAccount int

	// ServiceLimits enforces Twilio's per-Service, per-endpoint rate (429 with code 80621):
	// e.g. {Rate: 30} for the published 30/s over 5 s. Zero: no per-Service limit.
	ServiceLimits ServiceLimits

	// AccountConcurrency gives Basic-auth users (AC… or SK…) their own concurrency cap,
	// instead of MaxConcurrentPerAccount: accounts with different limits in one fake.
	AccountConcurrency map[string]int

	// Now is the clock used for date_created and date_updated. Default time.Now.
	Now func() time.Time

	// Callbacks simulates each message's delivery and POSTs signed status callbacks to a
	// Service callback_url (see CallbackConfig). The zero value sends none.
	Callbacks CallbackConfig

	// Seed seeds the random number generator behind SetFaultRates and ListShuffled, so a run
	// can be repeated. SIDs do not come from it: they are always unique.
	Seed int64
}

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.CreateStatus == 0 {
		c.CreateStatus = DefaultCreateStatus
	}
	if c.HangLimit == 0 {
		c.HangLimit = DefaultHangLimit
	}
	if c.ListOrder == "" {
		c.ListOrder = DefaultListOrder
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Callbacks = c.Callbacks.withDefaults()
	return c
}

// Validate reports the first invalid field of c, as a *ConfigError. Zero values are valid
// (they mean "default").
func (c Config) Validate() error {
	switch c.CreateStatus {
	case 0, http.StatusOK, http.StatusCreated:
	default:
		return &ConfigError{Field: "CreateStatus", Rule: fmt.Sprintf("must be 200 or 201, got %d", c.CreateStatus)}
	}
	for user, secret := range c.Credentials {
		if user == "" {
			return &ConfigError{Field: "Credentials", Rule: "user must not be empty"}
		}
		if secret == "" {
			return &ConfigError{Field: "Credentials", Rule: fmt.Sprintf("secret for user %q must not be empty", user)}
		}
	}
	if c.HangLimit < 0 {
		return &ConfigError{Field: "HangLimit", Rule: fmt.Sprintf("must not be negative, got %s", c.HangLimit)}
	}
	if c.Latency < 0 {
		return &ConfigError{Field: "Latency", Rule: fmt.Sprintf("must not be negative, got %s", c.Latency)}
	}
	switch c.ListOrder {
	case "", ListOldestFirst, ListNewestFirst, ListShuffled:
	default:
		return &ConfigError{Field: "ListOrder", Rule: fmt.Sprintf("must be %q, %q or %q, got %q",
			ListOldestFirst, ListNewestFirst, ListShuffled, c.ListOrder)}
	}
	if c.MaxConcurrentPerAccount < 0 {
		return &ConfigError{Field: "MaxConcurrentPerAccount", Rule: fmt.Sprintf("must not be negative, got %d", c.MaxConcurrentPerAccount)}
	}
	return c.Callbacks.validate()
}

// ConfigError names a Config field and the rule its value broke.
type ConfigError struct {
	Field string // Config field name, e.g. "CreateStatus"
	Rule  string // what the value must satisfy, with the value seen
}

func (e *ConfigError) Error() string {
	return "proxytest: Config." + e.Field + " " + e.Rule
}
