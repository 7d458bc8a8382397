package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// finalsLinger is how long a final message's poll entry waits for others to leave with it.
const finalsLinger = 20 * time.Millisecond

// unscheduleTimeout bounds one batch's ZREM.
const unscheduleTimeout = 5 * time.Second

// unscheduler removes the poll entries of messages whose status became final, in batches: one
// ZREM for every message that turned final within finalsLinger of the first, where each used
// to send its own (a callback endpoint applying a thousand final statuses a second sends some
// fifty). Nothing rides on a removal: one that is lost (the process stops within the linger,
// or Redis fails) leaves an entry that the poller unschedules when it comes due, without
// asking Twilio, because the record is final (pollOne).
type unscheduler struct {
	rdb    redis.UniversalClient
	log    *zap.Logger
	linger time.Duration // finalsLinger; tests set their own

	mu    sync.Mutex
	kis   []any // interaction SIDs waiting to leave the poll set
	armed bool  // a flush is scheduled
}

// add schedules ki's poll entry for removal within the linger.
func (u *unscheduler) add(ki string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.kis = append(u.kis, ki)
	if !u.armed {
		u.armed = true
		time.AfterFunc(u.linger, u.flush)
	}
}

// flush removes the entries gathered so far, in one ZREM.
func (u *unscheduler) flush() {
	u.mu.Lock()
	kis := u.kis
	u.kis, u.armed = nil, false
	u.mu.Unlock()
	if len(kis) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), unscheduleTimeout)
	defer cancel()
	if err := u.rdb.ZRem(ctx, pollKey, kis...).Err(); err != nil {
		u.log.Warn("delivery: could not unschedule the polls of final messages; the poller will",
			zap.Int("messages", len(kis)), zap.Error(err))
	}
}
