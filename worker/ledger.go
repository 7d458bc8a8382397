package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/tasks"
)

// The send ledger: one Redis hash per message that says whether a request that could create
// the interaction is (or was) in flight, who owns the message now, and the outcome once known.
//
// Ownership is a lease with a fencing number. Acquire hands out the next fence when nobody holds a
// live lease; every later write names its fence and is refused if another run has taken the message
// since (ErrLostOwnership). Times are Redis's own clock (TIME inside the scripts), so workers with
// skewed clocks agree on who holds a lease.
//
// Attempt states:
//
//	none       nothing that could have created the interaction is outstanding
//	in_flight  a POST started at `started`; if its lease lapses, Acquire turns it into unknown
//	unknown    a POST may have created the interaction: reconcile before sending again
//	sent       the interaction exists; `outcome` holds the record
//
// Keys carry the participant SID as a hash tag so that a message's ledger and the participant's
// claimed-interactions hash live in one Redis Cluster slot and one script can touch both.

// Attempt states stored in the ledger.
const (
	attemptNone     = "none"
	attemptInFlight = "in_flight"
	attemptUnknown  = "unknown"
	attemptSent     = "sent"
)

// ErrLostOwnership means another run of the same message took it over (our lease lapsed); the
// caller must not write anything more for it.
var ErrLostOwnership = errors.New("send ledger: another run owns this message now")

// LedgerKey is the Redis key of one message's ledger.
func LedgerKey(participantSID, taskID string) string {
	return "proxyq:{" + participantSID + "}:ledger:" + taskID
}

// claimedKey holds interaction SID → task ID for every interaction a message of ours recorded,
// so that reconciliation never adopts another message's interaction.
func claimedKey(participantSID string) string {
	return "proxyq:{" + participantSID + "}:claimed"
}

// Ledger is the send ledger on one Redis.
type Ledger struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewLedger returns a ledger whose entries expire ttl after their last change.
func NewLedger(rdb redis.UniversalClient, ttl time.Duration) *Ledger {
	return &Ledger{rdb: rdb, ttl: ttl}
}

// Ownership is what Acquire found and took.
type Ownership struct {
	// Sent is set when the message was already sent: Outcome holds its record and nothing is owned.
	Sent    bool
	Outcome *tasks.Outcome
	// BusyFor is set when another live run holds the lease: try again after it.
	BusyFor time.Duration

	Fence     int64
	Attempt   string    // attempt state when acquired: none or unknown
	StartedAt time.Time // start of the last POST, for unknown
	FirstSeen time.Time // when a worker first took this message
	Posts     int       // POSTs made so far (including the one begun, with Began)
	Now       time.Time // Redis's clock at acquisition
	// Began is set by AcquireToSend when the send was begun: Attempt is in_flight, StartedAt
	// is now and the lease covers the POST.
	Began bool
}

// luaNow is Redis's clock in milliseconds.
const luaNow = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// acquireScript: KEYS[1] ledger; ARGV[1] lease ms, ARGV[2] ttl seconds, ARGV[3] send lease ms
// (0: do not begin a send), ARGV[4] send_before ms (0: none), ARGV[5] send-within ms.
//
// With a send lease, a message with nothing outstanding whose deadline has not passed goes
// straight to in_flight: the common path costs one script instead of Acquire plus BeginSend.
var acquireScript = redis.NewScript(luaNow + `
local h = redis.call('HMGET', KEYS[1], 'attempt', 'lease_until', 'started', 'outcome', 'first_seen', 'posts')
local attempt = h[1] or 'none'
if attempt == 'sent' then return {'sent', h[4]} end
local lease = tonumber(h[2] or '0')
if lease > now then return {'busy', tostring(lease - now)} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local first = h[5] or tostring(now)
local started = h[3] or '0'
local posts = tonumber(h[6] or '0')
if attempt == 'in_flight' then attempt = 'unknown' end
local lease_until = now + tonumber(ARGV[1])
local began = '0'
if tonumber(ARGV[3]) > 0 and attempt == 'none' then
  local deadline = tonumber(ARGV[4])
  if deadline == 0 then deadline = tonumber(first) + tonumber(ARGV[5]) end
  if now < deadline then
    attempt, started, posts, began = 'in_flight', tostring(now), posts + 1, '1'
    lease_until = now + tonumber(ARGV[3])
  end
end
redis.call('HSET', KEYS[1], 'attempt', attempt, 'lease_until', lease_until, 'first_seen', first, 'started', started, 'posts', posts)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'owned', tostring(fence), attempt, started, first, tostring(posts), tostring(now), began}
`)

// Acquire takes the message for this run, or reports that it was sent or is busy. lease bounds
// how long the run may hold it without renewing.
func (l *Ledger) Acquire(ctx context.Context, participantSID, taskID string, lease time.Duration) (*Ownership, error) {
	return l.acquire(ctx, participantSID, taskID, lease, SendIntent{})
}

// SendIntent asks AcquireToSend to begin the send at once when nothing stands in the way.
type SendIntent struct {
	Lease      time.Duration // lease covering one POST and its recording
	SendBefore time.Time     // the payload's deadline; zero: FirstSeen + SendWithin
	SendWithin time.Duration
}

// AcquireToSend is Acquire followed, in the same atomic step, by BeginSend when the message has
// nothing outstanding and its deadline has not passed: then Ownership.Began is set and the
// POST may start. Otherwise it behaves as Acquire.
func (l *Ledger) AcquireToSend(ctx context.Context, participantSID, taskID string, lease time.Duration, intent SendIntent) (*Ownership, error) {
	return l.acquire(ctx, participantSID, taskID, lease, intent)
}

func (l *Ledger) acquire(ctx context.Context, participantSID, taskID string, lease time.Duration, intent SendIntent) (*Ownership, error) {
	var sendBefore int64
	if !intent.SendBefore.IsZero() {
		sendBefore = intent.SendBefore.UnixMilli()
	}
	res, err := acquireScript.Run(ctx, l.rdb, []string{LedgerKey(participantSID, taskID)},
		lease.Milliseconds(), int64(l.ttl.Seconds()), intent.Lease.Milliseconds(), sendBefore,
		intent.SendWithin.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("send ledger: acquire: %w", err)
	}
	switch res[0] {
	case "sent":
		o, err := tasks.ParseOutcome([]byte(res[1]))
		if err != nil || o == nil {
			return nil, fmt.Errorf("send ledger: stored outcome unreadable: %v", err)
		}
		return &Ownership{Sent: true, Outcome: o}, nil
	case "busy":
		return &Ownership{BusyFor: time.Duration(atoi(res[1])) * time.Millisecond}, nil
	}
	return &Ownership{
		Fence:     atoi(res[1]),
		Attempt:   res[2],
		StartedAt: msTime(res[3]),
		FirstSeen: msTime(res[4]),
		Posts:     int(atoi(res[5])),
		Now:       msTime(res[6]),
		Began:     res[7] == "1",
	}, nil
}

// beginScript: KEYS[1] ledger; ARGV[1] fence, ARGV[2] lease ms, ARGV[3] ttl seconds.
var beginScript = redis.NewScript(luaNow + `
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return {'fenced'} end
redis.call('HSET', KEYS[1], 'attempt', 'in_flight', 'started', now, 'lease_until', now + tonumber(ARGV[2]))
local posts = redis.call('HINCRBY', KEYS[1], 'posts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'ok', tostring(now), tostring(posts)}
`)

// BeginSend records that a POST is about to start and extends the lease to cover it. It returns
// the recorded start time and the POST count including this one, or ErrLostOwnership.
func (l *Ledger) BeginSend(ctx context.Context, participantSID, taskID string, fence int64, lease time.Duration) (time.Time, int, error) {
	res, err := beginScript.Run(ctx, l.rdb, []string{LedgerKey(participantSID, taskID)},
		fence, lease.Milliseconds(), int64(l.ttl.Seconds())).StringSlice()
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("send ledger: begin send: %w", err)
	}
	if res[0] == "fenced" {
		return time.Time{}, 0, ErrLostOwnership
	}
	return msTime(res[1]), int(atoi(res[2])), nil
}

// renewScript: KEYS[1] ledger; ARGV[1] fence, ARGV[2] lease ms.
var renewScript = redis.NewScript(luaNow + `
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 'fenced' end
redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[2]))
return 'ok'
`)

// Renew extends the lease of a run that is still working (reconciling); ErrLostOwnership if taken.
func (l *Ledger) Renew(ctx context.Context, participantSID, taskID string, fence int64, lease time.Duration) error {
	res, err := renewScript.Run(ctx, l.rdb, []string{LedgerKey(participantSID, taskID)}, fence, lease.Milliseconds()).Text()
	if err != nil {
		return fmt.Errorf("send ledger: renew: %w", err)
	}
	if res == "fenced" {
		return ErrLostOwnership
	}
	return nil
}

// releaseScript: KEYS[1] ledger; ARGV[1] fence, ARGV[2] attempt state, ARGV[3] ttl seconds.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 'fenced' end
redis.call('HSET', KEYS[1], 'attempt', ARGV[2], 'lease_until', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 'ok'
`)

// Release gives the message up with the given attempt state: attemptNone when nothing can have
// been created, attemptUnknown when the last POST may have created it.
func (l *Ledger) Release(ctx context.Context, participantSID, taskID string, fence int64, attempt string) error {
	res, err := releaseScript.Run(ctx, l.rdb, []string{LedgerKey(participantSID, taskID)},
		fence, attempt, int64(l.ttl.Seconds())).Text()
	if err != nil {
		return fmt.Errorf("send ledger: release: %w", err)
	}
	if res == "fenced" {
		return ErrLostOwnership
	}
	return nil
}

// ErrClaimed means the interaction is already recorded by another message of ours.
var ErrClaimed = errors.New("send ledger: interaction already recorded by another message")

// sentScript: KEYS[1] ledger, KEYS[2] claimed; ARGV[1] fence, ARGV[2] outcome JSON,
// ARGV[3] interaction SID, ARGV[4] task ID, ARGV[5] ttl seconds.
var sentScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 'fenced' end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner and owner ~= ARGV[4] then return 'claimed' end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], 'attempt', 'sent', 'outcome', ARGV[2], 'lease_until', 0)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'ok'
`)

// MarkSent records the outcome and claims its interaction SID for this message, atomically. It
// returns ErrLostOwnership, or ErrClaimed when another message already recorded that SID.
func (l *Ledger) MarkSent(ctx context.Context, participantSID, taskID string, fence int64, o *tasks.Outcome) error {
	data, err := jsonMarshal(o)
	if err != nil {
		return err
	}
	res, err := sentScript.Run(ctx, l.rdb, []string{LedgerKey(participantSID, taskID), claimedKey(participantSID)},
		fence, data, o.InteractionSID, taskID, int64(l.ttl.Seconds())).Text()
	if err != nil {
		return fmt.Errorf("send ledger: mark sent: %w", err)
	}
	switch res {
	case "fenced":
		return ErrLostOwnership
	case "claimed":
		return ErrClaimed
	}
	return nil
}

// ClaimedBy returns the task ID that recorded each of the given interaction SIDs ("" if none).
func (l *Ledger) ClaimedBy(ctx context.Context, participantSID string, sids []string) ([]string, error) {
	if len(sids) == 0 {
		return nil, nil
	}
	vals, err := l.rdb.HMGet(ctx, claimedKey(participantSID), sids...).Result()
	if err != nil {
		return nil, fmt.Errorf("send ledger: read claims: %w", err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = s
		}
	}
	return out, nil
}

// Entry is a read-only view of one message's ledger, for status and cancellation checks.
type Entry struct {
	Attempt    string
	LeaseUntil time.Time
	StartedAt  time.Time
	Posts      int
}

// MaySend reports whether a request that could create the interaction is outstanding or done:
// cancelling such a message could lose track of a real SMS.
func (e Entry) MaySend(now time.Time) bool {
	return e.Attempt == attemptInFlight || e.Attempt == attemptUnknown || e.Attempt == attemptSent || e.LeaseUntil.After(now)
}

// Read returns the ledger entry of a message (zero Entry if none).
func (l *Ledger) Read(ctx context.Context, participantSID, taskID string) (Entry, error) {
	h, err := l.rdb.HMGet(ctx, LedgerKey(participantSID, taskID), "attempt", "lease_until", "started", "posts").Result()
	if err != nil {
		return Entry{}, fmt.Errorf("send ledger: read: %w", err)
	}
	str := func(v any) string { s, _ := v.(string); return s }
	return Entry{Attempt: str(h[0]), LeaseUntil: msTime(str(h[1])), StartedAt: msTime(str(h[2])), Posts: int(atoi(str(h[3])))}, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func msTime(s string) time.Time {
	n := atoi(s)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}
