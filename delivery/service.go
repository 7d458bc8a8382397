package delivery

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/autopipe"
	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/tasks"
)

// Redis keys of this package. Keys a script touches together share a hash tag, so each script
// touches one Redis Cluster slot; the two sets are single keys.
//
//	proxyq:{ki:<KI>}:msg      STRING  the interaction's key (package internal/interaction): its
//	                                  message {"q","id","a"}, for IndexTTL. The send ledger
//	                                  writes it as its claim when it records a Proxy send; this
//	                                  package when it is missing (a Conversations message) or
//	                                  must say something else. "~" (interaction.Waiting) while
//	                                  callbacks wait in :early before the send is recorded;
//	                                  ,"e":1 added while early ones are applied
//	proxyq:{ki:<KI>}:early    LIST    callbacks that came before the send was recorded; PendingTTL
//	proxyq:delivery:poll      ZSET    KI, score = when to poll it next (unix ms); removed when final
//	proxyq:delivery:early     ZSET    KI with early callbacks, score = when they expire (unix ms)
//
// The outcome record itself is asynq's: field "result" of asynq:{<queue>}:t:<task id>.
const (
	pollKey  = "proxyq:delivery:poll"
	earlyKey = "proxyq:delivery:early"
)

// taskKey is asynq's key of a task's hash (internal/base.TaskKey in asynq v0.26); its "result"
// field holds what the task's ResultWriter wrote. The tests check it against asynq's Inspector.
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// msgRef is what the index holds (interaction.Ref): where the message's outcome record is,
// and the account whose callbacks may change it, with the interaction it was found by.
// Everything else about the message (its SM… to fetch, a Conversations message's
// conversation) is in the record, which every use reads anyway: an index entry is kept for
// every message for IndexTTL, so it holds no more than it must. Ref.MessageSID is filled from
// the record where a fetch needs it, and carried in a fetch task's payload.
type msgRef struct {
	interaction.Ref
	KI string `json:"-"`
}

// fetchSID is the Message (SM…) a fetch of o's status reads: Proxy's outbound resource; ""
// for a Conversations message, whose status comes from its receipts.
func fetchSID(o *tasks.Outcome) string {
	if o.MessageSID != "" {
		return ""
	}
	return o.OutboundResourceSID
}

// signedBy reports whether a callback signed with account's Auth Token may change this
// message: only the account the interaction was recorded under may.
func (r msgRef) signedBy(account string) bool {
	return account != "" && strings.EqualFold(account, r.AccountSID)
}

// earlyCallback is one entry of an early list: the update and the account whose Auth Token
// signed it, checked against the message's account when the send is recorded. An entry
// without a signer (written before the check existed) is refused like a wrong one.
type earlyCallback struct {
	Update
	Signer string `json:"by,omitempty"`
}

// earlyMarker is the index key's value while callbacks wait in the early list and nobody has
// claimed the interaction: the ledger's claim (or a recorded send's first write of the index,
// track) finds it and the record takes the slow path that reads them. A value that begins
// with it (a claim whose record may be missing: interaction.Waiting + ref) means the same to
// callbacks. lookup reads both as "not indexed".
const earlyMarker = interaction.Waiting

// earlyScript: the index if the interaction is recorded; else keep the callback for later,
// and mark the index key (earlyMarker) for as long as the list lives, unless a claim already
// holds it. One script, so a callback never slips between a record's read of the list and its
// own append.
var earlyScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 1) ~= "` + earlyMarker + `" then return v end
redis.call("RPUSH", KEYS[2], ARGV[1])
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[2]), -1)
redis.call("PEXPIRE", KEYS[2], ARGV[3])
if not v or v == "` + earlyMarker + `" then redis.call("SET", KEYS[1], "` + earlyMarker + `", "PX", ARGV[3]) end
return false
`)

// recordScript is the slow path of writing the index (track): it writes the index and reads
// the callbacks that came early. It leaves them in place: track deletes them once applied,
// so a failure in between loses none. While they are there the index carries ,"e":1 (ARGV[1]
// is a JSON object), so that a repeated Recorded, whose SET NX finds the key, comes back here
// and applies them again (applying is idempotent). Once the index exists no callback is
// appended any more (earlyScript), so the list cannot grow behind Recorded's back. It never
// shortens the key's life: the key is the send ledger's claim too, which may be kept longer.
var recordScript = redis.NewScript(`
local l = redis.call("LRANGE", KEYS[2], 0, -1)
local v = ARGV[1]
if #l > 0 then v = string.sub(v, 1, -2) .. ',"e":1}' end
redis.call("SET", KEYS[1], v, "PX", math.max(tonumber(ARGV[2]), redis.call("PTTL", KEYS[1])))
return l
`)

// claimScript takes up to ARGV[2] messages due for a poll and pushes them to ARGV[3], so that
// two workers never poll the same message in one pass.
var claimScript = redis.NewScript(`
local m = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
for _, k in ipairs(m) do redis.call("ZADD", KEYS[1], "XX", ARGV[3], k) end
return m
`)

// casScript writes a task's outcome record (ARGV[2]) only if the record is still the one the
// update was folded into (its SHA-1 is ARGV[1]): 1 written, -1 gone, or the current record
// when it changed meanwhile, to fold again without reading it again. Comparing a digest keeps
// the old record off the wire.
var casScript = redis.NewScript(`
local v = redis.call("HGET", KEYS[1], "result")
if not v then return -1 end
if redis.sha1hex(v) ~= ARGV[1] then return v end
redis.call("HSET", KEYS[1], "result", ARGV[2])
return 1
`)

// drainScript drops an expired early list and says how many callbacks it held.
var drainScript = redis.NewScript(`
local n = redis.call("LLEN", KEYS[1])
redis.call("DEL", KEYS[1])
return n
`)

// Service owns delivery status: callbacks in, the timeline in the outcome record, pending
// callbacks, the interaction index, polling, error fetches and status webhooks. It is safe for
// concurrent use, by any number of processes.
type Service struct {
	cfg     Config
	rdb     redis.UniversalClient
	client  *asynq.Client
	metrics *Metrics
	log     *zap.Logger
	now     func() time.Time
	// pipe carries the commands every message and every callback make (the record's SET and
	// ZADD, a callback's GET, HGET and compare-and-set) on go-redis's autopipeliner where there
	// is one (internal/autopipe; the same one the worker's ledger uses: go-redis keeps one per
	// client).
	pipe *autopipe.Pipe
	// recent remembers the interactions this process applied statuses to lately: where the
	// message is (its index entry, which never changes once written) and its outcome record as
	// this process last read or wrote it. A message's next callback (sent, then delivered, come
	// within seconds of queued) then skips the index's GET and the record's HGET: the
	// compare-and-set checks that the remembered record is still the current one, and hands
	// back the current one when it is not. Each replica of the callback endpoint has its own.
	recent *lru.Cache[string, recentMsg]
	// finals takes final messages off the poll set, many in one command (unschedule.go).
	finals *unscheduler
	// indexWaits are the pauses after which a callback of an interaction not indexed yet looks
	// again, before it is kept as early (defaultIndexWaits; tests set their own).
	indexWaits []time.Duration
}

// defaultIndexWaits: Twilio posts an interaction's first callback while the answer to its
// create is still on its way to the worker, which records the send a few milliseconds later.
// Found on a second look, the callback costs a GET more, where keeping it and applying it when
// the send is recorded costs some twenty commands (the early list and its set, the record's
// slow path, and their removal). A callback still unmatched after them (an ambiguous create,
// reconciled later) is kept as before: the looks only delay its answer, by 70 ms at most.
var defaultIndexWaits = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}

// recentSize bounds Service.recent: about half a kilobyte per interaction, so ≈ 10 MB, which
// holds the last 20 s of a fleet sending 1,000 messages a second.
const recentSize = 20000

// recentMsg is what Service.recent holds for an interaction.
type recentMsg struct {
	ref msgRef
	raw string // the outcome record as last read or written here; "" when not read yet
}

// perMessage returns where a message's or a callback's own commands go.
func (s *Service) perMessage() autopipe.Cmds { return s.pipe.Cmds() }

// New returns a service on rdb. cfg is defaulted and validated; metrics and log may be nil.
func New(cfg Config, rdb redis.UniversalClient, metrics *Metrics, log *zap.Logger) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("delivery: a Redis client is required")
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Service{cfg: cfg, rdb: rdb, client: asynq.NewClientFromRedisClient(rdb), metrics: metrics, log: log, now: time.Now}
	s.pipe = autopipe.New(rdb)
	s.finals = &unscheduler{rdb: rdb, log: log, linger: finalsLinger}
	s.indexWaits = defaultIndexWaits
	s.recent, _ = lru.New[string, recentMsg](recentSize) // errors only for a size ≤ 0
	return s, nil
}

// Config returns the service's configuration, defaults applied.
func (s *Service) Config() Config { return s.cfg }

// IndexTTL is how long an interaction's key must live (worker.DeliveryHook).
func (s *Service) IndexTTL() time.Duration { return s.cfg.IndexTTL }

// Recorded is the worker's hook, called on every path that finds or makes the ledger say
// sent (worker.DeliveryHook), after the outcome record is written: it indexes the interaction
// for IndexTTL, applies the callbacks that came early (those signed by the message's own
// account; others are counted as wrong_account), and schedules the polling fallback. The
// common case is the poll's ZADD NX alone: indexed says the send ledger's claim wrote the
// key as the index wants it and found no callback waiting (worker.DeliveryHook). Otherwise it
// is one round trip of two commands (SET NX GET and ZADD NX in one pipeline).
//
// It is idempotent, so the worker calls it again whenever a run finds the message sent (a
// lost MarkSent reply, a worker that died before its call, an earlier call that failed): the
// index is left when it already says the same and rewritten otherwise, early callbacks are
// deleted only once applied (until then the index says so), the poll entry is added
// only when missing (ZADD NX: a repeat never postpones a scheduled poll), and a status
// already in the timeline changes nothing. A message whose record is already final gets no
// poll entry.
//
// The error is non-nil when tracking may not be complete: the worker must then not consider
// the message done (it retries, and the retry calls Recorded again). A record that is gone
// or rewritten by a later run is not an error.
//
// A Conversations message (its record names a Message SID, IM…) is tracked the same way by
// recordedConversation (receipts.go).
func (s *Service) Recorded(ctx context.Context, queue, taskID, accountSID string, o *tasks.Outcome, indexed bool) error {
	if o != nil && o.State == tasks.OutcomeSent && o.MessageSID != "" {
		return s.recordedConversation(ctx, queue, taskID, accountSID, o)
	}
	if o == nil || o.State != tasks.OutcomeSent || o.InteractionSID == "" {
		return nil
	}
	return s.track(ctx, s.newRef(queue, taskID, accountSID, o.InteractionSID), o, nil, indexed)
}

// newRef is the index entry of a message recorded under accountSID (the default account's
// when empty) that created sid.
func (s *Service) newRef(queue, taskID, accountSID, sid string) msgRef {
	if accountSID == "" {
		accountSID = s.cfg.AccountSID
	}
	return msgRef{Ref: interaction.Ref{Queue: queue, TaskID: taskID, AccountSID: accountSID}, KI: sid}
}

// track is Recorded's work for one created SID (ref.KI: a Proxy interaction KI… or a
// Conversations message IM…): index it, apply the early updates signed by ref's account
// (expand, when not nil, turns one into the updates it means), and schedule the poll. See
// Recorded for why each step is idempotent.
func (s *Service) track(ctx context.Context, ref msgRef, o *tasks.Outcome, expand func(Update) []Update, indexed bool) error {
	var val string // the index's value, where this call writes it: not when the claim did (indexed)
	if !indexed {
		val = ref.Value()
	}
	final := o.Final || IsFinal(o.OutboundStatus)
	// The common case in one round trip of two commands: SET NX GET writes the index when the
	// key does not exist (no callback came early) and says what is there otherwise (Redis
	// 7.0+). Anything but nil or this very value — the early marker, a ref still applying its
	// early callbacks, an older server refusing the syntax — takes the script (slow path).
	var set *redis.StatusCmd
	var poll *redis.IntCmd
	s.pipe.OneTrip(ctx, func(p redis.Cmdable) {
		if !indexed {
			set = p.SetArgs(ctx, interaction.Key(ref.KI), val, redis.SetArgs{Mode: "NX", Get: true, TTL: s.cfg.IndexTTL})
		}
		if !s.cfg.PollOff && !final {
			// NX: a repeat never postpones a scheduled poll.
			poll = p.ZAddNX(ctx, pollKey, redis.Z{Score: float64(s.now().Add(s.cfg.PollAfter).UnixMilli()), Member: ref.KI})
		}
	})
	if poll != nil && poll.Err() != nil {
		return fmt.Errorf("delivery: schedule the poll of %s: %w", ref.KI, poll.Err())
	}
	var raw []string // the early callbacks; none when indexed (the claim found nothing waiting)
	if !indexed {
		if old, err := set.Result(); !errors.Is(err, redis.Nil) && (err != nil || old != val) {
			raw, err = recordScript.Run(ctx, s.perMessage(), []string{interaction.Key(ref.KI), interaction.EarlyList(ref.KI)}, val, s.cfg.IndexTTL.Milliseconds()).StringSlice()
			if err != nil {
				return fmt.Errorf("delivery: index %s: %w", ref.KI, err)
			}
		}
	}
	var ups []Update
	refused, refusedSigner := 0, ""
	for _, r := range raw {
		var e earlyCallback
		if json.Unmarshal([]byte(r), &e) != nil {
			continue
		}
		if !ref.signedBy(e.Signer) {
			refused, refusedSigner = refused+1, e.Signer
			continue
		}
		if expand != nil {
			ups = append(ups, expand(e.Update)...)
		} else {
			ups = append(ups, e.Update)
		}
	}
	if IsFinal(o.OutboundStatus) && !o.Final {
		// Already final when recorded (a reconciled send found delivered): record it as final
		// now; no callback may come for it any more.
		ups = append(ups, Update{Status: o.OutboundStatus, At: o.RecordedAt})
	}
	if len(ups) > 0 {
		if _, err := s.apply(ctx, ref, ups, "early"); err != nil && !errors.Is(err, errGone) {
			return fmt.Errorf("delivery: apply early updates of %s: %w", ref.KI, err)
		}
	}
	if len(raw) == 0 {
		return nil
	}
	if refused > 0 {
		s.wrongAccount(ref, refusedSigner, refused)
		s.metrics.Callbacks.WithLabelValues(ResultWrongAccount).Add(float64(refused))
	}
	// Applied (or refused): only now are they let go, and the index stops saying they wait (the
	// list first: the same slot, in order). One round trip. KEEPTTL: recordScript set the
	// key's life, which may be the claim's, longer than IndexTTL.
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, interaction.EarlyList(ref.KI))
		p.SetArgs(ctx, interaction.Key(ref.KI), val, redis.SetArgs{KeepTTL: true})
		p.ZRem(ctx, earlyKey, ref.KI)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delivery: clear early updates of %s: %w", ref.KI, err)
	}
	return nil
}

// lookup returns the message an interaction belongs to, or nil when it is not indexed (no
// key, or only early callbacks waiting). An interaction in s.recent needs no round trip.
func (s *Service) lookup(ctx context.Context, ki string) (*msgRef, error) {
	if m, ok := s.recent.Get(ki); ok {
		ref := m.ref
		return &ref, nil
	}
	ref, err := readIndex(ctx, s.perMessage(), ki)
	if ref != nil {
		s.recent.Add(ki, recentMsg{ref: *ref})
	}
	return ref, err
}

// readIndex reads the index of ki: nil when it is not indexed (no key, or only early callbacks
// waiting).
func readIndex(ctx context.Context, c redis.Cmdable, ki string) (*msgRef, error) {
	v, err := c.Get(ctx, interaction.Key(ki)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeRef(ki, v)
}

// decodeRef reads a value of ki's index: nil while callbacks wait (only the early marker, or
// a claim whose record may be missing).
func decodeRef(ki, v string) (*msgRef, error) {
	claim, pending, err := interaction.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("delivery: corrupt index for %s: %w", ki, err)
	}
	if pending || claim == nil {
		return nil, nil
	}
	return &msgRef{Ref: *claim, KI: ki}, nil
}

// errGone is returned by apply when the message's task no longer exists (retention over).
var errGone = errors.New("the message's record is gone")

// maxTxRetries bounds the optimistic retries of one update under contention.
const maxTxRetries = 50

// result is what apply did, for its caller's metrics and follow-ups.
type result struct {
	change  Change
	outcome tasks.Outcome
	applied []Update // the updates that changed something
	reached []string // the statuses outbound_status moved to, in order
}

// apply folds ups into the outcome record of ref, atomically: read "result" of the task's
// hash, fold, and write it back with casScript only if it is still what was read; fold again
// onto the current record when another writer (a second serve replica, a poll, the worker) got
// there first. Keys this version does not know survive (tasks.PatchOutcome). Then, outside the
// transaction: metrics, status webhooks, the error fetch, and the poll's removal when final.
//
// A compare-and-set rather than WATCH/MULTI/EXEC: the same optimistic transaction (the timeline
// rules stay in Go, applyUpdate), in two round trips and four commands (HGET, EVALSHA and its
// HGET and HSET) where WATCH, HGET, MULTI, HSET, EXEC and UNWATCH took six; with the record
// remembered in s.recent, one round trip and three. An update that changes nothing costs the
// HGET alone, or nothing when the remembered record already has it: a record only gains
// statuses (a later run's send is another interaction, which the check below refuses), so
// what is already in an older copy is in the current one.
func (s *Service) apply(ctx context.Context, ref msgRef, ups []Update, source string) (result, error) {
	key := taskKey(ref.Queue, ref.TaskID)
	var res result
	var raw string
	if m, ok := s.recent.Get(ref.KI); ok {
		raw = m.raw
	}
	committed := false
	for range maxTxRetries {
		res = result{}
		if raw == "" {
			v, err := s.perMessage().HGet(ctx, key, "result").Result()
			if errors.Is(err, redis.Nil) {
				s.recent.Remove(ref.KI)
				return res, errGone
			}
			if err != nil {
				return res, err
			}
			raw = v
		}
		o, err := tasks.ParseOutcome([]byte(raw))
		if err != nil {
			return res, fmt.Errorf("delivery: outcome record of %s: %w", ref.TaskID, err)
		}
		if o == nil || o.State != tasks.OutcomeSent || o.CreatedSID() != ref.KI {
			// A later run rewrote the record (or it belongs to another interaction): not ours to touch.
			s.recent.Remove(ref.KI)
			return res, errGone
		}
		best := Unchanged
		for _, u := range ups {
			prev, prevFinal := o.OutboundStatus, o.Final
			c := applyUpdate(o, u)
			if o.OutboundStatus != prev || o.Final != prevFinal {
				res.reached = append(res.reached, o.OutboundStatus)
			}
			if c != Unchanged {
				res.applied = append(res.applied, u)
			}
			if c == Advanced || (c == ErrorAdded && best != Advanced) || (c == Stale && best == Unchanged) {
				best = c
			}
		}
		res.change, res.outcome = best, *o
		if best == Unchanged {
			s.remember(ref, raw)
			return res, nil
		}
		data, err := tasks.PatchOutcome([]byte(raw), o)
		if err != nil {
			return res, err
		}
		sum := sha1.Sum([]byte(raw))
		v, err := casScript.Run(ctx, s.perMessage(), []string{key}, hex.EncodeToString(sum[:]), data).Result()
		if err != nil {
			return res, err
		}
		if current, changed := v.(string); changed {
			raw = current
			continue
		}
		if n, _ := v.(int64); n < 0 {
			s.recent.Remove(ref.KI)
			return res, errGone
		}
		s.remember(ref, string(data))
		committed = true
		break
	}
	if !committed {
		return res, fmt.Errorf("delivery: outcome record of %s: still changing after %d attempts", ref.TaskID, maxTxRetries)
	}
	s.after(ctx, ref, res, source)
	return res, nil
}

// remember keeps ref and its outcome record raw in s.recent.
func (s *Service) remember(ref msgRef, raw string) {
	s.recent.Add(ref.KI, recentMsg{ref: ref, raw: raw})
}

// after runs the consequences of a committed change: only the process whose transaction
// committed the change runs them, so a status change is counted and announced once.
func (s *Service) after(ctx context.Context, ref msgRef, res result, source string) {
	o := res.outcome
	if res.change == Unchanged {
		return
	}
	for _, st := range res.reached {
		code := "none"
		if st == o.OutboundStatus && o.DeliveryErrorCode != 0 {
			code = strconv.Itoa(o.DeliveryErrorCode)
		}
		s.metrics.Statuses.WithLabelValues(st, code).Inc()
	}
	if o.DeliveryErrorCode != 0 && hasError(res.applied) {
		s.metrics.Errors.WithLabelValues(strconv.Itoa(o.DeliveryErrorCode)).Inc()
		_ = tasks.CountError(ctx, s.rdb, o.DeliveryErrorCode, s.now()) // the console's top errors
	}
	if res.change == Advanced && o.OutboundStatus == StatusDelivered && o.DeliveredAt != nil && o.SentAt != nil {
		s.metrics.CreateDelivered.Observe(max(0, o.DeliveredAt.Sub(*o.SentAt).Seconds()))
	}
	s.log.Info("delivery status", zap.String("task_id", ref.TaskID), zap.String("queue", ref.Queue),
		zap.String("interaction_sid", ref.KI), zap.String("status", o.OutboundStatus), zap.Bool("final", o.Final),
		zap.Int("error_code", o.DeliveryErrorCode), zap.String("source", source))
	if o.Final {
		s.finals.add(ref.KI)
	}
	needsError := (o.OutboundStatus == StatusUndelivered || o.OutboundStatus == StatusFailed) && o.DeliveryErrorCode == 0
	if ref.MessageSID == "" {
		ref.MessageSID = fetchSID(&o)
	}
	if res.change == Advanced && needsError && ref.MessageSID != "" {
		// The callback has no error code: the worker fetches the Message, under the account's
		// limits, and announces the status with its code.
		if err := s.enqueueFetch(ctx, ref); err != nil {
			s.log.Error("delivery: could not schedule the error fetch; the webhook goes out without a code", zap.String("task_id", ref.TaskID), zap.Error(err))
			s.announce(ctx, ref, o)
		}
		return
	}
	if res.change == Advanced || res.change == ErrorAdded {
		s.announce(ctx, ref, o)
	}
}

func hasError(ups []Update) bool {
	for _, u := range ups {
		if u.ErrorCode != 0 {
			return true
		}
	}
	return false
}
