package worker

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Account limits shared by every worker process.
//
// Twilio limits concurrent requests per account and answers 429 beyond it. Limits kept in each
// process do not add up to an account-wide limit, so all of it lives in Redis, keyed by account
// with a hash tag so that one account's keys share a Redis Cluster slot and one script may touch
// them all:
//
//	proxyq:{acct:<account>}:inflight  ZSET   member = holder + random suffix, score = lease expiry (ms, Redis clock)
//	proxyq:{acct:<account>}:adaptive  HASH   factor (per mille), ref (recovery clock), dec (last decrease)
//	rate:proxyq:{acct:<account>}:rate STRING redis_rate's GCRA state ("rate:" is redis_rate's own prefix)
//
// In-flight cap. Acquire runs one Lua script: drop members whose lease has expired, admit when
// ZCARD is below the effective cap, ZADD the holder with its lease expiry. Release is ZREM. The
// lease (AccountLimits.Lease, default 30s, longer than the 15s HTTP timeout) is what gives back a
// slot held by a process that was SIGKILLed mid-request, after a bounded time. A run that
// reconciles before its POST can use up that lease first: it extends it (Permit.Extend, one
// more command, only when less than its request needs is left). Every time is Redis's own
// clock (TIME inside the script), so processes with skewed clocks agree.
//
// asynq's x/rate Semaphore has the same design, but it cannot be used here: it is built on
// go-redis v8 (github.com/go-redis/redis/v8), and asynq v0.26 hands out go-redis v9 clients, so
// NewSemaphore panics on the type assertion of MakeRedisClient's result. It also takes the lease
// from the task context's deadline (asynq's task timeout, minutes) and the client's clock in whole
// seconds, where we want a short lease on Redis's clock.
//
// Request rate. github.com/go-redis/redis_rate (GCRA) with the emission interval 1/rate: any
// rate works, fractional ones too (0.5/s is Limit{Rate: 1, Period: 2s}).
//
// Adaptation. When Twilio answers 429 anyway (another client on the account, a limit lower than
// configured), Release(true) halves an account-wide factor in Redis, at most once per
// DecreaseGap (1s) so that one overload burst halves it once, never below 0.1. Every
// RecoverEvery (5s) without a 429 it grows by 0.1 back to 1. Recovery is computed lazily by the
// scripts from Redis's clock, so every process sees the same value and no process has to run a
// timer. The factor scales both limits: the effective cap is ceil(cap×factor), at least 1, and the
// rate and burst are multiplied by it. It is exported as proxyq_limit_factor{account} (each
// process updates it when it talks to Redis about that account) and the process whose script
// changed it logs the change.
//
// Waiting. A process's waiters of an account queue in arrival order. Only the oldest
// localPollers of them try Redis, sleeping between tries: jittered, growing from 2ms to 50ms
// for the in-flight cap; redis_rate's RetryAfter for the rate. The others wait for their turn:
// a waiter that leaves the queue wakes the one that becomes a poller. A release in this process
// wakes its oldest waiter of that account at once. So waiters are served in order in each
// process, and a loaded fleet does not poll Redis once per waiter (see BenchmarkLimiterFleet:
// when every waiter polled, the youngest, polling fastest, won most freed slots, so that some
// of the oldest gave up at maxWait and their messages went back to the queue). Waiting never
// exceeds maxWait nor outlives ctx. Redis pub/sub wake-ups across processes were measured and
// not kept: see the note at wakeOne.

// Limiter defaults, documented on the AccountLimits fields.
const (
	DefaultSlotLease    = 30 * time.Second
	DefaultRecoverEvery = 5 * time.Second
	DefaultDecreaseGap  = time.Second

	fullFactor = 1000 // per mille: 1.0 (the scripts hold the floor, 100 = 0.1)

	minPoll = 2 * time.Millisecond  // first sleep between in-flight tries
	maxPoll = 50 * time.Millisecond // sleeps grow to this
	// localPollers is how many of a process's waiters of one account try Redis; the others
	// wait for their turn in arrival order.
	localPollers = 2

	// factorCacheFor is how long a rate-only limiter trusts the factor it read last. The factor
	// changes at most once per DecreaseGap and RecoverEvery, and a 429 seen here updates it at once.
	factorCacheFor = 100 * time.Millisecond

	// releaseTimeout bounds the Redis call of Release, which has no context of its own.
	releaseTimeout = 5 * time.Second
	// adaptiveTTL is how long the adaptive state outlives its last change.
	adaptiveTTL = 24 * time.Hour
)

// AccountLimits are the per-account limits shared by every worker process. The zero value of
// each duration means its default (WithDefaults).
type AccountLimits struct {
	MaxInFlight int     // concurrent requests (0: no cap)
	Rate        float64 // requests per second, fractions allowed (0: no cap)
	Burst       int     // requests allowed at once above the rate (0: Rate rounded up, at least 1)

	// Lease bounds how long a slot stays taken without Release: a process killed mid-request
	// gives its slots back after it. Default 30s; it must exceed the HTTP timeout (15s), or a
	// slow request would lose its slot while still in flight.
	Lease time.Duration
	// RecoverEvery is how long the account must go without a 429 for the adaptive factor to
	// grow by 0.1. Default 5s: from the floor (0.1) back to 1 in 45s.
	RecoverEvery time.Duration
	// DecreaseGap is the least time between two halvings of the factor, so that the 429s of one
	// burst (all the requests that were in flight together) halve it once. Default 1s.
	DecreaseGap time.Duration
}

// WithDefaults returns a copy of l with unset fields given their defaults.
func (l AccountLimits) WithDefaults() AccountLimits {
	if l.Lease == 0 {
		l.Lease = DefaultSlotLease
	}
	if l.RecoverEvery == 0 {
		l.RecoverEvery = DefaultRecoverEvery
	}
	if l.DecreaseGap == 0 {
		l.DecreaseGap = DefaultDecreaseGap
	}
	if l.Rate > 0 && l.Burst == 0 {
		l.Burst = int(math.Ceil(l.Rate))
	}
	return l
}

// Validate reports the first field whose value cannot work. Call it on the result of WithDefaults.
func (l AccountLimits) Validate() error {
	switch {
	case l.MaxInFlight < 0:
		return fmt.Errorf("account limits: MaxInFlight must not be negative, got %d", l.MaxInFlight)
	case l.Rate < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("account limits: Rate must be a finite number, 0 or more, got %v", l.Rate)
	case l.Burst < 0:
		return fmt.Errorf("account limits: Burst must not be negative, got %d", l.Burst)
	case l.Lease < time.Second:
		return fmt.Errorf("account limits: Lease must be at least 1s, got %v", l.Lease)
	case l.RecoverEvery < time.Millisecond:
		return fmt.Errorf("account limits: RecoverEvery must be at least 1ms, got %v", l.RecoverEvery)
	case l.DecreaseGap < 0:
		return fmt.Errorf("account limits: DecreaseGap must not be negative, got %v", l.DecreaseGap)
	}
	return nil
}

// AccountLimiter is the Redis-backed Limiter. It is safe for concurrent use.
type AccountLimiter struct {
	rdb  redis.UniversalClient
	lim  AccountLimits
	rate *redis_rate.Limiter
	m    *Metrics
	log  *zap.Logger

	accounts sync.Map // account → *accountState

	// perAccount gives an account's own limits (the accounts file), read at each use so a
	// rotated file applies at once; nil or false: lim.
	perAccount func(account string) (AccountLimits, bool)

	// noLocalWake turns off waking a local waiter on release (for BenchmarkLimiterHandoff).
	noLocalWake bool
}

// accountState is what one process knows about one account.
type accountState struct {
	name   string
	gauge  prometheus.Gauge
	factor atomic.Int64 // last factor seen (per mille); 0 before the first
	seenAt atomic.Int64 // when it was read from Redis (UnixNano)
	hold   atomic.Int64 // moving average of how long a permit is held (ns), for RetryIn

	mu      sync.Mutex
	waiters list.List // of *waiter: this process's waiters of the account, oldest first
}

// waiter is one Acquire of this process waiting for the account, from its first refusal until
// it leaves (admitted, given up or cancelled).
type waiter struct {
	wake chan struct{} // buffer 1: a slot freed here, or its turn to poll Redis
}

// NewAccountLimiter returns the limiter enforcing lim per account through rdb, or NoLimit{}
// when lim sets neither a cap nor a rate. Invalid values (negative numbers) are treated as
// unset, with an error logged: worker.Config.Validate refuses them earlier. m and log may be nil.
func NewAccountLimiter(rdb redis.UniversalClient, lim AccountLimits, m *Metrics, log *zap.Logger) (Limiter, error) {
	if log == nil {
		log = zap.NewNop()
	}
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	if lim.MaxInFlight == 0 && lim.Rate == 0 {
		return NoLimit{}, nil
	}
	return newAccountLimiter(rdb, lim, m, log), nil
}

func newAccountLimiter(rdb redis.UniversalClient, lim AccountLimits, m *Metrics, log *zap.Logger) *AccountLimiter {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &AccountLimiter{rdb: rdb, lim: lim.WithDefaults(), rate: redis_rate.NewLimiter(rdb), m: m, log: log}
}

// Keys of one account's limiter state.
func inflightKey(account string) string { return "proxyq:{acct:" + account + "}:inflight" }
func adaptiveKey(account string) string { return "proxyq:{acct:" + account + "}:adaptive" }

// rateKey is passed to redis_rate, which prefixes it with "rate:".
func rateKey(account string) string { return "proxyq:{acct:" + account + "}:rate" }

// luaRecover is shared by the scripts: it reads the adaptive factor f (per mille) of KEYS[2] and
// applies the recovery due since ref (ARGV[2] ms per step). It leaves prev = the factor before
// recovery, or -1 when unchanged. Needs `now` (ms) and `ttl` (ms).
const luaRecover = `
local h = redis.call('HMGET', KEYS[2], 'factor', 'ref', 'dec')
local f = tonumber(h[1]) or 1000
local ref = tonumber(h[2]) or now
local dec = tonumber(h[3]) or 0
local prev = -1
local rec = tonumber(ARGV[2])
if f < 1000 and now - ref >= rec then
  local steps = math.floor((now - ref) / rec)
  prev = f
  f = math.min(1000, f + 100 * steps)
  ref = ref + steps * rec
  redis.call('HSET', KEYS[2], 'factor', f, 'ref', ref)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
`

// slotScript: KEYS[1] in-flight ZSET, KEYS[2] adaptive hash. ARGV[1] member, ARGV[2] recovery
// step ms, ARGV[3] cap (0: none), ARGV[4] lease ms, ARGV[5] adaptive TTL ms.
// Returns {admitted 0|1, factor, factor before recovery or -1, in flight}.
var slotScript = redis.NewScript(luaNow + `local ttl = tonumber(ARGV[5])` + luaRecover + `
local cap = tonumber(ARGV[3])
if cap == 0 then return {1, f, prev, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= math.max(1, math.ceil(cap * f / 1000)) then return {0, f, prev, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, f, prev, n + 1}
`)

// extendScript: KEYS[1] in-flight ZSET. ARGV[1] member, ARGV[2] new lease ms from now.
// Returns 1 when the member's lease had not run out and now runs to now + ARGV[2], else 0 (the
// slot is no longer the member's to extend: it may have been given to another request).
var extendScript = redis.NewScript(luaNow + `
local held = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if held <= now then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
`)

// throttleScript records a 429: KEYS[1] in-flight ZSET, KEYS[2] adaptive hash. ARGV[1] member to
// release ("" for none), ARGV[2] recovery step ms, ARGV[3] decrease gap ms, ARGV[4] adaptive TTL
// ms. It halves the factor unless it was halved less than the gap ago (floor 100), and restarts
// the recovery clock either way. Returns {factor, factor before or -1 when unchanged}.
var throttleScript = redis.NewScript(luaNow + `local ttl = tonumber(ARGV[4])` + luaRecover + `
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local before = f
if prev >= 0 then before = prev end
if now - dec >= tonumber(ARGV[3]) then
  f = math.max(100, math.floor(f / 2))
  dec = now
end
redis.call('HSET', KEYS[2], 'factor', f, 'ref', now, 'dec', dec)
redis.call('PEXPIRE', KEYS[2], ttl)
if f ~= before then return {f, before} end
return {f, -1}
`)

func (l *AccountLimiter) state(account string) *accountState {
	if s, ok := l.accounts.Load(account); ok {
		return s.(*accountState)
	}
	s, _ := l.accounts.LoadOrStore(account, &accountState{name: account, gauge: l.m.LimitFactor.WithLabelValues(account)})
	return s.(*accountState)
}

// observe records the factor seen in Redis: the gauge, and a log line when this process's
// script changed it (prev ≥ 0), so the fleet logs each change once.
func (l *AccountLimiter) observe(s *accountState, factor, prev int64, reason string) {
	s.seenAt.Store(time.Now().UnixNano())
	if s.factor.Swap(factor) != factor {
		s.gauge.Set(float64(factor) / fullFactor)
	}
	if prev >= 0 && prev != factor {
		l.log.Info("account limit factor changed", zap.String("account", s.name), zap.String("reason", reason),
			zap.Float64("factor", float64(factor)/fullFactor), zap.Float64("previous", float64(prev)/fullFactor),
			zap.Int("max_in_flight", effectiveCap(l.limOf(s).MaxInFlight, factor)),
			zap.Float64("rate", l.limOf(s).Rate*float64(factor)/fullFactor))
	}
}

// effectiveCap is the in-flight cap scaled by the factor (per mille): ceil, at least 1.
func effectiveCap(limit int, factor int64) int {
	return max(1, int((int64(limit)*factor+fullFactor-1)/fullFactor))
}

// rateLimit is redis_rate's limit for the configured rate scaled by the factor (per mille).
func (l *AccountLimiter) rateLimit(lim AccountLimits, factor int64) redis_rate.Limit {
	f := float64(factor) / fullFactor
	interval := time.Duration(float64(time.Second) / (lim.Rate * f))
	return redis_rate.Limit{Rate: 1, Period: max(interval, time.Microsecond), Burst: max(1, int(math.Ceil(float64(lim.Burst)*f)))}
}

// Acquire implements Limiter. It returns a Permit; a *LimitedError when maxWait passed (or would
// pass before the rate allows a request) without permission; ctx's error when ctx ended first;
// or a Redis error. A maxWait of 0 or less tries once.
func (l *AccountLimiter) Acquire(ctx context.Context, account, holder string, maxWait time.Duration) (Permit, error) {
	s := l.state(account)
	member := holder + "#" + randomSuffix()
	deadline := time.Now().Add(maxWait)
	poll := minPoll
	var w *waiter // our place in the process's queue, from the first refusal
	defer func() {
		if w != nil {
			s.leave(w)
		}
	}()
	for {
		admitted, retryIn, reason, err := l.try(ctx, s, member)
		if err != nil {
			return nil, err
		}
		if admitted {
			now := time.Now()
			return &permit{l: l, s: s, member: member, since: now, until: now.Add(l.limOf(s).Lease)}, nil
		}
		remaining := time.Until(deadline)
		var sleep time.Duration
		if reason == reasonRate {
			if retryIn > remaining {
				return nil, &LimitedError{RetryIn: retryIn, Reason: reason}
			}
			// A little jitter so waiters of many processes do not retry at the same instant.
			sleep = retryIn + jitter(minPoll)
		} else {
			if remaining <= 0 {
				return nil, &LimitedError{RetryIn: retryIn, Reason: reason}
			}
			sleep = poll/2 + jitter(poll/2+1)
			poll = min(2*poll, maxPoll)
		}
		if w == nil {
			w = s.join()
		}
		if err := s.wait(ctx, w, min(sleep, max(remaining, 0)), max(remaining, 0)); err != nil {
			return nil, err
		}
	}
}

// Reasons reported in LimitedError.
const (
	reasonInFlight = "in-flight cap"
	reasonRate     = "request rate"
)

// try makes one attempt: the in-flight script (which also reads the adaptive factor), then the
// rate. It gives the slot back when the rate refuses. With a rate and no cap, the script only
// reads the factor, so it is skipped while the factor read last is younger than factorCacheFor:
// one round trip per request instead of two.
func (l *AccountLimiter) try(ctx context.Context, s *accountState, member string) (ok bool, retryIn time.Duration, reason string, err error) {
	factor := s.factor.Load()
	if l.limOf(s).MaxInFlight > 0 || factor == 0 || time.Since(time.Unix(0, s.seenAt.Load())) >= factorCacheFor {
		res, err := slotScript.Run(ctx, l.rdb, []string{inflightKey(s.name), adaptiveKey(s.name)},
			member, l.limOf(s).RecoverEvery.Milliseconds(), l.limOf(s).MaxInFlight, l.limOf(s).Lease.Milliseconds(), adaptiveTTL.Milliseconds()).Int64Slice()
		if err != nil {
			if ctx.Err() != nil {
				// The script may have run and taken a slot whose answer we never saw.
				l.dropSlot(s, member)
				return false, 0, "", ctx.Err()
			}
			return false, 0, "", fmt.Errorf("account limiter: %w", err)
		}
		factor = res[1]
		l.observe(s, factor, res[2], "recovered: no 429 for a while")
		if res[0] == 0 {
			return false, s.retryHint(), reasonInFlight, nil
		}
	}
	if l.limOf(s).Rate == 0 {
		return true, 0, "", nil
	}
	r, err := l.rate.Allow(ctx, rateKey(s.name), l.rateLimit(l.limOf(s), factor))
	if err == nil && r.Allowed > 0 {
		return true, 0, "", nil
	}
	if l.limOf(s).MaxInFlight > 0 {
		l.dropSlot(s, member)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return false, 0, "", ctx.Err()
	case err != nil:
		return false, 0, "", fmt.Errorf("account limiter: rate: %w", err)
	}
	return false, max(r.RetryAfter, time.Millisecond), reasonRate, nil
}

// dropSlot gives back a slot this attempt may hold, on a context of its own: it runs when the
// caller's context has ended or the attempt was refused by the rate. A failure only delays the
// slot's return until its lease ends.
func (l *AccountLimiter) dropSlot(s *accountState, member string) {
	if l.limOf(s).MaxInFlight == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := l.rdb.ZRem(ctx, inflightKey(s.name), member).Err(); err != nil {
		l.log.Warn("account limiter: could not give a slot back; it returns when its lease ends",
			zap.String("account", s.name), zap.Duration("lease", l.limOf(s).Lease), zap.Error(err))
	}
}

// permit is one granted request. Release is idempotent.
type permit struct {
	l        *AccountLimiter
	s        *accountState
	member   string
	since    time.Time
	until    time.Time // when its lease ends, on this process's clock (a little after Redis's)
	released atomic.Bool
}

// extendSlack covers the difference between a permit's lease end as this process reckons it
// (from when Acquire returned) and as Redis does (from when the script ran).
const extendSlack = time.Second

// errSlotLost is Extend's answer when the slot's lease had run out.
var errSlotLost = errors.New("account limiter: the in-flight slot's lease ran out before the request; it may be another request's now")

// Extend implements Permit. Without an in-flight cap nothing is held and it does nothing; with
// one it costs a Redis command only when less than d (and extendSlack) of the lease is left,
// and then restarts the lease for max(d, Lease) from now.
func (p *permit) Extend(ctx context.Context, d time.Duration) error {
	lim := p.l.limOf(p.s)
	if lim.MaxInFlight == 0 || time.Until(p.until) >= d+extendSlack {
		return nil
	}
	lease := max(d, lim.Lease)
	asked := time.Now()
	ok, err := extendScript.Run(ctx, p.l.rdb, []string{inflightKey(p.s.name)}, p.member, lease.Milliseconds()).Int()
	switch {
	case err != nil:
		return fmt.Errorf("account limiter: extend the in-flight slot: %w", err)
	case ok != 1:
		return errSlotLost
	}
	p.until = asked.Add(lease)
	return nil
}

// Release implements Permit: it frees the slot, wakes a local waiter, and on a 429 slows the
// account down. A Redis failure is logged; the slot then comes back when its lease ends.
func (p *permit) Release(rateLimited bool) {
	if p.released.Swap(true) {
		return
	}
	l, s := p.l, p.s
	s.recordHold(time.Since(p.since))
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	var err error
	switch {
	case rateLimited:
		member := ""
		if l.limOf(s).MaxInFlight > 0 {
			member = p.member
		}
		var res []int64
		res, err = throttleScript.Run(ctx, l.rdb, []string{inflightKey(s.name), adaptiveKey(s.name)},
			member, l.limOf(s).RecoverEvery.Milliseconds(), l.limOf(s).DecreaseGap.Milliseconds(), adaptiveTTL.Milliseconds()).Int64Slice()
		if err == nil {
			l.observe(s, res[0], res[1], "429 from Twilio")
		}
	case l.limOf(s).MaxInFlight > 0:
		err = l.rdb.ZRem(ctx, inflightKey(s.name), p.member).Err()
	default:
		return // rate only: nothing is held
	}
	if err != nil {
		l.log.Warn("account limiter: release failed; the slot returns when its lease ends",
			zap.String("account", s.name), zap.Duration("lease", l.limOf(s).Lease), zap.Bool("rate_limited", rateLimited), zap.Error(err))
	}
	if l.limOf(s).MaxInFlight > 0 && !l.noLocalWake {
		s.wakeOne()
	}
}

// join queues a waiter behind the process's other waiters of the account.
func (s *accountState) join() *waiter {
	w := &waiter{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.waiters.PushBack(w)
	s.mu.Unlock()
	return w
}

// leave takes w out of the queue and wakes the waiter that becomes a poller in its place.
func (s *accountState) leave(w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for e := s.waiters.Front(); e != nil; e = e.Next() {
		if e.Value.(*waiter) != w {
			i++
			continue
		}
		next := e.Next()
		s.waiters.Remove(e)
		if i >= localPollers {
			return // it was not polling: nobody moves up
		}
		for ; next != nil && i < localPollers-1; i++ {
			next = next.Next()
		}
		if next != nil {
			next.Value.(*waiter).signal()
		}
		return
	}
}

// polling says whether w is among the oldest localPollers waiters, which try Redis.
func (s *accountState) polling(w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for e := s.waiters.Front(); e != nil && i < localPollers; e = e.Next() {
		if e.Value.(*waiter) == w {
			return true
		}
		i++
	}
	return false
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// wait sleeps until w's next try: after sleep when w polls, else when its turn comes (or a
// local release wakes it), and at the latest after remaining, when the caller gives up. It
// returns ctx's error if ctx ends first.
func (s *accountState) wait(ctx context.Context, w *waiter, sleep, remaining time.Duration) error {
	d := remaining
	if s.polling(w) {
		d = sleep
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-w.wake:
	}
	return nil
}

// wakeOne wakes the oldest local waiter of the account: a slot freed in this process is then
// retried at once instead of after a sleep. Other processes find it at their next try.
//
// Redis pub/sub wake-ups across processes were measured and not kept (BenchmarkLimiterHandoff,
// three processes, 10ms requests, 2 CPUs; utilisation of the cap, Redis calls per acquisition):
//
//	                          poll only    + local wake (kept)   + pub/sub
//	busy   (cap 4, 24 waiters)  0.89  5.3     0.95  6.6            0.94  8.8
//	sparse (cap 1,  3 waiters)  0.72  4.6     0.71  4.5            0.91  6.6
//
// With the waiters a loaded fleet has (busy), polling plus the local wake already hands a slot
// over within a millisecond or two and pub/sub adds only cost: a PUBLISH per release, a
// subscriber connection per process (which the Limiter interface has no Close to end), and a
// wake-up of one waiter in every process for each freed slot, of which one wins. Pub/sub wins
// when very few waiters share a tiny cap across processes (sparse), where a freed slot may sit
// up to one poll (≤50ms) before another process finds it.
func (s *accountState) wakeOne() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.waiters.Front(); e != nil {
		e.Value.(*waiter).signal()
	}
}

// recordHold feeds the moving average of permit hold times (weight 1/8).
func (s *accountState) recordHold(d time.Duration) {
	for {
		old := s.hold.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if s.hold.CompareAndSwap(old, next) {
			return
		}
	}
}

// retryHint is when to try again after the in-flight cap refused: a slot frees when a request
// ends, so about one request's duration, within [50ms, 5s].
func (s *accountState) retryHint() time.Duration {
	return min(max(time.Duration(s.hold.Load()), 50*time.Millisecond), 5*time.Second)
}

// randomSuffix makes each Acquire's member unique even if a holder name repeats.
func randomSuffix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%x", mrand.Uint64())
	}
	return hex.EncodeToString(b[:])
}

// limOf returns the limits in force for the state's account.
func (l *AccountLimiter) limOf(s *accountState) AccountLimits {
	if l.perAccount != nil {
		if lim, ok := l.perAccount(s.name); ok {
			return lim
		}
	}
	return l.lim
}
