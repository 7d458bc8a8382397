package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/tasks"
)

// Ordered lanes, the worker's side (the Redis layout and scripts are tasks/lane.go).
//
// A message with an ordering key asks its lane before anything else (limits, ledger): if it is
// not at the head, it goes back to asynq's retry set with a wait that is not a failure, so it
// burns no attempt, holds no worker slot and takes no account permit. It is woken at once by
// the run that ends the message ahead (the leave script moves it to the front of its queue,
// from the retry set or from the back of the queue where its own recheck put it, behind the
// messages woken before it: tasks/lane.go), and checks on its own every LaneRecheck (next in
// line) or 12×LaneRecheck (further back), never later than its deadline.
//
// A message ends — and leaves its lane — when its run returns nil (sent, or re-recorded as
// sent), when the run archives it (permanent error, expired, outcome unknown for good), or when
// the run's failure is its last allowed attempt (asynq archives it next). Endings the handler
// does not see (a task deleted or archived from the dashboard, cancelled through the API, lost
// by Redis, or a run killed after the send was recorded) are found by the turn script, which
// drops heads whose task is archived, completed, or absent for longer than
// tasks.LaneEnqueueGrace.

// outcomeLaneWait labels a run that found it was not its turn (proxyq_attempts_total).
const outcomeLaneWait = "lane_wait"

// laneWakeEvery and laneWakeFor pace the attempts to wake a next-in-line message that was
// still running when the message ahead ended: it was being told to wait and asynq is about to
// put it in the retry set. A short fixed pace (not a growing backoff) keeps the hand-off within
// a few milliseconds of that moment; after laneWakeFor its own recheck takes over.
const (
	laneWakeEvery = 3 * time.Millisecond
	laneWakeFor   = 2 * time.Second
)

// lanes is the handler's access to lane state.
type lanes struct {
	rdb   redis.UniversalClient
	grace time.Duration
}

// inLane runs send when it is the message's turn in its lane, else tells asynq to wait; and
// hands the lane on when the run ends the message.
func (r *run) inLane(ctx context.Context, send func(context.Context) error) error {
	turn, err := tasks.LaneTurn(ctx, r.lanes.rdb, r.queue, r.p.OrderingKey, r.id, r.lanes.grace)
	if err != nil {
		r.log.Warn("ordering lane unavailable", zap.String("task_id", r.id), zap.Error(err))
		return err
	}
	if turn.Skipped > 0 || turn.Joined {
		r.log.Info("ordering lane repaired", zap.String("task_id", r.id), zap.String("queue", r.queue),
			zap.String("ordering_key", r.p.OrderingKey), zap.Int("skipped_heads", turn.Skipped), zap.Bool("joined_tail", turn.Joined))
	}
	if turn.HeadState == "woken" {
		r.log.Debug("ordering lane: woke its head", zap.String("task_id", r.id), zap.String("head", turn.Head))
	}
	if turn.Go {
		err = send(ctx)
	} else {
		err = r.laneWait(ctx, turn)
	}
	if r.endsMessage(ctx, err) {
		r.leaveLane(ctx)
	}
	return err
}

// laneWait handles a message whose turn has not come. Its deadline still runs: the ledger is
// consulted as in limited (it knows when the message was first seen, and whether it was sent
// already — then it has nothing to wait for).
func (r *run) laneWait(ctx context.Context, turn tasks.Turn) error {
	r.metrics.Attempts.WithLabelValues(outcomeLaneWait, r.apiLabel()).Inc()
	wait := r.cfg.LaneRecheck
	if turn.Ahead > 1 {
		wait *= 12
	}
	wait += jitter(wait / 5)
	why := fmt.Errorf("waiting in lane %q: %d ahead, head %s is %s", r.p.OrderingKey, turn.Ahead, turn.Head, turn.HeadState)
	now := r.now()
	if r.p.SendBefore != nil && now.Before(*r.p.SendBefore) {
		// The deadline is in the payload: no ledger round trip needed.
		return &retryLater{After: min(wait, max(r.p.SendBefore.Sub(now), 10*time.Millisecond)), Err: why}
	}
	own, err := r.ledger.Acquire(ctx, r.queue, r.id, r.claimLease())
	if err != nil || own.BusyFor > 0 {
		return &retryLater{After: wait, Err: why}
	}
	r.own, r.posts = own, own.Posts
	switch {
	case own.Gone:
		// asynq no longer has the task (deleted while this run was on its way): nothing to send.
		r.logOutcome(outcomeDuplicate, "", 0, nil, "task no longer exists; not sent")
		return nil
	case own.Sent:
		// Sent by an earlier run that left no trace in the lane (the lane was repaired since):
		// nothing is sent, the outcome is already the task's result and the message leaves the
		// lane once its delivery tracking is in place (see send).
		r.logOutcome(outcomeDuplicate, own.Outcome.CreatedSID(), 0, nil, "already sent; outcome kept")
		return r.trackFoundSent(ctx, own.Outcome)
	}
	deadline := r.deadline()
	if own.Attempt == attemptNone && !own.Now.Before(deadline) {
		return r.expire(ctx, deadline)
	}
	r.note(WaitEntry(WaitLane))
	r.release(ctx, own.Attempt, nil)
	return &retryLater{After: min(wait, max(deadline.Sub(own.Now), 10*time.Millisecond)), Err: why}
}

// endsMessage reports whether the run's result ends the message: done, archived now, or a
// failure that was its last allowed attempt (asynq archives it when the handler returns).
func (r *run) endsMessage(ctx context.Context, err error) bool {
	switch {
	case err == nil, errors.Is(err, asynq.SkipRetry):
		return true
	case !isFailure(err):
		return false
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry
}

// leaveLane takes the message out of its lane and wakes the next one. On a detached context:
// the message has ended whatever happens to this run now. If it fails, the next check of the
// lane finds the task completed or archived and drops it.
func (r *run) leaveLane(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	res, err := tasks.LeaveLane(lctx, r.lanes.rdb, r.queue, r.p.OrderingKey, r.id, r.lanes.grace)
	if err != nil {
		r.log.Warn("ordering lane: could not hand on; the next check will", zap.String("task_id", r.id), zap.Error(err))
		return
	}
	if res.HeadState == "active" {
		// The next message is running: perhaps being told to wait right now. Wake it as soon
		// as asynq has put it in the retry set.
		go r.lanes.wakeSoon(r.queue, r.p.OrderingKey, res.Head)
	}
}

// wakeSoon keeps trying to wake head, every laneWakeEvery for up to laneWakeFor, while it is
// still running.
func (l *lanes) wakeSoon(queue, key, head string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for deadline := time.Now().Add(laneWakeFor); time.Now().Before(deadline); {
		time.Sleep(laneWakeEvery)
		state, err := tasks.WakeLaneHead(ctx, l.rdb, queue, key, head)
		if err != nil || state != "active" {
			return
		}
	}
}
