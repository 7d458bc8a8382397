package tasks

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Ordered lanes: the Redis layout, shared by producers (which take a place at enqueue) and
// workers (which ask for their turn and leave when a message ends). The policy — when a worker
// asks, how long a waiting message sleeps, deadlines — is the worker's (worker/lane.go); this
// file owns the keys and the scripts that change them, so both sides agree on them.
//
// A lane is one (queue, ordering key). Its keys carry the queue as hash tag, like asynq's own
// keys for that queue (asynq:{queue}:…), so in Redis Cluster they share one slot and one script
// can read a task's asynq state (asynq:{queue}:t:<id>, field "state") atomically with the lane:
//
//	proxyq:{queue}:lane:<key>      sorted set: task ID → place (from the seq counter); the
//	                               lowest score is the head, the message whose turn it is
//	proxyq:{queue}:laneinfo:<key>  hash: seq (last place given), r:<id> (ms, when the place was
//	                               taken; 0 once the lane has seen its task exist), w:<id> (ms,
//	                               when the message was last told to wait, i.e. it sleeps in
//	                               asynq's retry set, or is back at the end of its queue for
//	                               its own recheck, until woken; removed when woken)
//	proxyq:{queue}:lanewoken       sorted set, one per queue: task ID → ms, the messages woken
//	                               to the front of the queue and not yet picked up (their turn
//	                               check or their leaving removes them; older than an hour:
//	                               pruned at the next wake)
//
// The hash is deleted when the lane empties, so an idle key costs nothing.

// Lane limits.
const (
	MaxOrderingKeyLen = 128
	// LaneEnqueueGrace is how old a place must be before the lane treats its missing task as
	// gone: a producer takes the place first and enqueues the task right after, so a young
	// place without a task is an enqueue in progress.
	LaneEnqueueGrace = 15 * time.Second
)

var orderingKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// ValidateOrderingKey checks an ordering key: 1–128 characters of A–Z a–z 0–9 . _ : -. It
// returns nil or a *ValidationError with Field "ordering_key".
func ValidateOrderingKey(key string) error {
	switch {
	case key == "":
		return &ValidationError{Field: "ordering_key", Rule: "must not be empty"}
	case len(key) > MaxOrderingKeyLen:
		return &ValidationError{Field: "ordering_key", Rule: fmt.Sprintf("must be at most %d characters", MaxOrderingKeyLen)}
	case !orderingKeyPattern.MatchString(key):
		return &ValidationError{Field: "ordering_key", Rule: "may contain only A-Z a-z 0-9 . _ : -"}
	}
	return nil
}

// LaneKey is the sorted set of a lane's messages in order.
func LaneKey(queue, key string) string { return "proxyq:{" + queue + "}:lane:" + key }

// LaneInfoKey is the hash of a lane's counter and per-message marks.
func LaneInfoKey(queue, key string) string { return "proxyq:{" + queue + "}:laneinfo:" + key }

// LaneWokenKey is the sorted set of a queue's messages woken by their lanes and not picked up
// yet (the scripts derive it from the queue's asynq prefix).
func LaneWokenKey(queue string) string { return "proxyq:{" + queue + "}:lanewoken" }

// asynqPrefix is asynq's key prefix for a queue (asynq/internal/base.QueueKeyPrefix).
func asynqPrefix(queue string) string { return "asynq:{" + queue + "}:" }

// laneWakeScan bounds the search of a queue's pending list for a sleeping head that its own
// recheck put back at the end of the queue (entries from the back): the search is one Redis
// scan of up to this many entries, within the script, once per hand-off at most.
const laneWakeScan = "1000"

// laneWakeRun bounds how many woken messages, not picked up yet, a newly woken one queues
// behind (the order of wakes is kept up to this many; beyond it the new one goes ahead).
const laneWakeRun = "64"

// laneLua is shared by the scripts below. KEYS[1] lane, KEYS[2] lane info; ARGV[1] asynq queue
// prefix. settle drops heads that have ended or vanished and returns the live head; wake moves
// a head that sleeps because the lane told it to wait to the front of its queue: from the retry
// set, as asynq's own "run task" does but to the front; or from the back of the queue, where
// asynq's forwarder put it when its own recheck came due (without this it would wait behind
// the queue's backlog and behind every message woken after it: the 90–170 ms tail of the
// scenario 9 hand-off). The pending list is searched from its back for at most laneWakeScan
// entries (LPOS: Redis ≥ 6.0.6; on an older Redis, or further in, it stays where it is and is
// picked up in queue order). A woken head loses its w: mark, so it is moved once.
const laneLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1]
-- proxyq:{queue}:lanewoken, from P = 'asynq:{queue}:'.
local WK = 'proxyq:' .. string.sub(P, 7) .. 'lanewoken'
local function state(id) return redis.call('HGET', P .. 't:' .. id, 'state') end
local function drop(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], 'r:' .. id, 'w:' .. id)
  redis.call('ZREM', WK, id)
end
local function settle(me, grace)
  local skipped = 0
  for i = 1, 1000 do
    local h = redis.call('ZRANGE', KEYS[1], 0, 0)
    if #h == 0 then return false, false, skipped end
    local head = h[1]
    local st = state(head)
    if head == me then return head, st or 'active', skipped end
    local r = redis.call('HGET', KEYS[2], 'r:' .. head)
    if st == 'archived' or st == 'completed' then
      drop(head); skipped = skipped + 1
    elseif not st then
      if now - tonumber(r or '0') >= grace then
        drop(head); skipped = skipped + 1
      else
        return head, 'enqueuing', skipped
      end
    else
      -- Its task exists: from now on, its absence means it is gone, not still being enqueued.
      if r ~= '0' then redis.call('HSET', KEYS[2], 'r:' .. head, 0) end
      return head, st, skipped
    end
  end
  return false, false, skipped
end
local function wake(head, st)
  if (st ~= 'retry' and st ~= 'pending') or redis.call('HEXISTS', KEYS[2], 'w:' .. head) == 0 then
    return st
  end
  if st == 'retry' then
    if redis.call('ZREM', P .. 'retry', head) == 0 then return st end
    -- pending_since (ns) as asynq's own forwarder sets it: the queue's latency reads it.
    redis.call('HSET', P .. 't:' .. head, 'state', 'pending', 'pending_since',
      t[1] .. string.format('%06d', tonumber(t[2])) .. '000')
  else
    -- asynq's forwarder pushed it to the back (left) of the queue when its recheck came due.
    local pos = redis.pcall('LPOS', P .. 'pending', head, 'MAXLEN', ` + laneWakeScan + `)
    if type(pos) ~= 'number' or redis.call('LREM', P .. 'pending', 1, head) == 0 then return st end
  end
  -- The front of the queue (asynq takes from the right): it has waited its turn already. But
  -- behind the messages woken before it and not picked up yet (the right end of the list), so
  -- that woken messages go in the order they were woken: pushed straight to the end, a message
  -- woken while the workers are busy would let every later one pass it.
  local pend = P .. 'pending'
  local ahead = {}
  for i = 1, ` + laneWakeRun + ` do
    local id = redis.call('LINDEX', pend, -i)
    if not id or not redis.call('ZSCORE', WK, id) then break end
    ahead[i] = id
  end
  for i = 1, #ahead do redis.call('RPOP', pend) end
  redis.call('RPUSH', pend, head)
  for i = #ahead, 1, -1 do redis.call('RPUSH', pend, ahead[i]) end
  redis.call('ZREMRANGEBYSCORE', WK, '-inf', now - 3600000)
  redis.call('ZADD', WK, now, head)
  redis.call('HDEL', KEYS[2], 'w:' .. head)
  return 'woken'
end
local function tidy()
  if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
end
`

// lanePlaceScript takes places for messages in argument order. KEYS: lane, info per message;
// ARGV[1] unused prefix slot, ARGV[2…] task IDs. Returns 1 per new place, 0 when the ID already
// has one (a re-enqueued idempotency key keeps its first place).
var lanePlaceScript = redis.NewScript(laneLua + `
local out = {}
for i = 2, #ARGV do
  local lane, info, id = KEYS[2*i-3], KEYS[2*i-2], ARGV[i]
  if redis.call('ZSCORE', lane, id) then
    out[#out+1] = 0
  else
    local seq = redis.call('HINCRBY', info, 'seq', 1)
    redis.call('ZADD', lane, seq, id)
    redis.call('HSET', info, 'r:' .. id, now)
    out[#out+1] = 1
  end
end
return out
`)

// leaveScript removes a message from its lane and wakes the new head if it sleeps because the
// lane told it to. ARGV[2] task ID, ARGV[3] grace ms, ARGV[4] "1": only if the task does not
// exist (an enqueue that failed). Returns {removed, head, head state or "woken", skipped}.
var leaveScript = redis.NewScript(laneLua + `
local me = ARGV[2]
local removed = 0
if ARGV[4] ~= '1' or redis.call('EXISTS', P .. 't:' .. me) == 0 then
  if redis.call('ZSCORE', KEYS[1], me) then removed = 1 end
  drop(me)
end
local head, st, skipped = settle('', tonumber(ARGV[3]))
local res = {removed, '', '', skipped}
if head then res[2] = head; res[3] = wake(head, st) end
tidy()
return res
`)

// turnScript asks whether it is a running message's turn. A message not in its lane joins the
// tail. ARGV[2] task ID, ARGV[3] grace ms. Returns {"go"|"wait", rank, head, head state
// (or "woken"), skipped, joined}; on "wait" the message is marked as sleeping (w:).
var turnScript = redis.NewScript(laneLua + `
local me = ARGV[2]
local joined = 0
if not redis.call('ZSCORE', KEYS[1], me) then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], seq, me)
  joined = 1
end
redis.call('HSET', KEYS[2], 'r:' .. me, 0)
redis.call('ZREM', WK, me)
local head, st, skipped = settle(me, tonumber(ARGV[3]))
if head == me then
  redis.call('HDEL', KEYS[2], 'w:' .. me)
  return {'go', 0, me, st, skipped, joined}
end
local rank = redis.call('ZRANK', KEYS[1], me)
redis.call('HSET', KEYS[2], 'w:' .. me, now)
return {'wait', rank, head, wake(head, st), skipped, joined}
`)

// wakeScript wakes ARGV[2] if it is the head and sleeps in the retry set because the lane told
// it to wait. Returns its state ("woken" when moved), or "" when it is no longer a sleeping head.
var wakeScript = redis.NewScript(laneLua + `
local h = redis.call('ZRANGE', KEYS[1], 0, 0)
if #h == 0 or h[1] ~= ARGV[2] or redis.call('HEXISTS', KEYS[2], 'w:' .. ARGV[2]) == 0 then return '' end
return wake(ARGV[2], state(ARGV[2]) or '')
`)

// laneEntry is one message taking a place.
type laneEntry struct {
	queue, key, id string
}

// reserveLanes takes places for entries, in order, one script per queue (a queue's lanes share
// one slot). It returns, per entry, whether a new place was taken.
func reserveLanes(ctx context.Context, rdb redis.UniversalClient, entries []laneEntry) ([]bool, error) {
	added := make([]bool, len(entries))
	byQueue := map[string][]int{}
	var order []string
	for i, e := range entries {
		if _, ok := byQueue[e.queue]; !ok {
			order = append(order, e.queue)
		}
		byQueue[e.queue] = append(byQueue[e.queue], i)
	}
	for _, q := range order {
		idx := byQueue[q]
		keys := make([]string, 0, 2*len(idx))
		args := make([]any, 0, len(idx)+1)
		args = append(args, asynqPrefix(q))
		for _, i := range idx {
			keys = append(keys, LaneKey(q, entries[i].key), LaneInfoKey(q, entries[i].key))
			args = append(args, entries[i].id)
		}
		res, err := lanePlaceScript.Run(ctx, rdb, keys, args...).Int64Slice()
		if err != nil {
			return added, fmt.Errorf("take a place in the message's ordering lane: %w", err)
		}
		for j, i := range idx {
			added[i] = j < len(res) && res[j] == 1
		}
	}
	return added, nil
}

// releaseFailed gives back the place of a message whose enqueue returned an error or found
// its idempotency key in use, unless its task exists on the place's queue after all (the error
// hid a success, or the key's message is on this queue and the place is its own). Best effort:
// a place left behind is skipped by the lane once LaneEnqueueGrace has passed.
func releaseFailed(ctx context.Context, rdb redis.UniversalClient, e laneEntry) {
	_ = leaveScript.Run(ctx, rdb, []string{LaneKey(e.queue, e.key), LaneInfoKey(e.queue, e.key)},
		asynqPrefix(e.queue), e.id, LaneEnqueueGrace.Milliseconds(), "1").Err()
}

// Turn is a lane's answer to a running message.
type Turn struct {
	Go bool // it is this message's turn
	// Ahead is how many messages are ahead of it (0 when Go).
	Ahead int
	// Head is the lane's head and HeadState its asynq state ("enqueuing": its place is taken
	// but its task does not exist yet; "woken": it slept and was just moved to its queue).
	Head, HeadState string
	Skipped         int  // heads dropped because they had ended or vanished
	Joined          bool // the message was not in its lane and joined its tail
}

// LaneTurn asks whether it is the turn of message id, running now, in lane (queue, key).
// grace is how old a place without a task must be to be skipped (LaneEnqueueGrace).
func LaneTurn(ctx context.Context, rdb redis.UniversalClient, queue, key, id string, grace time.Duration) (Turn, error) {
	res, err := turnScript.Run(ctx, rdb, []string{LaneKey(queue, key), LaneInfoKey(queue, key)},
		asynqPrefix(queue), id, grace.Milliseconds()).Slice()
	if err != nil {
		return Turn{}, fmt.Errorf("ordering lane: %w", err)
	}
	if len(res) < 6 {
		return Turn{}, fmt.Errorf("ordering lane: unexpected reply %v", res)
	}
	t := Turn{Go: str(res[0]) == "go", Ahead: int(num(res[1])), Head: str(res[2]), HeadState: str(res[3]),
		Skipped: int(num(res[4])), Joined: num(res[5]) == 1}
	return t, nil
}

// Leave is what LeaveLane did.
type Leave struct {
	Removed bool
	// Head is the lane's head afterwards ("" when empty) and HeadState its state, "woken" when
	// it slept on the lane and was moved to its queue.
	Head, HeadState string
	Skipped         int
}

// LeaveLane removes message id, which has ended, from its lane and wakes the next message.
func LeaveLane(ctx context.Context, rdb redis.UniversalClient, queue, key, id string, grace time.Duration) (Leave, error) {
	res, err := leaveScript.Run(ctx, rdb, []string{LaneKey(queue, key), LaneInfoKey(queue, key)},
		asynqPrefix(queue), id, grace.Milliseconds(), "0").Slice()
	if err != nil {
		return Leave{}, fmt.Errorf("ordering lane: %w", err)
	}
	if len(res) < 4 {
		return Leave{}, fmt.Errorf("ordering lane: unexpected reply %v", res)
	}
	return Leave{Removed: num(res[0]) == 1, Head: str(res[1]), HeadState: str(res[2]), Skipped: int(num(res[3]))}, nil
}

// WakeLaneHead moves id to its queue if it is its lane's head and sleeps on the lane. It
// returns "woken", the state it is in otherwise ("active": still running, perhaps about to go
// to sleep), or "" when it is no longer a sleeping head.
func WakeLaneHead(ctx context.Context, rdb redis.UniversalClient, queue, key, id string) (string, error) {
	s, err := wakeScript.Run(ctx, rdb, []string{LaneKey(queue, key), LaneInfoKey(queue, key)},
		asynqPrefix(queue), id).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return s, err
}

// LaneStatus is a message's place in its lane, as `proxyq status` and the HTTP API show it.
type LaneStatus struct {
	Key string `json:"key"`
	// Position is 1 for the head (its turn), 2 for the next…; 0 when the message is not in its
	// lane (it has ended, or has not been picked up since it left).
	Position int `json:"position,omitempty"`
	Ahead    int `json:"ahead"`  // messages before it
	Length   int `json:"length"` // messages in the lane
	// Head is the task ID of the lane's head and HeadState its asynq state.
	Head      string `json:"head,omitempty"`
	HeadState string `json:"head_state,omitempty"`
	// WaitingFor says in words what the message waits for, when it waits on its lane.
	WaitingFor string `json:"waiting_for,omitempty"`
}

// LeaveLane takes a message that was just cancelled (st is its status from Cancel) out of its
// lane and wakes the next message at once, instead of leaving the lane to find out at its next
// check. Messages without an ordering key are left alone.
func (e *Enqueuer) LeaveLane(ctx context.Context, st *Status) error {
	if st == nil || st.Message.OrderingKey == "" {
		return nil
	}
	rdb, err := e.lanes.client()
	if err != nil {
		return err
	}
	_, err = LeaveLane(ctx, rdb, st.Queue, st.Message.OrderingKey, st.ID, LaneEnqueueGrace)
	return err
}

// ReadLane fills st.Lane on the Enqueuer's Redis (see the function ReadLane).
func (e *Enqueuer) ReadLane(ctx context.Context, st *Status) error {
	if st == nil || st.Message.OrderingKey == "" {
		return nil
	}
	rdb, err := e.lanes.client()
	if err != nil {
		return err
	}
	return ReadLane(ctx, rdb, st)
}

// ReadLane fills st.Lane for a message with an ordering key; other messages are left alone.
func ReadLane(ctx context.Context, rdb redis.UniversalClient, st *Status) error {
	if st == nil || st.Message.OrderingKey == "" {
		return nil
	}
	key := st.Message.OrderingKey
	lane := LaneKey(st.Queue, key)
	pipe := rdb.Pipeline()
	rank := pipe.ZRank(ctx, lane, st.ID)
	length := pipe.ZCard(ctx, lane)
	head := pipe.ZRange(ctx, lane, 0, 0)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read ordering lane: %w", err)
	}
	ls := &LaneStatus{Key: key, Length: int(length.Val())}
	if heads := head.Val(); len(heads) > 0 {
		ls.Head = heads[0]
		hs, err := rdb.HGet(ctx, asynqPrefix(st.Queue)+"t:"+ls.Head, "state").Result()
		switch {
		case errors.Is(err, redis.Nil):
			ls.HeadState = "gone"
		case err != nil:
			return fmt.Errorf("read ordering lane: %w", err)
		default:
			ls.HeadState = hs
		}
	}
	if rank.Err() == nil {
		ls.Position, ls.Ahead = int(rank.Val())+1, int(rank.Val())
	}
	st.Lane = ls
	done := st.State == "completed" || st.State == "archived"
	if ls.Position > 1 && !done {
		ls.WaitingFor = fmt.Sprintf("its turn in lane %q: %d earlier message(s) must end first; the head %s is %s",
			key, ls.Ahead, ls.Head, ls.HeadState)
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case string:
		i, _ := strconv.ParseInt(n, 10, 64)
		return i
	}
	return 0
}

// laneRedis is the Enqueuer's Redis connection for lanes, made on first use so that producers
// of unordered messages never open it.
type laneRedis struct {
	mu    sync.Mutex
	opt   asynq.RedisConnOpt
	rdb   redis.UniversalClient
	owned bool
}

func (l *laneRedis) client() (redis.UniversalClient, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rdb != nil {
		return l.rdb, nil
	}
	if l.opt == nil {
		return nil, errors.New("ordering_key needs Redis access for the lane: build the Enqueuer with NewEnqueuer, or call WithLaneRedis")
	}
	rdb, ok := l.opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("ordering lanes: unsupported Redis option %T", l.opt)
	}
	l.rdb, l.owned = rdb, true
	return rdb, nil
}

func (l *laneRedis) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned && l.rdb != nil {
		_ = l.rdb.Close()
		l.rdb, l.owned = nil, false
	}
}

// WithLaneRedis gives an Enqueuer built with NewEnqueuerFromClient the Redis its ordering
// lanes live on (the same Redis as the asynq client); Close leaves rdb open.
func (e *Enqueuer) WithLaneRedis(rdb redis.UniversalClient) *Enqueuer {
	e.lanes.mu.Lock()
	defer e.lanes.mu.Unlock()
	e.lanes.rdb, e.lanes.owned = rdb, false
	return e
}

// lanePlaces remembers the places a batch took, to give back those whose enqueue failed or was
// a duplicate.
type lanePlaces struct {
	rdb     redis.UniversalClient
	entries map[int]laneEntry // by message index; only newly taken places
}

// takeLanePlaces takes, in input order, a lane place for every message with an ordering key.
// opts(i) are message i's prepared asynq options (task ID and queue).
func (e *Enqueuer) takeLanePlaces(ctx context.Context, msgs []Message, opts func(int) []asynq.Option) (*lanePlaces, error) {
	var entries []laneEntry
	var index []int
	for i, m := range msgs {
		if m.Payload.OrderingKey == "" {
			continue
		}
		id, queue := taskIDAndQueue(opts(i))
		entries = append(entries, laneEntry{queue: queue, key: m.Payload.OrderingKey, id: id})
		index = append(index, i)
	}
	if len(entries) == 0 {
		return &lanePlaces{}, nil
	}
	rdb, err := e.lanes.client()
	if err != nil {
		return nil, err
	}
	added, err := reserveLanes(ctx, rdb, entries)
	places := &lanePlaces{rdb: rdb, entries: map[int]laneEntry{}}
	for j, ok := range added {
		if ok {
			places.entries[index[j]] = entries[j]
		}
	}
	if err != nil {
		// Places taken before the failure: give them back, nothing was enqueued.
		for i := range places.entries {
			places.release(ctx, i)
		}
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	return places, nil
}

// release gives back message i's place after its enqueue failed or was a duplicate.
func (p *lanePlaces) release(ctx context.Context, i int) {
	e, ok := p.entries[i]
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	releaseFailed(rctx, p.rdb, e)
}
