package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Error counts per hour, for the console's "top errors" panel: one hash per hour,
// `proxyq:errors:<hours since 1970>`, field the Twilio error code (API codes such as 21610 from
// a refused create, Messaging codes such as 30003 from a delivery), value how many messages
// ended with it in that hour. Each hash expires ErrorCountsKept after its hour. Writers are the
// paths that record an error (the worker's permanent failure, the delivery error), two
// commands per error and nothing on a message that has none.

// ErrorCountsKept is how long an hour's counts are kept.
const ErrorCountsKept = 25 * time.Hour

func errorCountKey(hour int64) string { return "proxyq:errors:" + strconv.FormatInt(hour, 10) }

// CountError adds one message that ended with Twilio error code at time at.
func CountError(ctx context.Context, rdb redis.UniversalClient, code int, at time.Time) error {
	if code == 0 {
		return nil
	}
	hour := at.Unix() / 3600
	key := errorCountKey(hour)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, key, strconv.Itoa(code), 1)
		p.ExpireAt(ctx, key, time.Unix((hour+1)*3600, 0).Add(ErrorCountsKept))
		return nil
	})
	if err != nil {
		return fmt.Errorf("count error %d: %w", code, err)
	}
	return nil
}

// ErrorCounts returns the counts per code over the hours that end with the one holding now:
// hours=1 is the current hour, 24 the last day. One pipeline of an HGETALL per hour.
func ErrorCounts(ctx context.Context, rdb redis.UniversalClient, now time.Time, hours int) (map[int]int64, error) {
	last := now.Unix() / 3600
	cmds := make([]*redis.MapStringStringCmd, 0, hours)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for h := last; h > last-int64(hours); h-- {
			cmds = append(cmds, p.HGetAll(ctx, errorCountKey(h)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("error counts: %w", err)
	}
	out := map[int]int64{}
	for _, c := range cmds {
		for code, n := range c.Val() {
			k, _ := strconv.Atoi(code)
			v, _ := strconv.ParseInt(n, 10, 64)
			out[k] += v
		}
	}
	return out, nil
}
