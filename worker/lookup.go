package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/tasks"
)

// The Message SID index: which message created a Message (SM…), for the console's search.
//
// One hash per day (the recording worker's clock), `proxyq:{sm}:<day>`: field
// the first 8 bytes of the Message SID's 32 hex digits (64 random bits: a collision needs
// billions of messages a day, and a lookup checks the message it found against its record),
// value `<task ID>` or `<task ID>|<queue>` for a queue other than "default".
// Each day's hash expires LedgerTTL after its day ends, so an entry outlives
// its message's retention (72h by default for both). The hash tag puts a day in one Redis
// Cluster slot: a lookup reads at most a few days' hashes, one HGET each.
//
// It is written by the script that records the send (MarkSent), so it costs one HSET per sent
// message; the day's expiry is set by each process's first write of the day and every
// sidExpireEvery writes after, not on every write (a PEXPIREAT per message would double it).
// A lookup checks the message found against its outcome record, so a stale entry never
// misleads.
const sidExpireEvery = 512

func sidIndexKey(day int64) string { return "proxyq:{sm}:" + strconv.FormatInt(day, 10) }

// sidIndex decides when a write also sets its day's expiry.
type sidIndex struct {
	lastDay atomic.Int64
	writes  atomic.Int64
}

// sidEntry is one index write: the fields the record script takes.
type sidEntry struct {
	key, field, value, expireAt string
}

func (s *sidIndex) entry(day int64, messageSID, queue, taskID string, expireAt int64) sidEntry {
	e := sidEntry{key: sidIndexKey(day), expireAt: "0"}
	if messageSID == "" {
		return e
	}
	e.field, e.value = sidField(messageSID), sidValue(queue, taskID)
	if s.lastDay.Swap(day) != day || s.writes.Add(1)%sidExpireEvery == 0 {
		e.expireAt = strconv.FormatInt(expireAt, 10)
	}
	return e
}

// write is the entry as its own commands (Redis Cluster: another slot than the record's).
func (e sidEntry) write(ctx context.Context, rdb redis.UniversalClient) {
	if e.field == "" {
		return
	}
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, e.key, e.field, e.value)
		if e.expireAt != "0" {
			ms, _ := strconv.ParseInt(e.expireAt, 10, 64)
			p.PExpireAt(ctx, e.key, time.UnixMilli(ms))
		}
		return nil
	})
}

// sidField is the index's field for a Message SID: the first 8 of its 16 bytes.
func sidField(sid string) string {
	if b, err := hex.DecodeString(strings.TrimPrefix(sid, "SM")); err == nil && len(sid) == 34 {
		return string(b[:8])
	}
	return sid
}

func sidValue(queue, taskID string) string {
	v := taskID
	if raw, ok := tasks.PackTaskID(taskID); ok {
		v = raw // a generated ID, as its 16 bytes: a smaller allocation per message
	}
	if queue == "default" {
		return v
	}
	return v + "|" + queue
}

// MessageRef names a message: its queue ("" when the index did not say: look in every queue) and
// task ID.
type MessageRef struct {
	Queue  string
	TaskID string
}

// FindByMessageSID returns the message that created the Message sid, searching the index's
// days from today back over ttl (LedgerTTL) plus the retention's days, newest first; ok is
// false when none is known. One pipeline of an HGET per day.
func FindByMessageSID(ctx context.Context, rdb redis.UniversalClient, sid string, today int64, days int) (MessageRef, bool, error) {
	cmds := make([]*redis.StringCmd, 0, days)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for d := today; d > today-int64(days); d-- {
			cmds = append(cmds, p.HGet(ctx, sidIndexKey(d), sidField(sid)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return MessageRef{}, false, fmt.Errorf("message SID index: %w", err)
	}
	for _, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return MessageRef{}, false, fmt.Errorf("message SID index: %w", err)
		}
		id, q, found := strings.Cut(v, "|")
		if !found {
			q = "default"
		}
		id = tasks.UnpackTaskID(id)
		return MessageRef{Queue: q, TaskID: id}, true, nil
	}
	return MessageRef{}, false, nil
}

// DayOf is the day number the indexes use: days since 1970-01-01 UTC.
func DayOf(ms int64) int64 { return ms / dayMs }
