package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/autopipe"
	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/tasks"
)

// The send ledger: a few fields per message that say whether a request that could create the
// interaction is (or was) in flight, who owns the message now, and the outcome once known.
//
// Where it lives. The ledger is one field, `proxyq`, of asynq's own task hash
// (`asynq:{<queue>}:t:<task ID>`), and the outcome is asynq's `result` field of the same hash,
// written by the ledger's scripts (not by asynq's ResultWriter). So the ledger lives exactly as
// long as the task — which is exactly as long as asynq can deliver the task again: waiting,
// retrying, archived (a re-run from the dashboard finds it), completed for its retention — and
// the outcome is stored once. asynq's scripts (enqueue, dequeue, retry, archive, requeue,
// complete, run/archive from the Inspector) write only their own fields with HSET and never drop
// others; asynq deletes the whole hash when it deletes the task. The ledger's scripts never
// create the hash: a task that is gone (deleted, or expired after its retention) is never
// brought back as a stray hash without TTL.
//
// The field's value is `<attempt>:<fence>:<lease_until>:<started>:<first_seen>:<posts>` (times in
// Redis's milliseconds), or just `s` once the interaction is recorded (the record is `result`).
//
// Ownership is a lease with a fencing number. Acquire hands out the next fence when nobody holds a
// live lease; every later write names its fence and is refused if another run has taken the message
// since (ErrLostOwnership). Times are Redis's own clock (TIME inside the scripts), so workers with
// skewed clocks agree on who holds a lease — with one exception, the common case: a message no
// run has touched yet gets its first entry (fence 1, in flight) from one HSETNX carrying this
// process's clock, with a few seconds of slack on its lease (beginFresh). That saves a script
// per message, and assumes what asynq's own task leases assume: clocks within seconds.
//
// Attempt states:
//
//	none       nothing that could have created the interaction is outstanding
//	in_flight  a POST started at `started`; if its lease lapses, Acquire turns it into unknown
//	unknown    a POST may have created the interaction: reconcile before sending again
//	sent       the interaction exists; asynq's `result` holds the record
//
// Claims. Every recorded Proxy interaction SID is claimed for its message, so that
// reconciliation never adopts another message's interaction. The claim is the interaction's
// key (package internal/interaction), `proxyq:{ki:<KI>}:msg`, whose value names the message
// (queue, task ID, account): the same key the delivery package reads for status callbacks,
// so one key per message serves both. It lives ClaimTTL, at least LedgerTTL (and the delivery
// index's life when longer: SetDeliveryHook). Claims are keyed by interaction — not by queue —
// so one participant's messages in several queues see each other's claims. On one Redis the
// claim and the record are one script; in a Redis Cluster (the key and the task hash are in
// different slots) the claim is taken before the record, marked as not recorded yet (the "~"
// prefix: status callbacks wait), and a claim whose record then failed still names its own
// task, whose next run adopts it. Claims made before this layout, fields of a hash per
// participant and day, are still read by reconciliation until they expire.

// Attempt states stored in the ledger.
const (
	attemptNone     = "none"
	attemptInFlight = "in_flight"
	attemptUnknown  = "unknown"
	attemptSent     = "sent"
)

// ledgerField is the ledger's field in asynq's task hash.
const ledgerField = "proxyq"

// attemptCode and attemptName map attempt states to their one-letter form in the ledger field.
var attemptCode = map[string]string{attemptNone: "n", attemptInFlight: "f", attemptUnknown: "u", attemptSent: "s"}

func attemptName(code string) string {
	for name, c := range attemptCode {
		if c == code {
			return name
		}
	}
	return ""
}

// ErrLostOwnership means another run of the same message took it over (our lease lapsed); the
// caller must not write anything more for it.
var ErrLostOwnership = errors.New("send ledger: another run owns this message now")

// LedgerKey is the Redis key that holds one message's ledger: asynq's task hash.
func LedgerKey(queue, taskID string) string {
	return "asynq:{" + queue + "}:t:" + taskID
}

// claimsKey is the hash of one participant's claims made on one day (days since the Unix
// epoch), where versions before the interaction key kept claims. Reconciliation still reads
// them, so that an upgrade keeps the claims made before it; they expire by themselves within
// LedgerTTL (72h by default) of the day they were made.
func claimsKey(participantSID string, day int64) string {
	return "proxyq:{" + participantSID + "}:claims:" + strconv.FormatInt(day, 10)
}

const dayMs = int64(24 * time.Hour / time.Millisecond)

// claimDaySlack widens the days reconciliation reads beyond its time range: the hashes of
// earlier versions filed claims under the recording worker's clock, which may differ from the
// reader's by seconds.
const claimDaySlack = time.Minute

// legacyClaimKey is where versions before the per-participant hashes kept one claim per key.
// Reconciliation still reads them, so that an upgrade keeps the claims made before it; they
// expire by themselves within LedgerTTL (72h by default) of the upgrade.
func legacyClaimKey(interactionSID string) string {
	return "proxyq:claim:" + interactionSID
}

// Ledger is the send ledger on one Redis.
type Ledger struct {
	rdb redis.UniversalClient
	ttl time.Duration    // ClaimTTL
	now func() time.Time // this process's clock: a fresh message's first entry, the SM index's day
	// splitClaim: the claim is its own script before the record script, because in a Redis
	// Cluster the interaction's key and the task hash are in different slots. On one Redis both are
	// one script: one round trip fewer per message, and no claim is left by a fenced run.
	splitClaim bool
	// pipe carries the two round trips every message makes (the in-flight mark, the record)
	// on go-redis's autopipeliner where there is one (internal/autopipe). Each run still waits
	// for its own replies before it acts: the mark is in Redis before the POST. Made on first
	// use, so a ledger that only reads (`proxyq status`, serve's send guard) starts none.
	pipe     *autopipe.Pipe
	sidIndex sidIndex // Message SID → message, for the console (lookup.go)
}

// NewLedger returns a ledger whose interaction claims are kept ttl.
func NewLedger(rdb redis.UniversalClient, ttl time.Duration) *Ledger {
	_, cluster := rdb.(*redis.ClusterClient)
	return &Ledger{rdb: rdb, ttl: ttl, now: time.Now, splitClaim: cluster, pipe: autopipe.New(rdb)}
}

// ClaimTTL is how long a claim is kept: reconciliation's horizon.
func (l *Ledger) ClaimTTL() time.Duration { return l.ttl }

// keepClaimsFor makes claims live at least d (the delivery index's life: the claim is the
// index).
func (l *Ledger) keepClaimsFor(d time.Duration) { l.ttl = max(l.ttl, d) }

// Ownership is what Acquire found and took.
type Ownership struct {
	// Sent is set when the message was already sent: Outcome holds its record and nothing is owned.
	Sent    bool
	Outcome *tasks.Outcome
	// BusyFor is set when another live run holds the lease: try again after it.
	BusyFor time.Duration
	// Gone is set when asynq no longer has the task (deleted): there is nothing to send or record.
	Gone bool

	Fence     int64
	Attempt   string    // attempt state when acquired: none or unknown (in_flight when Began)
	StartedAt time.Time // start of the last POST, for unknown
	FirstSeen time.Time // when a worker first took this message
	Posts     int       // POSTs made so far (including the one begun, with Began)
	Now       time.Time // Redis's clock at acquisition (this process's for a fresh message)
	// Began is set by AcquireToSend when the send was begun: Attempt is in_flight, StartedAt
	// is now and the lease covers the POST.
	Began bool
}

// luaNow is Redis's clock in milliseconds.
const luaNow = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// luaLedger reads the ledger field of KEYS[1] into a, fence, lease, started, first, posts (a is
// nil when there is no ledger yet; 's' alone once sent) and the attempt log (attemptlog.go) into
// oldlog, and defines put(), which writes the ledger (and any field/value pairs given).
const luaLedger = `local h = redis.call('HMGET', KEYS[1], 'proxyq', 'pl')
local raw, oldlog = h[1], h[2]
local a, fence, lease, started, first, posts
if raw then
  a, fence, lease, started, first, posts = string.match(raw, '^(%a):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  if not a then a = raw end
end
local function put(...)
  return redis.call('HSET', KEYS[1], 'proxyq', a .. ':' .. fence .. ':' .. lease .. ':' .. started .. ':' .. first .. ':' .. posts, ...)
end
`

// acquireScript: KEYS[1] task hash; ARGV[1] lease ms, ARGV[2] send lease ms (0: do not begin a
// send), ARGV[3] send_before ms (0: none), ARGV[4] send-within ms.
//
// With a send lease, a message with nothing outstanding whose deadline has not passed goes
// straight to in_flight: the common path costs one script instead of Acquire plus BeginSend.
// Four commands: HMGET, TIME, HSET (and HGET of the result only when already sent).
var acquireScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'proxyq', 'state')
if not h[2] then return {'gone'} end
if h[1] == 's' then return {'sent', redis.call('HGET', KEYS[1], 'result')} end
` + luaNow + `
local a, fence, lease, started, first, posts = 'n', 0, 0, 0, now, 0
if h[1] then
  local x = {string.match(h[1], '^(%a):(%d+):(%d+):(%d+):(%d+):(%d+)$')}
  if not x[1] then return redis.error_reply('send ledger: unreadable ledger field') end
  a, fence, lease, started, first, posts = x[1], tonumber(x[2]), tonumber(x[3]), tonumber(x[4]), tonumber(x[5]), tonumber(x[6])
end
if lease > now then return {'busy', tostring(lease - now)} end
fence = fence + 1
if a == 'f' then a = 'u' end
lease = now + tonumber(ARGV[1])
local began = '0'
if tonumber(ARGV[2]) > 0 and a == 'n' then
  local deadline = tonumber(ARGV[3])
  if deadline == 0 then deadline = first + tonumber(ARGV[4]) end
  if now < deadline then
    a, started, posts, began = 'f', now, posts + 1, '1'
    lease = now + tonumber(ARGV[2])
  end
end
redis.call('HSET', KEYS[1], 'proxyq', a .. ':' .. fence .. ':' .. lease .. ':' .. started .. ':' .. first .. ':' .. posts)
return {'owned', tostring(fence), a, tostring(started), tostring(first), tostring(posts), tostring(now), began}
`)

// Acquire takes the message for this run, or reports that it was sent, is busy or is gone.
// lease bounds how long the run may hold it without renewing.
func (l *Ledger) Acquire(ctx context.Context, queue, taskID string, lease time.Duration) (*Ownership, error) {
	return l.acquire(ctx, queue, taskID, lease, SendIntent{})
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
func (l *Ledger) AcquireToSend(ctx context.Context, queue, taskID string, lease time.Duration, intent SendIntent) (*Ownership, error) {
	return l.acquire(ctx, queue, taskID, lease, intent)
}

func (l *Ledger) acquire(ctx context.Context, queue, taskID string, lease time.Duration, intent SendIntent) (*Ownership, error) {
	if intent.Lease > 0 {
		if own, err := l.beginFresh(ctx, queue, taskID, intent); own != nil || err != nil {
			return own, err
		}
	}
	var sendBefore int64
	if !intent.SendBefore.IsZero() {
		sendBefore = intent.SendBefore.UnixMilli()
	}
	res, err := acquireScript.Run(ctx, l.rdb, []string{LedgerKey(queue, taskID)},
		lease.Milliseconds(), intent.Lease.Milliseconds(), sendBefore, intent.SendWithin.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("send ledger: acquire: %w", err)
	}
	switch res[0] {
	case "gone":
		return &Ownership{Gone: true}, nil
	case "sent":
		var o *tasks.Outcome
		if len(res) > 1 {
			o, err = tasks.ParseOutcome([]byte(res[1]))
		}
		if err != nil || o == nil {
			return nil, fmt.Errorf("send ledger: stored outcome unreadable: %v", err)
		}
		return &Ownership{Sent: true, Outcome: o}, nil
	case "busy":
		return &Ownership{BusyFor: time.Duration(atoi(res[1])) * time.Millisecond}, nil
	}
	return &Ownership{
		Fence:     atoi(res[1]),
		Attempt:   attemptName(res[2]),
		StartedAt: msTime(res[3]),
		FirstSeen: msTime(res[4]),
		Posts:     int(atoi(res[5])),
		Now:       msTime(res[6]),
		Began:     res[7] == "1",
	}, nil
}

// freshLeaseSlack lengthens the lease of a fresh message's first entry (written with this
// process's clock, not Redis's) beyond the send lease: skew between the two clocks could
// otherwise shorten the lease other runs see. A longer lease only delays the takeover after a
// crash; a shorter one could let a second run send while the first POST is in flight.
const freshLeaseSlack = 5 * time.Second

// beginFresh is AcquireToSend's common case in one command without a script: a message that
// no run has touched yet (no ledger field) gets its first entry, already in flight with fence 1,
// by HSETNX. It returns nil, nil when the message has a ledger already (a later run: the script
// decides) or its deadline has passed (the script archives it).
//
// HSETNX cannot refuse to create the hash, so HEXISTS of asynq's state field goes in the same
// pipeline: a task deleted while this run was on its way has no state, and the stray field is
// removed again (a task ID is never reused, so nothing else can own that hash).
//
// Times here are this process's clock, as in asynq's own task leases; the lease gets
// freshLeaseSlack on top to absorb clock skew. Every later write uses Redis's clock.
func (l *Ledger) beginFresh(ctx context.Context, queue, taskID string, intent SendIntent) (*Ownership, error) {
	now := l.now()
	deadline := intent.SendBefore
	if deadline.IsZero() {
		deadline = now.Add(intent.SendWithin)
	}
	if !now.Before(deadline) {
		return nil, nil
	}
	ms := now.UnixMilli()
	// "i:1:<lease until>:<started>:<first seen>:1", without fmt (every message writes one).
	entry := make([]byte, 0, 64)
	entry = append(entry, attemptCode[attemptInFlight]...)
	entry = strconv.AppendInt(append(entry, ":1:"...), ms+(intent.Lease+freshLeaseSlack).Milliseconds(), 10)
	entry = strconv.AppendInt(append(entry, ':'), ms, 10)
	entry = strconv.AppendInt(append(entry, ':'), ms, 10)
	entry = append(entry, ":1"...)
	key := LedgerKey(queue, taskID)
	var created, exists *redis.BoolCmd
	l.pipe.OneTrip(ctx, func(c redis.Cmdable) {
		created = c.HSetNX(ctx, key, ledgerField, entry)
		exists = c.HExists(ctx, key, "state")
	})
	// Both replies are in (an autopipelined command's Err waits for it) before anything is
	// sent to Twilio.
	err := created.Err()
	if err == nil {
		err = exists.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("send ledger: acquire: %w", err)
	}
	switch {
	case !created.Val():
		return nil, nil
	case !exists.Val():
		if err := l.rdb.HDel(ctx, key, ledgerField).Err(); err != nil {
			return nil, fmt.Errorf("send ledger: remove the entry of a deleted task: %w", err)
		}
		return &Ownership{Gone: true}, nil
	}
	at := time.UnixMilli(ms).UTC()
	return &Ownership{Fence: 1, Attempt: attemptInFlight, StartedAt: at, FirstSeen: at, Posts: 1, Now: at, Began: true}, nil
}

// beginScript: KEYS[1] task hash; ARGV[1] fence, ARGV[2] lease ms.
var beginScript = redis.NewScript(luaLedger + `
if fence ~= ARGV[1] then return {'fenced'} end
` + luaNow + `
a, lease, started, posts = 'f', now + tonumber(ARGV[2]), now, tonumber(posts) + 1
put()
return {'ok', tostring(now), tostring(posts)}
`)

// BeginSend records that a POST is about to start and extends the lease to cover it. It returns
// the recorded start time and the POST count including this one, or ErrLostOwnership.
func (l *Ledger) BeginSend(ctx context.Context, queue, taskID string, fence int64, lease time.Duration) (time.Time, int, error) {
	res, err := beginScript.Run(ctx, l.rdb, []string{LedgerKey(queue, taskID)}, fence, lease.Milliseconds()).StringSlice()
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("send ledger: begin send: %w", err)
	}
	if res[0] == "fenced" {
		return time.Time{}, 0, ErrLostOwnership
	}
	return msTime(res[1]), int(atoi(res[2])), nil
}

// renewScript: KEYS[1] task hash; ARGV[1] fence, ARGV[2] lease ms.
var renewScript = redis.NewScript(luaLedger + `
if fence ~= ARGV[1] then return 'fenced' end
` + luaNow + `
lease = now + tonumber(ARGV[2])
put()
return 'ok'
`)

// Renew extends the lease of a run that is still working (reconciling); ErrLostOwnership if taken.
func (l *Ledger) Renew(ctx context.Context, queue, taskID string, fence int64, lease time.Duration) error {
	res, err := renewScript.Run(ctx, l.rdb, []string{LedgerKey(queue, taskID)}, fence, lease.Milliseconds()).Text()
	if err != nil {
		return fmt.Errorf("send ledger: renew: %w", err)
	}
	if res == "fenced" {
		return ErrLostOwnership
	}
	return nil
}

// releaseScript: KEYS[1] task hash; ARGV[1] fence, ARGV[2] attempt code, ARGV[3] outcome JSON
// (” : leave the result as it is), ARGV[4] attempt-log rows, ARGV[5] waits to count.
var releaseScript = redis.NewScript(luaLedger + luaAddLog + `
if fence ~= ARGV[1] then return 'fenced' end
a, lease = ARGV[2], 0
local extra = {}
if ARGV[3] ~= '' then table.insert(extra, 'result'); table.insert(extra, ARGV[3]) end
if ARGV[4] ~= '' or ARGV[5] ~= '' then table.insert(extra, 'pl'); table.insert(extra, addlog(oldlog, ARGV[4], ARGV[5])) end
put(unpack(extra))
return 'ok'
`)

// Release gives the message up with the given attempt state — attemptNone when nothing can have
// been created, attemptUnknown when the last POST may have created it — and, when o is not nil,
// records o as the task's result in the same step.
//
// log entries (attemptlog.go) are added to the message's attempt log in the same step.
func (l *Ledger) Release(ctx context.Context, queue, taskID string, fence int64, attempt string, o *tasks.Outcome, log ...LogEntry) error {
	code, ok := attemptCode[attempt]
	if !ok || attempt == attemptSent || attempt == attemptInFlight {
		return fmt.Errorf("send ledger: release with attempt %q", attempt)
	}
	var data []byte
	if o != nil {
		var err error
		if data, err = tasks.EncodeOutcome(o); err != nil {
			return err
		}
	}
	rows, waits := logArgs(log)
	res, err := releaseScript.Run(ctx, l.rdb, []string{LedgerKey(queue, taskID)}, fence, code, data, rows, waits).Text()
	if err != nil {
		return fmt.Errorf("send ledger: release: %w", err)
	}
	if res == "fenced" {
		return ErrLostOwnership
	}
	if o != nil && o.ErrorCode != 0 {
		_ = tasks.CountError(ctx, l.rdb, o.ErrorCode, l.now()) // the console's top errors
	}
	return nil
}

// ErrClaimed means the interaction is already recorded by another message of ours.
var ErrClaimed = errors.New("send ledger: interaction already recorded by another message")

// sentScript: KEYS[1] task hash; ARGV[1] fence, ARGV[2] outcome JSON, ARGV[3] attempt-log
// rows, ARGV[4] waits. Three commands: HMGET, HSET, and the EVALSHA itself.
var sentScript = redis.NewScript(luaAddLog + `
local h = redis.call('HMGET', KEYS[1], 'proxyq', 'pl')
local raw = h[1]
if not raw or string.match(raw, '^%a:(%d+):') ~= ARGV[1] then return 'fenced' end
if h[2] then
  redis.call('HSET', KEYS[1], 'proxyq', 's', 'result', ARGV[2], 'pl', addlog(h[2], ARGV[3], ARGV[4]))
else
  redis.call('HSET', KEYS[1], 'proxyq', 's', 'result', ARGV[2])
end
return 'ok'
`)

// claimScript is the claim alone, for a Redis Cluster: KEYS[1] the interaction's key; ARGV[1..4]
// as interaction.LuaClaim takes them. Returns 'claimed' or how it claimed (see LuaClaim).
var claimScript = redis.NewScript(`local ci = 1` + interaction.LuaClaim + `
return claim
`)

// claimSentScript is the claim and sentScript in one step, for a single Redis (not a cluster),
// with the Message SID's lookup entry (lookup.go): KEYS[1] task hash, KEYS[2] Message SID index,
// KEYS[3] the interaction's key; ARGV[1] fence, ARGV[2] outcome JSON, ARGV[3] attempt-log rows,
// ARGV[4] waits, ARGV[5] Message SID ("" for none), ARGV[6] its index entry, ARGV[7] the
// index's expiry ms (0: leave it), ARGV[8..11] the claim (interaction.LuaClaim). Returns
// 'fenced', 'claimed', or how it claimed. Five commands: EVALSHA, HMGET, SET NX GET, HSET, HSET
// of the index (a PEXPIREAT of the index once a day per process; a PTTL and a SET when the
// key held something).
var claimSentScript = redis.NewScript(luaAddLog + `
local h = redis.call('HMGET', KEYS[1], 'proxyq', 'pl')
local raw = h[1]
if not raw or string.match(raw, '^%a:(%d+):') ~= ARGV[1] then return 'fenced' end
local ci = 8` + interaction.LuaClaim + `
if h[2] then
  redis.call('HSET', KEYS[1], 'proxyq', 's', 'result', ARGV[2], 'pl', addlog(h[2], ARGV[3], ARGV[4]))
else
  redis.call('HSET', KEYS[1], 'proxyq', 's', 'result', ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
  if ARGV[7] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[7]) end
end
return claim
`)

// Claim is who claims a Proxy interaction MarkSent records: the message's account, which the
// delivery index keeps (only callbacks signed by it may change the message). An empty
// AccountSID is allowed (the delivery service then writes its default account's).
type Claim struct {
	AccountSID string
}

// MarkSent records the outcome as the task's result and the ledger as sent. With claim set it
// first claims the outcome's interaction SID for this message (a Proxy message); with claim
// nil nothing is claimed: a message whose reconciliation is exact (a Conversations message,
// found by its stamp) only records. It returns ErrClaimed when another message already
// recorded that SID, or ErrLostOwnership. indexed reports that the claim was new and nothing
// waited on it: the interaction's key is in place as the delivery index wants it, and no
// status callback came early (DeliveryHook.Recorded then only schedules the poll). On one
// Redis this is one script. In a cluster the claim is taken first, by itself: a claim left
// behind by a run that then lost ownership names this same task, and the run that took over
// adopts it.
//
// log entries are added to the attempt log in the same step, and the Message SID is indexed for
// the console (lookup.go).
func (l *Ledger) MarkSent(ctx context.Context, queue, taskID string, claim *Claim, fence int64, o *tasks.Outcome, log ...LogEntry) (indexed bool, err error) {
	rows, waits := logArgs(log)
	if rows != "" || waits != "" {
		// This run's part of the log rides in the record (no field of its own: ~40 bytes less
		// per message); a message whose earlier runs started field pl gets it there too, and
		// pl, when present, is the whole log (ReadAttemptLog).
		withLog := *o
		withLog.AttemptLog = logValue(waits, rows)
		o = &withLog
	}
	data, err := tasks.EncodeOutcome(o)
	if err != nil {
		return false, err
	}
	if claim == nil {
		return false, l.markSent(ctx, l.pipe.Cmds(), queue, taskID, fence, data, rows, waits)
	}
	ikey := interaction.Key(o.InteractionSID)
	ival := interaction.Ref{Queue: queue, TaskID: taskID, AccountSID: claim.AccountSID}.Value()
	ttl := l.ttl.Milliseconds()
	day := l.now().UnixMilli() / dayMs
	sm := l.sidIndex.entry(day, o.OutboundResourceSID, queue, taskID, (day+1)*dayMs+ttl)
	if !l.splitClaim {
		res, err := claimSentScript.Run(ctx, l.pipe.Cmds(), []string{LedgerKey(queue, taskID), sm.key, ikey},
			fence, data, rows, waits, sm.field, sm.value, sm.expireAt, ival, taskID, ttl, "0").Text()
		if err != nil {
			return false, fmt.Errorf("send ledger: mark sent: %w", err)
		}
		switch res {
		case "fenced":
			return false, ErrLostOwnership
		case "claimed":
			return false, ErrClaimed
		}
		return res == "new" && claim.AccountSID != "", nil
	}
	res, err := claimScript.Run(ctx, l.rdb, []string{ikey}, ival, taskID, ttl, "1").Text()
	if err != nil {
		return false, fmt.Errorf("send ledger: claim: %w", err)
	}
	if res == "claimed" {
		return false, ErrClaimed
	}
	if err := l.markSent(ctx, l.rdb, queue, taskID, fence, data, rows, waits); err != nil {
		return false, err
	}
	// In a cluster the index is in another slot: its own write, after the record. Losing it
	// loses a console lookup by Message SID, never the send.
	sm.write(ctx, l.rdb)
	return false, nil
}

// markSent is the record alone (sentScript): the ledger says sent, the result is the outcome,
// and the attempt log gains rows and waits.
func (l *Ledger) markSent(ctx context.Context, c redis.Scripter, queue, taskID string, fence int64, data []byte, rows, waits string) error {
	res, err := sentScript.Run(ctx, c, []string{LedgerKey(queue, taskID)}, fence, data, rows, waits).Text()
	if err != nil {
		return fmt.Errorf("send ledger: mark sent: %w", err)
	}
	if res == "fenced" {
		return ErrLostOwnership
	}
	return nil
}

// ClaimedBy returns the task ID that claimed each of the given interaction SIDs of one
// participant ("" if none), for interactions recorded between since and until. One pipeline:
// the interactions' keys, and where earlier versions kept claims (the participant's hashes for
// the days of the range, one HMGET each, and the claim keys before those).
func (l *Ledger) ClaimedBy(ctx context.Context, participantSID string, since, until time.Time, sids []string) ([]string, error) {
	if len(sids) == 0 {
		return nil, nil
	}
	first := since.Add(-claimDaySlack).UnixMilli() / dayMs
	last := until.Add(claimDaySlack).UnixMilli() / dayMs
	if last < first {
		last = first
	}
	var days []*redis.SliceCmd
	keys := make([]*redis.StringCmd, len(sids))
	legacy := make([]*redis.StringCmd, len(sids))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sid := range sids {
			keys[i] = p.Get(ctx, interaction.Key(sid))
		}
		for day := first; day <= last; day++ {
			days = append(days, p.HMGet(ctx, claimsKey(participantSID, day), sids...))
		}
		for i, sid := range sids {
			legacy[i] = p.Get(ctx, legacyClaimKey(sid))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("send ledger: read claims: %w", err)
	}
	for _, d := range days {
		if d.Err() != nil {
			return nil, fmt.Errorf("send ledger: read claims: %w", d.Err())
		}
	}
	out := make([]string, len(sids))
	for i := range sids {
		v, err := keys[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("send ledger: read claims: %w", err)
		}
		if err == nil {
			ref, _, err := interaction.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("send ledger: read claims: %w", err)
			}
			if ref != nil {
				out[i] = ref.TaskID
				continue
			}
		}
		for _, d := range days {
			if v, ok := d.Val()[i].(string); ok && out[i] == "" {
				out[i] = v
			}
		}
		if v, err := legacy[i].Result(); err == nil && out[i] == "" {
			out[i] = v
		} else if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("send ledger: read claims: %w", err)
		}
	}
	return out, nil
}

// Entry is a read-only view of one message's ledger, for status and cancellation checks.
type Entry struct {
	Attempt    string
	LeaseUntil time.Time
	StartedAt  time.Time
	Posts      int // 0 once sent: the outcome record has the count
}

// MaySend reports whether a request that could create the interaction is outstanding or done:
// cancelling such a message could lose track of a real SMS.
func (e Entry) MaySend(now time.Time) bool {
	return e.Attempt == attemptInFlight || e.Attempt == attemptUnknown || e.Attempt == attemptSent || e.LeaseUntil.After(now)
}

// Read returns the ledger entry of a message (zero Entry if none, or if the task is gone).
func (l *Ledger) Read(ctx context.Context, queue, taskID string) (Entry, error) {
	raw, err := l.rdb.HGet(ctx, LedgerKey(queue, taskID), ledgerField).Result()
	if errors.Is(err, redis.Nil) {
		return Entry{}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("send ledger: read: %w", err)
	}
	return parseEntry(raw)
}

// parseEntry decodes the ledger field.
func parseEntry(raw string) (Entry, error) {
	if raw == attemptCode[attemptSent] {
		return Entry{Attempt: attemptSent}, nil
	}
	parts := strings.Split(raw, ":")
	if len(parts) != 6 || attemptName(parts[0]) == "" {
		return Entry{}, fmt.Errorf("send ledger: unreadable ledger field %q", raw)
	}
	return Entry{Attempt: attemptName(parts[0]), LeaseUntil: msTime(parts[2]), StartedAt: msTime(parts[3]), Posts: int(atoi(parts[5]))}, nil
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
