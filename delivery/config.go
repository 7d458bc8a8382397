package delivery

import (
	"fmt"
	"net/url"
	"time"
)

// Defaults, documented on the Config fields.
const (
	DefaultIndexTTL      = 72 * time.Hour
	DefaultPendingTTL    = time.Hour
	DefaultPendingMax    = 100000
	DefaultPollAfter     = 15 * time.Minute
	DefaultPollEvery     = 15 * time.Minute
	DefaultMaxAge        = 24 * time.Hour
	DefaultPollBatch     = 50
	DefaultSweepInterval = 30 * time.Second
	DefaultWebhookTimout = 10 * time.Second
	// pendingPerInteraction bounds the early callbacks kept for one interaction: a message has
	// about five statuses; repeats beyond that carry nothing new.
	pendingPerInteraction = 16
)

// Config is the delivery service's configuration. Zero durations mean their default.
type Config struct {
	// IndexTTL is how long the interaction → message index lives: at least the retention of a
	// completed message (PROXYQ_RETENTION, 72h by default): a callback can update a record only
	// while asynq keeps the task. Default 72h.
	IndexTTL time.Duration
	// PendingTTL is how long a callback for an interaction not recorded yet is kept, waiting for
	// the send to be recorded (by its POST's answer or by reconciliation). Default 1h.
	PendingTTL time.Duration
	// PendingMax bounds how many interactions may have pending callbacks at once; beyond it
	// new early callbacks are dropped (counted). Default 100000.
	PendingMax int

	// PollOff turns the polling fallback off.
	PollOff bool
	// PollAfter is how long after its send a message with no final status is first polled
	// (default 15m: callbacks normally answer within a minute, and Twilio asks for callbacks
	// rather than polling). PollEvery is the wait between two polls of one message (default
	// 15m). MaxAge is when polling gives up and records delivery-unknown (default 24h).
	PollAfter, PollEvery, MaxAge time.Duration
	// PollBatch bounds the messages one worker polls per pass (default 50); SweepInterval is
	// the time between passes (default 30s). At most PollBatch/SweepInterval fetches per
	// second per worker, each under the account's limits.
	PollBatch     int
	SweepInterval time.Duration

	// WebhookURL enables status webhooks to the application (PROXYQ_STATUS_WEBHOOK_URL).
	// WebhookSecret ("whsec_<base64>") signs them; it is needed where they are sent (the worker).
	WebhookURL     string
	WebhookSecret  string
	WebhookTimeout time.Duration // one POST; default 10s

	// AccountSID is the account of an interaction that does not name one (the worker's
	// TWILIO_ACCOUNT_SID): the Message fetch needs it in its path.
	AccountSID string
}

// WithDefaults returns c with unset fields given their defaults.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IndexTTL, DefaultIndexTTL)
	def(&c.PendingTTL, DefaultPendingTTL)
	def(&c.PollAfter, DefaultPollAfter)
	def(&c.PollEvery, DefaultPollEvery)
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.SweepInterval, DefaultSweepInterval)
	def(&c.WebhookTimeout, DefaultWebhookTimout)
	if c.PendingMax == 0 {
		c.PendingMax = DefaultPendingMax
	}
	if c.PollBatch == 0 {
		c.PollBatch = DefaultPollBatch
	}
	return c
}

// Validate names the first field that cannot work. Call it on the result of WithDefaults.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{"IndexTTL": c.IndexTTL, "PendingTTL": c.PendingTTL, "PollAfter": c.PollAfter,
		"PollEvery": c.PollEvery, "MaxAge": c.MaxAge, "SweepInterval": c.SweepInterval, "WebhookTimeout": c.WebhookTimeout} {
		if d < 0 {
			return fmt.Errorf("delivery config: %s=%v must not be negative", name, d)
		}
	}
	switch {
	case c.PendingMax < 0:
		return fmt.Errorf("delivery config: PendingMax=%d must not be negative", c.PendingMax)
	case c.PollBatch < 0:
		return fmt.Errorf("delivery config: PollBatch=%d must not be negative", c.PollBatch)
	case c.MaxAge < c.PollAfter:
		return fmt.Errorf("delivery config: MaxAge (%v) must not be shorter than PollAfter (%v)", c.MaxAge, c.PollAfter)
	case c.IndexTTL < c.MaxAge:
		return fmt.Errorf("delivery config: IndexTTL (%v) must not be shorter than MaxAge (%v)", c.IndexTTL, c.MaxAge)
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("delivery config: WebhookURL must be an absolute http(s) URL")
		}
		if u.User != nil {
			return fmt.Errorf("delivery config: WebhookURL must not contain credentials")
		}
	}
	if c.WebhookSecret != "" {
		if _, err := parseSecret(c.WebhookSecret); err != nil {
			return fmt.Errorf("delivery config: WebhookSecret: %w", err)
		}
	}
	return nil
}
