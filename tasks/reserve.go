package tasks

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Idempotency keys across queues.
//
// asynq makes a task ID unique within one queue (its key is asynq:{queue}:t:{id}), so on its
// own the same idempotency key sent to two queues makes two messages. The Enqueuer therefore
// reserves every key while it enqueues, in a key of its own:
//
//	proxyq:{idem:<idempotency key>} = "r|<reserved at, Redis ms>|<token>|<queue>"
//
// One key, one hash slot: slot-safe on Redis Cluster. The reservation is the arbiter between
// producers enqueuing at the same time: it is taken with a compare-and-set script (SET when
// absent), so of two producers racing one key onto two queues exactly one holds it. The holder
// then looks for a task with that ID on every other queue (asynq:queues, the set asynq keeps of
// every queue it enqueued to): found, it answers with that task, Duplicate set; else it
// enqueues, and releases the reservation (a compare-and-delete script). Once released, the key
// is held by the task itself: the next producer reserves, finds the task on its queue and
// answers Duplicate. So one key names one message across queues for as long as that message
// exists, in any state (archived tasks included), and a completed message costs no key of its
// own: the reservation lives for the milliseconds of an enqueue.
//
//   - A reservation found is checked against its task (EXISTS on asynq's task key in the
//     reserved queue). Task there: duplicate. Task absent: its producer is between reserving
//     and releasing, or crashed there; it is waited for, and taken over once ReservationGrace
//     has passed since the reservation (Redis's clock) — so a crash never blocks a key for
//     good. A crashed producer's reservation expires after reservationHold in any case.
//   - A producer on the same queue as the reservation does not wait: asynq's own
//     create-unless-the-ID-exists decides between the two.
//   - Fence: a producer that finds at release that its reservation was taken over or is gone
//     (it was paused for longer than the grace) settles with the tasks: if another queue holds
//     a task with the key, or gets one within the grace, it withdraws its own task (asynq
//     DeleteTask, which succeeds while the task waits) and answers Duplicate; else its task
//     is the key's one message. The one case left is a producer paused longer than the grace
//     whose task a worker has already started by the time it withdraws: two messages may then
//     exist, and Enqueue says so in its error (ErrKeyTakenOver).
//   - Reservations of earlier versions, committed ("c|…") and kept for the task's retention,
//     are read the same way until they expire: their task found, duplicate; gone, taken over.

// ReservationGrace is how long a producer that reserved a key has to enqueue its task before
// another producer may take the key over. An enqueue takes milliseconds; the grace only
// matters after a producer crashed (or was paused) between the two steps.
const ReservationGrace = 10 * time.Second

const (
	// reservationHold bounds a reservation's life: it is released as soon as its task is
	// enqueued, so only a producer that crashed in between leaves one, and then not for long.
	reservationHold = time.Hour
	// reservationPoll is how often a producer waiting on another's reservation looks again.
	reservationPoll = 20 * time.Millisecond
	// maxReservationRounds bounds the compare-and-set loop of one enqueue.
	maxReservationRounds = 1000
	// allQueuesKey is asynq's set of every queue it has enqueued to (base.AllQueues).
	allQueuesKey = "asynq:queues"
)

// ErrKeyTakenOver is returned (wrapped) by Enqueue when a producer paused between reserving a
// key and enqueuing its task lost the key to another producer and could not withdraw its own
// task because a worker had already started it: the key may now name two messages.
var ErrKeyTakenOver = errors.New("idempotency key taken over by another producer while this enqueue was paused")

// ReservationKey is the Redis key that reserves an idempotency key across queues while a
// producer enqueues.
func ReservationKey(idempotencyKey string) string { return "proxyq:{idem:" + idempotencyKey + "}" }

// asynqTaskKey is where asynq v0.26 keeps a task (internal/base.TaskKey); it exists from
// enqueue until the task is deleted, whatever its state. TestAsynqTaskKeyLayout pins it.
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// reserveScript sets KEYS[1] to a fresh "r" reservation when it holds ARGV[1] ("" for
// absent): {1, value, now} then, else {0, current value or "", now}. now is Redis's clock in
// ms, so producers with skewed clocks agree on a reservation's age.
var reserveScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end -- TIME before a write (Redis < 5)
local v = redis.call('GET', KEYS[1]) or ''
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if v ~= ARGV[1] then
  return {0, v, now}
end
local mine = 'r|' .. string.format('%.0f', now) .. '|' .. ARGV[2] .. '|' .. ARGV[3]
redis.call('SET', KEYS[1], mine, 'PX', ARGV[4])
return {1, mine, now}
`)

// releaseScript deletes KEYS[1] when it holds ARGV[1]: {1} then, else {0, current value or
// ""} (the reservation was taken over, or expired).
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1]) or ''
if v ~= ARGV[1] then
  return {0, v}
end
redis.call('DEL', KEYS[1])
return {1}
`)

// reservation is a parsed reservation value.
type reservation struct {
	raw        string
	committed  bool
	reservedAt int64 // Redis ms
	token      string
	queue      string
}

func parseReservation(v string) (reservation, error) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) == 4 && (parts[0] == "r" || parts[0] == "c") {
		if at, err := strconv.ParseInt(parts[1], 10, 64); err == nil && parts[3] != "" {
			return reservation{raw: v, committed: parts[0] == "c", reservedAt: at, token: parts[2], queue: parts[3]}, nil
		}
	}
	return reservation{}, fmt.Errorf("idempotency key reservation holds an unreadable value %q", v)
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reserve runs reserveScript: ok with our new reservation, or the current holder ("" raw
// when there is none) and Redis's now in ms. With it, in the same round trip, come asynq's
// queues, which a new holder searches for the key's task.
func (e *Enqueuer) reserve(ctx context.Context, rkey, expect, token, queue string) (ok bool, value string, nowMs int64, queues []string, err error) {
	var res *redis.Cmd
	var all *redis.StringSliceCmd
	_, err = e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		res = reserveScript.EvalSha(ctx, p, []string{rkey}, expect, token, queue, reservationHold.Milliseconds())
		all = p.SMembers(ctx, allQueuesKey)
		return nil
	})
	if err != nil && redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		// The script is not loaded yet (a new or restarted Redis): Run loads it.
		res = reserveScript.Run(ctx, e.rdb, []string{rkey}, expect, token, queue, reservationHold.Milliseconds())
		all = e.rdb.SMembers(ctx, allQueuesKey)
		err = cmp.Or(res.Err(), all.Err())
	}
	if err != nil {
		return false, "", 0, nil, err
	}
	got, err := res.Slice()
	if err != nil {
		return false, "", 0, nil, err
	}
	if len(got) != 3 {
		return false, "", 0, nil, fmt.Errorf("reserve script answered %v", got)
	}
	flag, _ := got[0].(int64)
	value, _ = got[1].(string)
	nowMs, _ = got[2].(int64)
	return flag == 1, value, nowMs, all.Val(), nil
}

// release deletes our reservation (mine): released reports it was still ours, else current
// is what holds the key now ("" for nothing).
func (e *Enqueuer) release(ctx context.Context, rkey, mine string) (released bool, current string, err error) {
	got, err := releaseScript.Run(ctx, e.rdb, []string{rkey}, mine).Slice()
	if err != nil {
		return false, "", err
	}
	if flag, _ := got[0].(int64); flag == 1 {
		return true, "", nil
	}
	if len(got) > 1 {
		current, _ = got[1].(string)
	}
	return false, current, nil
}

// taskExists says whether queue holds a task with the given ID, in any state.
func (e *Enqueuer) taskExists(ctx context.Context, queue, id string) (bool, error) {
	n, err := e.rdb.Exists(ctx, asynqTaskKey(queue, id)).Result()
	if err != nil {
		return false, fmt.Errorf("look up task %q in queue %q: %w", id, queue, err)
	}
	return n == 1, nil
}

// taskElsewhere returns a queue of queues other than ours that holds a task with the given ID,
// or "" — in one round trip, none when ours is the only queue.
func (e *Enqueuer) taskElsewhere(ctx context.Context, queues []string, ours, id string) (string, error) {
	others := make([]string, 0, len(queues))
	for _, q := range queues {
		if q != ours {
			others = append(others, q)
		}
	}
	if len(others) == 0 {
		return "", nil
	}
	slices.Sort(others) // the same answer for every producer, should two queues hold one
	cmds := make([]*redis.IntCmd, len(others))
	_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range others {
			cmds[i] = p.Exists(ctx, asynqTaskKey(q, id))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("look up task %q in other queues: %w", id, err)
	}
	for i, c := range cmds {
		if c.Val() == 1 {
			return others[i], nil
		}
	}
	return "", nil
}

// queuesNow reads asynq's queues.
func (e *Enqueuer) queuesNow(ctx context.Context) ([]string, error) {
	return e.rdb.SMembers(ctx, allQueuesKey).Result()
}

// enqueueKeyed enqueues a message with an idempotency key under the key's reservation.
func (e *Enqueuer) enqueueKeyed(ctx context.Context, pr prepared) (Result, error) {
	_, queue := taskIDAndQueue(pr.aopts)
	rkey := ReservationKey(pr.key)
	token := newToken()
	expect := ""
	for range maxReservationRounds {
		ok, value, nowMs, queues, err := e.reserve(ctx, rkey, expect, token, queue)
		if err != nil {
			return Result{}, fmt.Errorf("reserve idempotency key: %w", err)
		}
		if ok {
			return e.enqueueReserved(ctx, pr, rkey, value, queues)
		}
		expect = ""
		if value == "" {
			continue // released between our reads: reserve it afresh
		}
		holder, err := parseReservation(value)
		if err != nil {
			return Result{}, err
		}
		exists, err := e.taskExists(ctx, holder.queue, pr.key)
		if err != nil {
			return Result{}, err
		}
		age := time.Duration(nowMs-holder.reservedAt) * time.Millisecond
		switch {
		case exists:
			// The task found may be one whose own enqueue was not replicated (a retry after
			// ErrNotReplicated): wait for it too, as enqueueTask does.
			return Result{TaskID: pr.key, Queue: holder.queue, Duplicate: true}, e.replicated(ctx, holder.queue)
		case holder.committed || age >= e.grace:
			// The message is gone (an earlier version's committed reservation), or its
			// producer never enqueued it: take the key over (the script only does so if the
			// holder is still the one we looked at).
			expect = value
		case holder.queue == queue:
			// The holder is enqueuing onto our queue right now: asynq decides between us.
			return e.enqueueTask(ctx, pr)
		default:
			if err := sleepCtx(ctx, min(reservationPoll, e.grace-age)); err != nil {
				return Result{}, fmt.Errorf("wait for the producer holding idempotency key %q: %w", pr.key, err)
			}
		}
	}
	return Result{}, fmt.Errorf("idempotency key %q: its reservation kept changing hands; retry", pr.key)
}

// enqueueReserved enqueues the task of a reservation we hold (mine), unless another queue
// holds the key's task already, and releases the reservation. queues are asynq's queues, read
// after the reservation was taken.
func (e *Enqueuer) enqueueReserved(ctx context.Context, pr prepared, rkey, mine string, queues []string) (Result, error) {
	_, queue := taskIDAndQueue(pr.aopts)
	other, err := e.taskElsewhere(ctx, queues, queue, pr.key)
	if err != nil {
		_, _, _ = e.release(ctx, rkey, mine)
		return Result{}, err
	}
	if other != "" {
		_, _, _ = e.release(ctx, rkey, mine) // a failure leaves it to expire or be taken over
		return Result{TaskID: pr.key, Queue: other, Duplicate: true}, e.replicated(ctx, other)
	}
	res, err := e.enqueueTask(ctx, pr)
	if err != nil {
		// The reservation stays: the task may exist (a timeout after the write). A retry onto
		// this queue goes straight to asynq; another queue waits out the grace, then finds
		// the task if it exists.
		return Result{}, err
	}
	released, current, err := e.release(ctx, rkey, mine)
	if err != nil {
		// The task is enqueued and the reservation still names it, which is correct until it
		// expires (then the task itself holds the key); only the fence check is lost, for an
		// enqueue that was not paused anyway.
		return res, nil
	}
	if released {
		return res, nil
	}
	me, err := parseReservation(mine)
	if err != nil {
		return res, err
	}
	return e.settleLost(ctx, pr, res, rkey, me, current)
}

// settleLost handles the fence: our task is enqueued (res) but our reservation was taken over
// by another producer (current) or is gone ("") while we were paused past the grace.
func (e *Enqueuer) settleLost(ctx context.Context, pr prepared, res Result, rkey string, me reservation, current string) (Result, error) {
	if res.Duplicate {
		return res, nil // our enqueue found the task already there: nothing of ours to withdraw
	}
	for range maxReservationRounds {
		if current == "" {
			// Released by a producer whose task now holds the key, or expired: the tasks
			// decide. Held while we look, so that nobody enqueues meanwhile.
			ok, value, _, queues, err := e.reserve(ctx, rkey, "", me.token, res.Queue)
			if err != nil {
				return res, err
			}
			if !ok {
				current = value
				continue
			}
			return e.settleHolding(ctx, pr, res, rkey, value, queues)
		}
		holder, err := parseReservation(current)
		if err != nil {
			return res, err
		}
		if holder.queue == res.Queue {
			return res, nil // same queue: asynq kept one task
		}
		exists, err := e.taskExists(ctx, holder.queue, pr.key)
		if err != nil {
			return res, err
		}
		if exists {
			return e.withdraw(ctx, pr, res, holder.queue)
		}
		// The new holder has not enqueued: wait for it as anyone would, then take the key back.
		ok, value, nowMs, queues, err := e.reserve(ctx, rkey, "", me.token, res.Queue) // reads only: the key is held
		if err != nil {
			return res, err
		}
		if ok { // it vanished meanwhile and is ours
			return e.settleHolding(ctx, pr, res, rkey, value, queues)
		}
		if value != current {
			current = value
			continue
		}
		age := time.Duration(nowMs-holder.reservedAt) * time.Millisecond
		if holder.committed || age >= e.grace {
			took, value, _, queues, err := e.reserve(ctx, rkey, current, me.token, res.Queue)
			if err != nil {
				return res, err
			}
			if took {
				return e.settleHolding(ctx, pr, res, rkey, value, queues)
			}
			current = value
			continue
		}
		if err := sleepCtx(ctx, min(reservationPoll, e.grace-age)); err != nil {
			return res, err
		}
	}
	return res, fmt.Errorf("%w: its reservation kept changing hands", ErrKeyTakenOver)
}

// settleHolding finishes settleLost once we hold the reservation (mine) again: our task stays
// unless another queue holds one with the key; the reservation is released either way.
func (e *Enqueuer) settleHolding(ctx context.Context, pr prepared, res Result, rkey, mine string, queues []string) (Result, error) {
	defer func() { _, _, _ = e.release(context.WithoutCancel(ctx), rkey, mine) }()
	other, err := e.taskElsewhere(ctx, queues, res.Queue, pr.key)
	if err != nil {
		return res, err
	}
	if other == "" {
		return res, nil
	}
	return e.withdraw(ctx, pr, res, other)
}

// withdraw deletes our task (res) because the key's message is on queue other.
func (e *Enqueuer) withdraw(ctx context.Context, pr prepared, res Result, other string) (Result, error) {
	if err := e.insp.DeleteTask(res.Queue, pr.key); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return res, fmt.Errorf("%w: the message is also on queue %q; this one (queue %q) could not be withdrawn: %v",
			ErrKeyTakenOver, other, res.Queue, err)
	}
	return Result{TaskID: pr.key, Queue: other, Duplicate: true}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
