package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// reserves every key first, in a key of its own:
//
//	proxyq:{idem:<idempotency key>} = "<r|c>|<reserved at, Redis ms>|<token>|<queue>"
//
// One key, one hash slot: slot-safe on Redis Cluster. The reservation is the arbiter: it is
// taken with a compare-and-set script (SET when absent), so of two producers racing one key
// onto two queues exactly one holds it and enqueues; the other finds it and answers with the
// holder's task ID and queue, Duplicate set. The asynq enqueue that follows touches another
// slot, so the two cannot be one atomic step; instead:
//
//   - "r" (reserved) is written before the enqueue and "c" (committed) after it, by a script
//     that also checks the reservation is still this producer's (a fence, below).
//   - A reservation found is checked against its task (EXISTS on asynq's task key in the
//     reserved queue). Task there: duplicate. Task absent and the reservation committed: the
//     message is gone (retention over, cancelled), so the key is free and is taken over.
//     Task absent and the reservation only reserved: its producer is between the two steps,
//     or crashed there; it is waited for, and taken over once ReservationGrace has passed
//     since the reservation (Redis's clock) — so a crash never blocks a key for good.
//   - A producer on the same queue as an uncommitted reservation does not wait: asynq's own
//     create-unless-the-ID-exists decides between the two.
//   - Fence: a producer that finds at commit that its reservation was taken over (it was
//     paused for longer than the grace) settles with the new holder: if the holder's task
//     exists, or appears within the grace, it withdraws its own task (asynq DeleteTask, which
//     succeeds while the task waits) and answers Duplicate; if the holder never enqueues, it
//     takes the reservation back. The one case left is a producer paused longer than the
//     grace whose task a worker has already started by the time it withdraws: two messages
//     may then exist, and Enqueue says so in its error (ErrKeyTakenOver).
//
// Lifetime: the reservation expires after the task is due, its send_before (if later), its
// retention and a margin of a day (reservationMargin) — long past the end of a completed
// task. A task kept longer (archived tasks stay up to 90 days in asynq) is still unique on its
// own queue, but once its reservation has expired the key could be used on another queue.

// ReservationGrace is how long a producer that reserved a key has to enqueue its task before
// another producer may take the key over. An enqueue takes milliseconds; the grace only
// matters after a producer crashed (or was paused) between the two steps.
const ReservationGrace = 10 * time.Second

const (
	// reservationMargin is added to a reservation's lifetime past the task's retention: it
	// covers the time the task spends being tried (bounded by its deadline, 1h by default).
	reservationMargin = 24 * time.Hour
	// reservationPoll is how often a producer waiting on another's reservation looks again.
	reservationPoll = 20 * time.Millisecond
	// maxReservationRounds bounds the compare-and-set loop of one enqueue.
	maxReservationRounds = 1000
)

// ErrKeyTakenOver is returned (wrapped) by Enqueue when a producer paused between reserving a
// key and enqueuing its task lost the key to another producer and could not withdraw its own
// task because a worker had already started it: the key may now name two messages.
var ErrKeyTakenOver = errors.New("idempotency key taken over by another producer while this enqueue was paused")

// ReservationKey is the Redis key that reserves an idempotency key across queues.
func ReservationKey(idempotencyKey string) string { return "proxyq:{idem:" + idempotencyKey + "}" }

// asynqTaskKey is where asynq v0.26 keeps a task (internal/base.TaskKey); it exists from
// enqueue until the task is deleted, whatever its state. TestAsynqTaskKeyLayout pins it.
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// ReservationLife is how long the reservation of a message due at once, with no send_before,
// lives: what an idempotency key costs Redis in time (proxyq bench's sizing).
func ReservationLife(retention time.Duration) time.Duration {
	now := time.Now()
	return reservationTTL(now, now, nil, retention)
}

// reservationTTL is how long the reservation of a message due at sendAt should live.
func reservationTTL(now, sendAt time.Time, sendBefore *time.Time, retention time.Duration) time.Duration {
	end := sendAt
	if sendBefore != nil && sendBefore.After(end) {
		end = *sendBefore
	}
	return max(end.Sub(now), 0) + retention + reservationMargin
}

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

// commitScript turns KEYS[1] from ARGV[1] into ARGV[2], keeping its expiry: {1} then, else
// {0, current value or ""} (the reservation was taken over). PTTL + PEXPIRE rather than SET
// KEEPTTL, which needs Redis 6.
var commitScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1]) or ''
if v ~= ARGV[1] then
  return {0, v}
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
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

func (r reservation) committedValue() string {
	return "c|" + strconv.FormatInt(r.reservedAt, 10) + "|" + r.token + "|" + r.queue
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reserve runs reserveScript: ok with our new reservation, or the current holder ("" raw
// when there is none) and Redis's now in ms.
func (e *Enqueuer) reserve(ctx context.Context, rkey, expect, token, queue string, life time.Duration) (ok bool, value string, nowMs int64, err error) {
	res, err := reserveScript.Run(ctx, e.rdb, []string{rkey}, expect, token, queue, life.Milliseconds()).Slice()
	if err != nil {
		return false, "", 0, err
	}
	if len(res) != 3 {
		return false, "", 0, fmt.Errorf("reserve script answered %v", res)
	}
	flag, _ := res[0].(int64)
	value, _ = res[1].(string)
	nowMs, _ = res[2].(int64)
	return flag == 1, value, nowMs, nil
}

// taskExists says whether queue holds a task with the given ID, in any state.
func (e *Enqueuer) taskExists(ctx context.Context, queue, id string) (bool, error) {
	n, err := e.rdb.Exists(ctx, asynqTaskKey(queue, id)).Result()
	if err != nil {
		return false, fmt.Errorf("look up task %q in queue %q: %w", id, queue, err)
	}
	return n == 1, nil
}

// enqueueKeyed enqueues a message with an idempotency key under the key's reservation.
func (e *Enqueuer) enqueueKeyed(ctx context.Context, pr prepared) (Result, error) {
	_, queue := taskIDAndQueue(pr.aopts)
	rkey := ReservationKey(pr.key)
	token := newToken()
	expect := ""
	for range maxReservationRounds {
		ok, value, nowMs, err := e.reserve(ctx, rkey, expect, token, queue, pr.life)
		if err != nil {
			return Result{}, fmt.Errorf("reserve idempotency key: %w", err)
		}
		if ok {
			return e.enqueueReserved(ctx, pr, rkey, value)
		}
		expect = ""
		if value == "" {
			continue // released (expired) between our reads: reserve it afresh
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
			// The message is gone, or its producer never enqueued it: take the key over (the
			// script only does so if the holder is still the one we looked at).
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

// enqueueReserved enqueues the task of a reservation we hold (mine) and commits the
// reservation.
func (e *Enqueuer) enqueueReserved(ctx context.Context, pr prepared, rkey, mine string) (Result, error) {
	res, err := e.enqueueTask(ctx, pr)
	if err != nil {
		// The reservation stays: the task may exist (a timeout after the write). A retry onto
		// this queue goes straight to asynq; another queue waits out the grace.
		return Result{}, err
	}
	me, err := parseReservation(mine)
	if err != nil {
		return Result{}, err
	}
	got, err := commitScript.Run(ctx, e.rdb, []string{rkey}, mine, me.committedValue()).Slice()
	if err != nil {
		// The task is enqueued and the uncommitted reservation still names it, which is
		// correct; only the fence check is lost, for an enqueue that was not paused anyway.
		return res, nil
	}
	if flag, _ := got[0].(int64); flag == 1 {
		return res, nil
	}
	current := ""
	if len(got) > 1 {
		current, _ = got[1].(string)
	}
	return e.settleLost(ctx, pr, res, rkey, me, current)
}

// settleLost handles the fence: our task is enqueued (res) but the reservation was taken over
// by another producer (current) while we were paused past the grace.
func (e *Enqueuer) settleLost(ctx context.Context, pr prepared, res Result, rkey string, me reservation, current string) (Result, error) {
	for range maxReservationRounds {
		if current == "" {
			// Expired or released: put ours back.
			ok, value, _, err := e.reserve(ctx, rkey, "", me.token, res.Queue, pr.life)
			if err != nil {
				return res, nil // our task stands; the key is unreserved, as after an expiry
			}
			if ok {
				m, _ := parseReservation(value)
				_ = commitScript.Run(ctx, e.rdb, []string{rkey}, value, m.committedValue()).Err()
				return res, nil
			}
			current = value
			continue
		}
		holder, err := parseReservation(current)
		if err != nil {
			return res, err
		}
		if holder.queue == res.Queue || res.Duplicate {
			// Same queue (asynq kept one task), or our task was not ours to withdraw.
			return res, nil
		}
		exists, err := e.taskExists(ctx, holder.queue, pr.key)
		if err != nil {
			return res, err
		}
		if exists {
			if err := e.insp.DeleteTask(res.Queue, pr.key); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return res, fmt.Errorf("%w: the message is also on queue %q; this one (queue %q) could not be withdrawn: %v",
					ErrKeyTakenOver, holder.queue, res.Queue, err)
			}
			return Result{TaskID: pr.key, Queue: holder.queue, Duplicate: true}, nil
		}
		// The new holder has not enqueued: wait for it as anyone would, then take the key back.
		ok, value, nowMs, err := e.reserve(ctx, rkey, "", me.token, res.Queue, pr.life) // reads only: the key is held
		if err != nil {
			return res, err
		}
		if ok { // it vanished meanwhile and is ours again
			m, _ := parseReservation(value)
			_ = commitScript.Run(ctx, e.rdb, []string{rkey}, value, m.committedValue()).Err()
			return res, nil
		}
		if value != current {
			current = value
			continue
		}
		age := time.Duration(nowMs-holder.reservedAt) * time.Millisecond
		if holder.committed || age >= e.grace {
			took, value, _, err := e.reserve(ctx, rkey, current, me.token, res.Queue, pr.life)
			if err != nil {
				return res, err
			}
			if took {
				m, _ := parseReservation(value)
				_ = commitScript.Run(ctx, e.rdb, []string{rkey}, value, m.committedValue()).Err()
				return res, nil
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
