package worker

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient"
)

// Per-Service limits: Twilio's published Proxy limit, on by default.
//
// Twilio limits each Proxy Service to 30 requests per second per endpoint, judged on the
// average over a 5-second sliding window, so a burst of up to 150 passes and sustained excess
// is answered 429 with code 80621. The limit is per (account, Service, endpoint): creating
// message interactions and listing them (reconciliation, status polling) are separate budgets.
// Every worker process shares one budget through Redis.
//
// Algorithm: a sliding log with reservations, one Lua script per request or per batch of a
// busy process's requests (serviceslots.go). Each (account, Service, endpoint) has a sorted
// set of request times (Redis's clock, ms). A request is
// given the earliest time T, not before now and not before the last reservation (FIFO), at
// which the window ending at T holds fewer than limit = rate × window requests, and at
// least 1/BurstRate after the previous one. If T is within the caller's wait bound the
// script records T and the caller sleeps until T; otherwise nothing is recorded and the
// caller gets T-now as its retry time, goes back to the queue, and frees its worker slot
// for messages of other Services.
//
// Bursts: after a quiet spell a Service may send its whole window at once, at most BurstRate
// per second (default 150/s: Twilio's "bursts up to 150"); BurstRate = Rate paces requests
// evenly instead.
//
// Departure: the slot is reserved before the account's limits and the send ledger, and on
// some runs reconciliation, the ledger or a replica wait come between it and the POST (up to
// the HTTP timeout and more). A request that would leave more than 25 ms (lateTolerance)
// after its reserved time gives its reservation back and takes a new slot, in one script,
// just before the POST (Reservation.Departing); when none is due within the wait bound it is
// not sent now. So every create leaves within 25 ms of a reservation the window counts, which
// the margin absorbs. Moving the late reservation to its real departure instead would put it
// into windows that later reservations were already computed without, and once the window has
// passed it, the trimmed reservation would count in no window at all.
//
// Why not GCRA (go-redis/redis_rate, used for the account rate)? GCRA with rate r and
// burst b admits b + r·t requests in any span t: with r = 30/s and b = 150 that is 300 in a
// 5-second window, twice Twilio's limit; a GCRA that never exceeds 150 per 5 s must give up
// either the burst or a fifth of the rate. The sliding log is Twilio's own rule, so it allows
// both the burst and the full average. Its cost is one ZSET member per request in the window
// (150 by default, a few kB) and the same one round trip per request as redis_rate.
//
// Margin: requests do not reach Twilio at the instant they were admitted (the ledger write,
// the account limiter, network jitter), so a request admitted at the edge of one window could
// land in the next one at Twilio. The window enforced is Window + Margin (default 5.25 s):
// 150 per 5.25 s is 0.95 of the published rate, and arrival jitter up to the margin cannot
// put 151 requests into any 5-second window at Twilio.
//
// Adaptation: a 429 with code 80621 (or a 429 other than 20429) on a Service halves that
// Service's factor (at most once per DecreaseGap), which scales its limit; it recovers by
// 0.1 every RecoverEvery without one, exactly as the account factor does (the same Lua).
// 20429 slows the account, not the Service.
//
// Conversations: the same machinery, scoped by conversation. Twilio limits message create,
// update and delete (and participant operations) to 30 actions per second per conversation
// (Conversations changelog, 2020-03-31, "Increasing Actions Per Second for Conversations";
// the Conversations limits page). A scope whose key is a conversation SID (CH…) is limited to
// ConversationRate over ConversationWindow (default 30 per 1 s, plus the margin), paced
// evenly at that rate (a per-second limit leaves no room for a burst); its factor adapts on that conversation's 429s like a Service's. Keys and
// factors per conversation are Redis keys that expire (adaptiveTTL, the window) and a slot
// pool in this process that is dropped once idle; the factor gauge is not exported per
// conversation (unbounded label values), changes are logged instead.
//
// Keys (hash tag {svc:<account>:<service>} keeps one Service's keys in one Cluster slot):
//
//	proxyq:{svc:<account>:<KS>}:create    ZSET  reservations of creates (score = time, ms; those
//	                                            past the window trimmed once in 16, reserveScript)
//	proxyq:{svc:<account>:<KS>}:list      ZSET  reservations of list pages
//	proxyq:{svc:<account>:<KS>}:fetch     ZSET  reservations of fetches
//	proxyq:{svc:<account>:<KS>}:adaptive  HASH  factor (per mille), ref, dec

// Endpoint names one of Twilio's rate-limited endpoints of a Service.
type Endpoint string

// Endpoints with their own budgets.
const (
	EndpointCreate Endpoint = "create" // POST …/Participants/{KP}/MessageInteractions
	EndpointList   Endpoint = "list"   // GET  …/Participants/{KP}/MessageInteractions (each page)
	EndpointFetch  Endpoint = "fetch"  // GET  …/MessageInteractions/{KI} (status polling)
)

// Per-Service limit defaults (Twilio's published limits).
const (
	DefaultServiceRate    = 30.0
	DefaultServiceWindow  = 5 * time.Second
	DefaultServiceMargin  = 250 * time.Millisecond
	DefaultServiceMaxWait = 250 * time.Millisecond
)

// ServiceLimits configures the per-Service limiter. The zero value is Twilio's published
// limit for every Service; Off switches it off.
type ServiceLimits struct {
	// Off disables per-Service limits (e.g. when an upstream gateway already enforces them).
	Off bool
	// Rate is requests per second per (account, Service, endpoint), averaged over Window.
	// Default 30.
	Rate float64
	// Window is Twilio's averaging window. Default 5s. Rate × Window requests may go at once
	// after a quiet spell (150).
	Window time.Duration
	// Margin is added to the window enforced, to absorb the jitter between admission here
	// and arrival at Twilio. Default 250ms.
	Margin time.Duration
	// BurstRate is the momentary rate (requests per second) a Service may reach, for a
	// Service at Rate; Services with their own rate get it scaled. Default Rate × Window
	// (150/s: Twilio's "bursts up to 150"); Rate paces requests evenly, never bursting.
	BurstRate float64
	// Services maps a Service SID to its own rate (a raised limit agreed with Twilio), for
	// every account. An account's own overrides (ServiceRates) win over it.
	Services map[string]float64
	// MaxWait is how long one run may wait in-process for its Service's budget before the
	// message goes back to the queue (not a failure), freeing the worker for other Services.
	// Default 250ms: a worker waiting on one Service is a worker not sending for another.
	MaxWait time.Duration
	// RecoverEvery and DecreaseGap shape the Service's adaptive factor, as for accounts
	// (defaults 5s and 1s).
	RecoverEvery time.Duration
	DecreaseGap  time.Duration
	// ConversationRate is a conversation's message creates per second, averaged over
	// ConversationWindow: Twilio's 30 actions per second per conversation. Default 30.
	ConversationRate float64
	// ConversationWindow is the conversation limit's window. Default 1s. Requests are paced
	// evenly at ConversationRate (the burst rate is the window's worth per window).
	ConversationWindow time.Duration
}

// Conversation limit defaults (Twilio's published 30 actions per second per conversation).
const (
	DefaultConversationRate   = 30.0
	DefaultConversationWindow = time.Second
)

// isConversation reports whether a scope is a conversation (CH…) rather than a Proxy Service.
func isConversation(scope string) bool { return strings.HasPrefix(scope, "CH") }

// WithDefaults returns a copy of l with unset fields given their defaults.
func (l ServiceLimits) WithDefaults() ServiceLimits {
	if l.Rate == 0 {
		l.Rate = DefaultServiceRate
	}
	if l.Window == 0 {
		l.Window = DefaultServiceWindow
	}
	if l.Margin == 0 {
		l.Margin = DefaultServiceMargin
	}
	if l.BurstRate == 0 {
		l.BurstRate = l.Rate * l.Window.Seconds()
	}
	if l.MaxWait == 0 {
		l.MaxWait = DefaultServiceMaxWait
	}
	if l.RecoverEvery == 0 {
		l.RecoverEvery = DefaultRecoverEvery
	}
	if l.DecreaseGap == 0 {
		l.DecreaseGap = DefaultDecreaseGap
	}
	if l.ConversationRate == 0 {
		l.ConversationRate = DefaultConversationRate
	}
	if l.ConversationWindow == 0 {
		l.ConversationWindow = DefaultConversationWindow
	}
	return l
}

// Validate reports the first field whose value cannot work. Call it on the result of WithDefaults.
func (l ServiceLimits) Validate() error {
	if l.Off {
		return nil
	}
	switch {
	case !(l.Rate > 0) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("service limits: ServiceRate must be a positive number, got %v", l.Rate)
	case l.Window < time.Second:
		return fmt.Errorf("service limits: ServiceWindow must be at least 1s, got %v", l.Window)
	case l.Rate*l.Window.Seconds() < 1:
		return fmt.Errorf("service limits: ServiceRate × ServiceWindow must allow at least one request, got %v × %v", l.Rate, l.Window)
	case l.Margin < 0 || l.Margin > l.Window:
		return fmt.Errorf("service limits: ServiceMargin must be between 0 and the window (%v), got %v", l.Window, l.Margin)
	case l.BurstRate < l.Rate || l.BurstRate > l.Rate*l.Window.Seconds():
		return fmt.Errorf("service limits: ServiceBurst must be between the rate (%v) and rate × window (%v), got %v", l.Rate, l.Rate*l.Window.Seconds(), l.BurstRate)
	case l.MaxWait < 0:
		return fmt.Errorf("service limits: ServiceMaxWait must not be negative, got %v", l.MaxWait)
	case !(l.ConversationRate > 0) || math.IsInf(l.ConversationRate, 0):
		return fmt.Errorf("service limits: ConversationRate must be a positive number, got %v", l.ConversationRate)
	case l.ConversationWindow < 100*time.Millisecond || l.Margin > l.ConversationWindow:
		return fmt.Errorf("service limits: ConversationWindow must be at least 100ms and the margin (%v), got %v", l.Margin, l.ConversationWindow)
	case l.ConversationRate*l.ConversationWindow.Seconds() < 1:
		return fmt.Errorf("service limits: ConversationRate × ConversationWindow must allow at least one request, got %v × %v", l.ConversationRate, l.ConversationWindow)
	}
	for ks, r := range l.Services {
		if err := checkServiceRate(ks, r); err != nil {
			return fmt.Errorf("service limits: ServiceOverrides: %w", err)
		}
	}
	return nil
}

func checkServiceRate(ks string, r float64) error {
	if !proxyclient.ValidSID("KS", ks) {
		return fmt.Errorf("%q is not a Service SID (^KS[0-9a-fA-F]{32}$)", ks)
	}
	if !(r > 0) || math.IsInf(r, 0) {
		return fmt.Errorf("rate of %s must be a positive number, got %v", ks, r)
	}
	return nil
}

// ParseServiceRates parses "KS…=60,KS…=100" (requests per second per Service).
func ParseServiceRates(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ks, rate, ok := strings.Cut(part, "=")
		ks = strings.TrimSpace(ks)
		if !ok {
			return nil, fmt.Errorf("%q: want KS…=rate", part)
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(rate), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: rate %q is not a number", part, rate)
		}
		if err := checkServiceRate(ks, r); err != nil {
			return nil, err
		}
		if _, dup := out[ks]; dup {
			return nil, fmt.Errorf("%s is listed twice", ks)
		}
		out[ks] = r
	}
	return out, nil
}

// ServiceRates gives an account's own per-Service rates (the accounts file); ok is false when
// the account sets none for that Service.
type ServiceRates interface {
	ServiceRate(account, service string) (rate float64, ok bool)
}

// ServiceLimiter enforces per-Service limits through Redis. A nil *ServiceLimiter (limits
// off) grants everything. Safe for concurrent use.
type ServiceLimiter struct {
	rdb    redis.UniversalClient
	lim    ServiceLimits
	rates  ServiceRates
	log    *zap.Logger
	gauge  *prometheus.GaugeVec
	unused prometheus.Counter

	mu      sync.Mutex
	factors map[string]int64     // account/service → last factor seen (per mille)
	pools   map[string]*slotPool // Service endpoint key → slots reserved ahead (serviceslots.go)
}

// NewServiceLimiter returns the limiter, or nil when lim.Off. rates (the accounts file) and
// reg may be nil.
func NewServiceLimiter(rdb redis.UniversalClient, lim ServiceLimits, rates ServiceRates, reg prometheus.Registerer, log *zap.Logger) (*ServiceLimiter, error) {
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	if lim.Off {
		return nil, nil
	}
	if log == nil {
		log = zap.NewNop()
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "proxyq_service_limit_factor",
		Help: "Adaptive share (0..1] of a Proxy Service's rate limit in force; lowered by 429/80621 for that Service, restored gradually.",
	}, []string{"account", "service"})
	unused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "proxyq_service_slots_unused_total",
		Help: "Per-Service slots this process reserved ahead of demand and did not use in time (they still count in the Service's window).",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{g, unused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("service limiter metrics: %w", err)
			}
		}
	}
	return &ServiceLimiter{rdb: rdb, lim: lim, rates: rates, log: log, gauge: g, unused: unused,
		factors: map[string]int64{}, pools: map[string]*slotPool{}}, nil
}

// MaxWait is the configured in-process wait bound (0 when limits are off).
func (l *ServiceLimiter) MaxWait() time.Duration {
	if l == nil {
		return 0
	}
	return l.lim.MaxWait
}

// RateFor is the rate in force for (account, service) before adaptation: the account's own
// override, else the global per-Service override, else the default.
func (l *ServiceLimiter) RateFor(account, service string) float64 {
	if isConversation(service) {
		return l.lim.ConversationRate
	}
	if l.rates != nil {
		if r, ok := l.rates.ServiceRate(account, service); ok {
			return r
		}
	}
	if r, ok := l.lim.Services[service]; ok {
		return r
	}
	return l.lim.Rate
}

// trimEvery: reserveScript trims a window's departed reservations once its count crosses a
// multiple of it. Small, so that a quiet Service's set stays a few hundred bytes (a listpack);
// large enough that trimming is one reservation's command in 16.
const trimEvery = "16"

func serviceTag(account, service string) string {
	return "proxyq:{svc:" + account + ":" + service + "}:"
}

// reserveScript: KEYS[1] the endpoint's ZSET, KEYS[2] the Service's adaptive hash.
// ARGV[1] limit per window at factor 1, ARGV[2] recovery step ms, ARGV[3] window ms (margin
// included), ARGV[4] max wait ms, ARGV[5] member prefix, ARGV[6] adaptive TTL ms, ARGV[7] least
// gap between two requests at factor 1, µs (so ARGV[7]/factor is the gap in ms), ARGV[8] how
// many consecutive requests to reserve (a batch; members are the prefix and 1…count), ARGV[9]
// a reservation to give back first (a late one taken again; "" or absent for none).
// Returns {reserved count, wait ms of the first (when none was reserved), factor, factor before
// recovery or -1, Redis's now ms, reserved time ms of each}.
//
// The batch's j-th request is placed as a lone request would be after the j-1 before it; it
// needs the reservation `limit` places back, which is either in the window already (one ZRANGE
// fetches every such one the batch needs) or one of the batch's own. The batch stops at the
// first request that would wait longer than the bound.
//
// Reservations that have left the window are trimmed only when the set's count crosses a
// multiple of trimEvery, not on every call: they change no answer. The reservation `limit`
// places before a request is the same entry whether older ones are kept or not, and one that
// has left the window delays nothing, as a missing one would not; the newest entry, when it
// has left the window, is not taken as the last request (the gap is measured from requests
// in the window, as when it was trimmed). A reservation then costs one command less 15 times
// in 16, and a window holds at most trimEvery + the batch more entries than when trimmed.
var reserveScript = redis.NewScript(luaNow + `local ttl = tonumber(ARGV[6])` + luaRecover + `
local limit = math.max(1, math.floor(tonumber(ARGV[1]) * f / 1000))
local win = tonumber(ARGV[3])
local maxwait = tonumber(ARGV[4])
local gap = tonumber(ARGV[7]) / f
local want = tonumber(ARGV[8])
if ARGV[9] and ARGV[9] ~= '' then redis.call('ZREM', KEYS[1], ARGV[9]) end
local n = redis.call('ZCARD', KEYS[1])
if math.floor((n + want) / ` + trimEvery + `) > math.floor(n / ` + trimEvery + `) then
  n = n - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
end
local last = nil
if n > 0 then
  last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  if last <= now - win then last = nil end
end
local back = {}
local first = n - limit
if first + want > 0 and first < n then
  local got = redis.call('ZRANGE', KEYS[1], math.max(first, 0), math.min(first + want - 1, n - 1), 'WITHSCORES')
  for i = 2, #got, 2 do back[#back + 1] = tonumber(got[i]) end
end
local times, add = {}, {}
local wait0 = 0
for j = 0, want - 1 do
  local at = now
  if last then at = math.max(at, last + gap) end
  local k = first + j
  if k >= 0 then
    local kth
    if k < n then kth = back[k - math.max(first, 0) + 1] else kth = times[k - n + 1] end
    at = math.max(at, kth + win)
  end
  local wait = math.ceil(at - now)
  if j == 0 then wait0 = wait end
  if wait > maxwait then break end
  times[#times + 1] = at
  add[#add + 1] = at
  add[#add + 1] = ARGV[5] .. (j + 1)
  last = at
end
local out = {#times, wait0, f, prev, now}
if #times == 0 then return out end
redis.call('ZADD', KEYS[1], unpack(add))
redis.call('PEXPIRE', KEYS[1], math.ceil(times[#times] - now) + win + 1000)
for _, at in ipairs(times) do out[#out + 1] = math.floor(at) end
return out
`)

// Acquire reserves one request on (account, service, endpoint) and sleeps until its time,
// waiting at most maxWait (never past ctx). When the budget allows no request within
// maxWait it returns a *LimitedError whose RetryIn is when one will be allowed; nothing is
// reserved then. A nil limiter grants at once.
func (l *ServiceLimiter) Acquire(ctx context.Context, account, service string, ep Endpoint, maxWait time.Duration) error {
	_, err := l.Reserve(ctx, account, service, ep, maxWait)
	return err
}

// lateTolerance is how late a request may leave after its reserved time before Departing takes
// a new slot for it: below it the margin absorbs the difference.
const lateTolerance = 25 * time.Millisecond

// reserveTimeout bounds one reservation's round trip to Redis.
const reserveTimeout = 2 * time.Second

// Reservation is a request's place in its Service's window.
type Reservation struct {
	l                *ServiceLimiter
	account, service string
	ep               Endpoint
	key              string
	member           string
	atMs             int64     // reserved time, Redis clock (ms)
	slot             time.Time // the same instant on this process's clock
}

func (l *ServiceLimiter) reservation(account, service string, ep Endpoint, s reservedSlot) *Reservation {
	return &Reservation{l: l, account: account, service: service, ep: ep, key: serviceTag(account, service) + string(ep),
		member: s.member, atMs: s.atMs, slot: s.local}
}

// Departing is called just before the request leaves. A reservation whose time is at most
// lateTolerance ago is what the request leaves under. A later one no longer says when the
// request reaches Twilio (the run waited for its account, reconciled, waited for the ledger
// or replicas), and once the window has passed it, it counts in no window: it is given back
// and a new slot taken in the same script, waiting at most maxWait for it. It returns the
// reservation to leave under; or a *LimitedError when no slot is due within maxWait (the late
// one is given back all the same: nothing is to be sent now), ctx's error, or a Redis error.
// Nil-safe: a nil reservation (limits off) departs as it is.
func (r *Reservation) Departing(ctx context.Context, maxWait time.Duration) (*Reservation, error) {
	if r == nil || time.Since(r.slot) <= lateTolerance {
		return r, nil
	}
	l := r.l
	slots, err := l.runReserve(ctx, r.account, r.service, r.ep, max(maxWait, 0), 1, r.member)
	if err != nil {
		return nil, err
	}
	return l.await(ctx, l.reservation(r.account, r.service, r.ep, slots[0]))
}

// Reserve is Acquire returning the reservation, for Departing. It hands out a slot this process
// reserved ahead when one is due within maxWait (serviceslots.go); otherwise it reserves, in one
// script, this request's slot and as many more as this process's demand will use within
// batchHorizon, and as many as other requests are waiting for.
func (l *ServiceLimiter) Reserve(ctx context.Context, account, service string, ep Endpoint, maxWait time.Duration) (*Reservation, error) {
	if l == nil {
		return nil, nil
	}
	tag := serviceTag(account, service)
	key := tag + string(ep)
	pool := l.pool(key)
	maxWait = max(maxWait, 0)
	pool.called(time.Now())
	for {
		s, fill, wait := pool.take(time.Now(), maxWait)
		switch {
		case s != nil:
			return l.await(ctx, l.reservation(account, service, ep, *s))
		case wait != nil:
			select { // another request's batch is being reserved: it reserves for us too
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		rsv, err := l.reserveBatch(ctx, account, service, ep, maxWait, pool, fill)
		if err != nil || rsv != nil {
			return rsv, err
		}
	}
}

// reserveBatch runs reserveScript for count slots (fill), keeps all but the first in the pool and
// waits for the first. It returns nil, nil when a concurrent caller should look at the pool again.
func (l *ServiceLimiter) reserveBatch(ctx context.Context, account, service string, ep Endpoint, maxWait time.Duration, pool *slotPool, count int) (*Reservation, error) {
	slots, err := l.runReserve(ctx, account, service, ep, maxWait, count, "")
	if err != nil {
		pool.filled(nil)
		return nil, err
	}
	pool.filled(slots[1:])
	return l.await(ctx, l.reservation(account, service, ep, slots[0]))
}

// runReserve runs reserveScript for up to count consecutive slots of (account, scope, ep),
// after giving back the reservation member drop ("" for none). It returns at least one slot;
// a *LimitedError when the first is not due within maxWait (nothing reserved); ctx's error; or
// a Redis error.
func (l *ServiceLimiter) runReserve(ctx context.Context, account, service string, ep Endpoint, maxWait time.Duration, count int, drop string) ([]reservedSlot, error) {
	// The least gap between two requests is 1/burst (see shape).
	rate, window, burst := l.shape(account, service)
	limit := int64(math.Max(1, math.Floor(rate*window.Seconds())))
	gapMicros := int64(float64(time.Second/time.Microsecond) / burst)
	count = max(1, min(count, int(limit/10)))
	tag := serviceTag(account, service)
	key := tag + string(ep)
	prefix := randomSuffix() + randomSuffix() + "-"
	// Bounded on its own: with Redis down, go-redis would redial for many seconds, and a run
	// stuck here outlives asynq's lease on the message (which then waits for asynq's recoverer).
	rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
	defer cancel()
	res, err := reserveScript.Run(rctx, l.rdb, []string{key, tag + "adaptive"},
		limit, l.lim.RecoverEvery.Milliseconds(), (window + l.lim.Margin).Milliseconds(),
		maxWait.Milliseconds(), prefix, adaptiveTTL.Milliseconds(), gapMicros, count, drop).Int64Slice()
	returned := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("service limiter: %w", err)
	}
	l.observe(account, service, res[2], res[3], "recovered: no 429 for a while")
	if res[0] == 0 {
		wait := time.Duration(res[1]) * time.Millisecond
		return nil, &LimitedError{RetryIn: max(wait, time.Millisecond), Reason: "Service " + service + " " + string(ep) + " rate", Service: service}
	}
	redisNow := res[4]
	slots := make([]reservedSlot, 0, res[0])
	for i, at := range res[5:] {
		slots = append(slots, reservedSlot{atMs: at, member: prefix + strconv.Itoa(i+1),
			local: returned.Add(time.Duration(at-redisNow) * time.Millisecond)})
	}
	return slots, nil
}

// shape is a scope's rate, window and burst rate: a Service's (the burst scaled to its rate),
// or a conversation's (paced evenly: a window's worth per window).
func (l *ServiceLimiter) shape(account, scope string) (rate float64, window time.Duration, burst float64) {
	if isConversation(scope) {
		rate, window = l.lim.ConversationRate, l.lim.ConversationWindow
		return rate, window, rate * window.Seconds()
	}
	rate = l.RateFor(account, scope)
	return rate, l.lim.Window, l.lim.BurstRate * rate / l.lim.Rate
}

// await sleeps until the reservation's time.
func (l *ServiceLimiter) await(ctx context.Context, rsv *Reservation) (*Reservation, error) {
	wait := time.Until(rsv.slot)
	if wait <= 0 {
		return rsv, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return rsv, nil
	}
}

// AcquireRead is Acquire for a read (list page or fetch) with the configured wait bound: the
// call status polling and reconciliation make before each GET.
func (l *ServiceLimiter) AcquireRead(ctx context.Context, account, service string, ep Endpoint) error {
	if ep == EndpointCreate {
		ep = EndpointFetch
	}
	return l.Acquire(ctx, account, service, ep, l.MaxWait())
}

// Throttled records a 429 (80621) Twilio gave a request on this Service: its factor halves
// (at most once per DecreaseGap). It never fails the caller; a Redis error is logged.
func (l *ServiceLimiter) Throttled(account, service string) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	tag := serviceTag(account, service)
	res, err := throttleScript.Run(ctx, l.rdb, []string{tag + string(EndpointCreate), tag + "adaptive"},
		"", l.lim.RecoverEvery.Milliseconds(), l.lim.DecreaseGap.Milliseconds(), adaptiveTTL.Milliseconds()).Int64Slice()
	if err != nil {
		l.log.Warn("service limiter: could not record a 429", zap.String("account", account), zap.String("service", service), zap.Error(err))
		return
	}
	l.observe(account, service, res[0], res[1], "429 from Twilio for this Service")
}

// Factor returns the last adaptive factor this process saw for the Service (1 when none).
func (l *ServiceLimiter) Factor(account, service string) float64 {
	if l == nil {
		return 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.factors[account+"/"+service]; ok {
		return float64(f) / fullFactor
	}
	return 1
}

func (l *ServiceLimiter) observe(account, service string, factor, prev int64, reason string) {
	if isConversation(service) {
		// Not kept or exported per conversation (unbounded); a change is logged.
		if prev >= 0 && prev != factor {
			l.log.Info("conversation limit factor changed", zap.String("account", account), zap.String("conversation", service),
				zap.String("reason", reason), zap.Float64("factor", float64(factor)/fullFactor),
				zap.Float64("previous", float64(prev)/fullFactor))
		}
		return
	}
	key := account + "/" + service
	l.mu.Lock()
	old, seen := l.factors[key]
	l.factors[key] = factor
	l.mu.Unlock()
	if !seen || old != factor {
		l.gauge.WithLabelValues(account, service).Set(float64(factor) / fullFactor)
	}
	if prev >= 0 && prev != factor {
		l.log.Info("service limit factor changed", zap.String("account", account), zap.String("service", service),
			zap.String("reason", reason), zap.Float64("factor", float64(factor)/fullFactor),
			zap.Float64("previous", float64(prev)/fullFactor),
			zap.Float64("rate", l.RateFor(account, service)*float64(factor)/fullFactor))
	}
}
