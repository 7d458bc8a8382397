package worker

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Config is the worker's policy. The zero value of every field means "use the default" (see
// WithDefaults); Validate says precisely what is wrong with a value that was set. cmd/proxyq maps
// each field to an environment variable, listed in docs/configuration.md.
type Config struct {
	// BackoffBase and BackoffMax shape the retry delay after a failed attempt: exponential from
	// BackoffBase, full jitter, capped at BackoffMax. Defaults 1s and 5m. A Retry-After from
	// Twilio overrides them.
	BackoffBase time.Duration
	BackoffMax  time.Duration

	// Concurrency is how many messages one process handles at once. Default 50: the work is
	// waiting on the network, not the CPU.
	Concurrency int

	// DequeueLoops is how many asynq servers this process runs, sharing Concurrency between
	// them. asynq takes messages off Redis one at a time per server, each a round trip, so at
	// loopback speeds one server's dequeue loop, not the handlers, bounds a busy process
	// (≈ 3,000 messages/s on two cores). Default 2 (1 when Concurrency is 1). The first server
	// polls an idle queue every PollInterval; the others every DequeueLoopIdlePoll, so that
	// they add throughput under a backlog and next to nothing to an idle fleet's Redis load.
	DequeueLoops int

	// DelayedCheckInterval is how often scheduled and retrying messages are moved back to their
	// queue. Default 1s (asynq's own default of 5s would stretch a 1 s Retry-After to 5 s).
	DelayedCheckInterval time.Duration

	// HTTPTimeout bounds one request to Twilio. Default 15s. It must match the client's: leases
	// and the shutdown timeout are derived from it.
	HTTPTimeout time.Duration

	// LedgerTTL is how long the claim of a recorded interaction is kept (the send ledger itself
	// lives in asynq's task hash, exactly as long as the task). It is reconciliation's horizon:
	// a message whose last request started longer ago than this is not reconciled (it is
	// archived as outcome unknown), because another message's claim on a look-alike interaction
	// may be gone. Default SendWithin+48h, at least 72h (the default retention of completed
	// tasks), so a claim lives about as long as the completed task that made it.
	LedgerTTL time.Duration

	// LimiterMaxWait bounds how long one run waits in-process for an account slot before it
	// hands the message back to the queue (not counted as a failed attempt). Default 2s. While
	// per-Service limits are on it is at most their window (ServiceLimits.Window, 5s): the run
	// waits holding its create's Service slot, and a slot the window has passed by the time
	// the run comes back was counted for a request that was not made, and must be taken again.
	LimiterMaxWait time.Duration

	// MaxInFlight caps concurrent requests to Twilio per account across every worker process
	// (0: no cap). RateLimit caps requests per second per account across every process (0: no
	// cap), allowing bursts of RateBurst (default: RateLimit rounded up).
	MaxInFlight int
	RateLimit   float64
	RateBurst   int

	// LaneRecheck is how often a message waiting for its turn in an ordered lane checks the
	// lane on its own (the next in line; those further back check 12× less often). It is woken
	// at once when the message ahead ends; checks are what skip a head that was deleted or lost.
	// Default 5s.
	LaneRecheck time.Duration

	// PollInterval is how long an idle worker waits before looking for new messages again.
	// Default 20ms, so a new message is picked up within tens of milliseconds (asynq's default
	// is 1s); each poll is one cheap Redis script per queue.
	PollInterval time.Duration

	// Queues maps queue names to priorities (weights). Default critical=6, default=3, low=1.
	Queues map[string]int
	// StrictPriority drains higher-priority queues first instead of weighting them.
	StrictPriority bool

	// ReconcileMaxPages and ReconcilePageSize bound how much of a participant's interaction list
	// reconciliation reads (defaults 10 pages of 1000). ReconcileSettle is how long after an
	// ambiguous request started the worker waits before it concludes, from the list, that the
	// request created nothing (default 60s). ReconcileSkew is the tolerance between our clock and
	// Twilio's date_created, which has one-second precision (default 60s).
	ReconcileMaxPages int
	ReconcilePageSize int
	ReconcileSettle   time.Duration
	ReconcileSkew     time.Duration

	// RedisWaitReplicas, when above 0, makes every send wait, after the ledger marks it in flight
	// and before the POST, until that many Redis replicas have the mark (WAIT), so that a failover
	// to a replica cannot forget a send that went out (see replication.go). RedisWaitTimeout
	// bounds the wait (default 500ms, at most 2s: below the Redis client's 3s read timeout); a
	// send whose mark is not acknowledged in time is not made now but retried. Default 0: no wait.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration

	// SendWithin is the deadline of a message whose payload has no send_before, counted from the
	// first time a worker saw it. Default 1h: a message not sent by then is archived as expired,
	// never sent hours late.
	SendWithin time.Duration

	// ServiceLimits are the per-Service limits (Twilio's 30/s per endpoint over 5 s), on by
	// default; see servicelimits.go.
	ServiceLimits ServiceLimits

	// ShutdownTimeout is how long a stopping worker lets in-flight messages finish. Default
	// 2×HTTPTimeout+15s (45s), so a request that has started always ends and is recorded.
	ShutdownTimeout time.Duration
}

// Defaults, documented on the Config fields.
const (
	DefaultBackoffBase          = time.Second
	DefaultBackoffMax           = 5 * time.Minute
	DefaultConcurrency          = 50
	DefaultDequeueLoops         = 2
	DefaultDelayedCheckInterval = time.Second
	DefaultHTTPTimeout          = 15 * time.Second
	DefaultLedgerTTL            = 72 * time.Hour
	DefaultLaneRecheck          = 5 * time.Second
	DefaultLimiterMaxWait       = 2 * time.Second
	DefaultPollInterval         = 20 * time.Millisecond
	DefaultReconcileMaxPages    = 10
	DefaultReconcilePageSize    = 1000
	DefaultReconcileSettle      = 60 * time.Second
	DefaultReconcileSkew        = 60 * time.Second
	DefaultSendWithin           = time.Hour
	DefaultRedisWaitTimeout     = 500 * time.Millisecond
)

// DequeueLoopIdlePoll is the idle poll of every dequeue loop after the first.
const DequeueLoopIdlePoll = time.Second

// DefaultQueues returns the default queue priorities.
func DefaultQueues() map[string]int { return map[string]int{"critical": 6, "default": 3, "low": 1} }

// WithDefaults returns a copy of c with every unset field given its default.
func (c Config) WithDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.BackoffBase, DefaultBackoffBase)
	set(&c.BackoffMax, DefaultBackoffMax)
	set(&c.DelayedCheckInterval, DefaultDelayedCheckInterval)
	set(&c.HTTPTimeout, DefaultHTTPTimeout)
	set(&c.LimiterMaxWait, DefaultLimiterMaxWait)
	set(&c.PollInterval, DefaultPollInterval)
	set(&c.LaneRecheck, DefaultLaneRecheck)
	set(&c.ReconcileSettle, DefaultReconcileSettle)
	set(&c.ReconcileSkew, DefaultReconcileSkew)
	set(&c.SendWithin, DefaultSendWithin)
	set(&c.RedisWaitTimeout, DefaultRedisWaitTimeout)
	set(&c.ShutdownTimeout, 2*c.HTTPTimeout+15*time.Second)
	set(&c.LedgerTTL, max(DefaultLedgerTTL, c.SendWithin+48*time.Hour))
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DequeueLoops == 0 {
		c.DequeueLoops = min(DefaultDequeueLoops, c.Concurrency)
	}
	if c.ReconcileMaxPages == 0 {
		c.ReconcileMaxPages = DefaultReconcileMaxPages
	}
	if c.ReconcilePageSize == 0 {
		c.ReconcilePageSize = DefaultReconcilePageSize
	}
	if c.RateBurst == 0 && c.RateLimit > 0 {
		c.RateBurst = int(c.RateLimit + 0.999)
	}
	if len(c.Queues) == 0 {
		c.Queues = DefaultQueues()
	}
	return c
}

var queueNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// Validate reports the first field whose value cannot work, naming the field and the rule.
// Call it on the result of WithDefaults.
func (c Config) Validate() error {
	type check struct {
		bad bool
		msg string
	}
	serviceWindow := c.ServiceLimits.WithDefaults().Window
	checks := []check{
		{c.Concurrency < 1 || c.Concurrency > 10000, fmt.Sprintf("Concurrency must be between 1 and 10000, got %d", c.Concurrency)},
		{c.DequeueLoops < 1 || c.DequeueLoops > 16 || c.DequeueLoops > c.Concurrency, fmt.Sprintf("DequeueLoops must be between 1 and 16 and at most Concurrency (%d), got %d", c.Concurrency, c.DequeueLoops)},
		{c.HTTPTimeout < time.Second, fmt.Sprintf("HTTPTimeout must be at least 1s, got %v", c.HTTPTimeout)},
		{c.ShutdownTimeout < c.HTTPTimeout+5*time.Second, fmt.Sprintf("ShutdownTimeout must be at least HTTPTimeout+5s (%v) so an in-flight request can finish and be recorded, got %v", c.HTTPTimeout+5*time.Second, c.ShutdownTimeout)},
		{c.PollInterval < time.Millisecond || c.PollInterval > 10*time.Second, fmt.Sprintf("PollInterval must be between 1ms and 10s, got %v", c.PollInterval)},
		{c.LaneRecheck < 10*time.Millisecond || c.LaneRecheck > 10*time.Minute, fmt.Sprintf("LaneRecheck must be between 10ms and 10m, got %v", c.LaneRecheck)},
		{c.DelayedCheckInterval < 10*time.Millisecond, fmt.Sprintf("DelayedCheckInterval must be at least 10ms, got %v", c.DelayedCheckInterval)},
		{c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase, fmt.Sprintf("BackoffBase must be positive and at most BackoffMax, got %v and %v", c.BackoffBase, c.BackoffMax)},
		{c.SendWithin < time.Second, fmt.Sprintf("SendWithin must be at least 1s, got %v", c.SendWithin)},
		{c.LedgerTTL < c.SendWithin+24*time.Hour, fmt.Sprintf("LedgerTTL must be at least SendWithin+24h (%v), got %v", c.SendWithin+24*time.Hour, c.LedgerTTL)},
		{c.LimiterMaxWait < 0, fmt.Sprintf("LimiterMaxWait must not be negative, got %v", c.LimiterMaxWait)},
		{!c.ServiceLimits.Off && c.LimiterMaxWait > serviceWindow, fmt.Sprintf("LimiterMaxWait must be at most the per-Service window ServiceWindow (%v) while per-Service limits are on: a run waits for its account slot holding its Service slot, which the window must still count when the run comes back; got %v", serviceWindow, c.LimiterMaxWait)},
		{c.MaxInFlight < 0, fmt.Sprintf("MaxInFlight must not be negative, got %d", c.MaxInFlight)},
		{!(c.RateLimit >= 0) || math.IsInf(c.RateLimit, 0), fmt.Sprintf("RateLimit must be a finite number, 0 or more, got %v", c.RateLimit)},
		{c.RateBurst < 0, fmt.Sprintf("RateBurst must not be negative, got %d", c.RateBurst)},
		{c.ReconcileMaxPages < 1 || c.ReconcileMaxPages > 100, fmt.Sprintf("ReconcileMaxPages must be between 1 and 100, got %d", c.ReconcileMaxPages)},
		{c.ReconcilePageSize < 1 || c.ReconcilePageSize > 1000, fmt.Sprintf("ReconcilePageSize must be between 1 and 1000, got %d", c.ReconcilePageSize)},
		{c.ReconcileSettle < 0, fmt.Sprintf("ReconcileSettle must not be negative, got %v", c.ReconcileSettle)},
		{c.RedisWaitReplicas < 0 || c.RedisWaitReplicas > 100, fmt.Sprintf("RedisWaitReplicas must be between 0 and 100, got %d", c.RedisWaitReplicas)},
		{c.RedisWaitReplicas > 0 && (c.RedisWaitTimeout < time.Millisecond || c.RedisWaitTimeout > 2*time.Second || c.RedisWaitTimeout >= c.HTTPTimeout/2), fmt.Sprintf("RedisWaitTimeout must be between 1ms and 2s and below HTTPTimeout/2, got %v", c.RedisWaitTimeout)},
		{c.ReconcileSkew < time.Second, fmt.Sprintf("ReconcileSkew must be at least 1s (Twilio's timestamps have one-second precision), got %v", c.ReconcileSkew)},
	}
	for _, ch := range checks {
		if ch.bad {
			return fmt.Errorf("worker config: %s", ch.msg)
		}
	}
	for name, prio := range c.Queues {
		if !queueNamePattern.MatchString(name) {
			return fmt.Errorf("worker config: Queues: queue name %q must match %s", name, queueNamePattern)
		}
		if prio < 1 {
			return fmt.Errorf("worker config: Queues: priority of %q must be at least 1, got %d", name, prio)
		}
	}
	return nil
}

// ParseQueues parses "critical=6,default=3,low=1". A name without "=N" gets priority 1.
func ParseQueues(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, prio, hasPrio := strings.Cut(part, "=")
		n := 1
		if hasPrio {
			if _, err := fmt.Sscanf(prio, "%d", &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(prio) {
				return nil, fmt.Errorf("queue %q: priority %q is not a whole number", name, prio)
			}
		}
		name = strings.TrimSpace(name)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("queue %q is listed twice", name)
		}
		out[name] = n
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no queues listed (want e.g. critical=6,default=3,low=1)")
	}
	return out, nil
}
