package tasks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// A message's origin and its lookups by participant and session, for the console.
//
// Origin. Every task the Enqueuer makes carries the header HeaderOrigin ("o"): `<enqueued at,
// Unix ms in base 36>[ <via>]`, via (left out for "go") being "go" (this package, the default), "cli" (`proxyq enqueue`) or
// "http" / "http:<token label>" (`proxyq serve`), as the caller says with the Via option. asynq
// keeps headers in the task message: no Redis command of its own, ~20 bytes.
//
// Lookups. The Enqueuer files each new message under its participant and its session before
// enqueuing it (so a message that exists is always findable), bucketed by the day its
// reservation of the message's life ends — when it is due or its deadline, plus its retention and
// a margin (reservationTTL) — so that every bucket expires by itself at the end of that day, after
// every message in it:
//
//	proxyq:{<KP>}:m:<day>   HASH  field task ID (PackTaskID: 14 bytes for a generated one),
//	                              value `<first enqueued at, ms relative to the bucket's end>[|<queue>]`
//	proxyq:{<KC>}:s:<day>   HASH  field: the session's participant SIDs with a message in that
//	                              bucket; value empty. A hash, not a set: Redis before 7.2
//	                              keeps a small hash as a listpack but a set of strings as a
//	                              hashtable (336 bytes for two participants, 150 as a hash)
//	proxyq:{<KC>}:p:<day>   SET   the same, written before 2026-12-08: read until it expires
//	proxyq:{<CH>}:m:<day>   HASH  a Conversations message's conversation: as a participant's
//
// A bucket holds a participant's messages of a day, usually fewer than Redis's
// hash-max-listpack-entries (128), so Redis keeps it as a listpack, where a packed ID and a
// value that is a small integer (the enqueue time in ms before the bucket's day ends: a few
// days, which a listpack stores in 4 bytes) cost 13 bytes less per message than the ID's 26
// characters and a base-36 Unix time.
//
// A lookup reads the buckets from today to LookupDays ahead (one pipeline, one slot per key:
// Cluster-safe), never the keyspace. It costs the enqueue one pipelined round trip of four
// commands (HSETNX, PEXPIREAT, HSETNX, PEXPIREAT; two for a Conversations message); the send
// path nothing.

// HeaderOrigin is the task header that says when and through what a message was enqueued:
// `<enqueued at, Unix ms base 36>[ <via>]`, via left out for "go" (the default). Its name is
// one letter because every task carries it; ParseOrigin also reads the earlier "origin".
const HeaderOrigin = "o"

// headerOriginV1 is the header's earlier name, still read.
const headerOriginV1 = "origin"

// LookupDays is how far ahead of today lookups read the buckets: messages whose life ends
// later (scheduled more than ~3 weeks ahead) are not found by participant or session.
const LookupDays = 24

// Via says through what the message was enqueued: "go" (default), "cli", "http" or
// "http:<label>". It is shown by the console; spaces are replaced.
func Via(via string) Option {
	return func(o *enqueueOptions) { o.via = strings.ReplaceAll(via, " ", "_") }
}

func participantIndexKey(kp string, day int64) string {
	return "proxyq:{" + kp + "}:m:" + strconv.FormatInt(day, 10)
}

func sessionIndexKey(kc string, day int64) string {
	return "proxyq:{" + kc + "}:s:" + strconv.FormatInt(day, 10)
}

// sessionSetKey is the session's bucket as versions before 2026-12-08 wrote it (a SET).
func sessionSetKey(kc string, day int64) string {
	return "proxyq:{" + kc + "}:p:" + strconv.FormatInt(day, 10)
}

const indexDayMs = int64(24 * time.Hour / time.Millisecond)

// originHeader is the header value of a message enqueued at now through via.
func originHeader(now time.Time, via string) string {
	at := strconv.FormatInt(now.UnixMilli(), 36)
	if via == "" || via == "go" {
		return at
	}
	return at + " " + via
}

// withOrigin returns task with the origin header added.
func withOrigin(task *asynq.Task, value string) *asynq.Task {
	headers := make(map[string]string, len(task.Headers())+1)
	for k, v := range task.Headers() {
		headers[k] = v
	}
	headers[HeaderOrigin] = value
	return asynq.NewTaskWithHeaders(task.Type(), task.Payload(), headers)
}

// Origin is a message's origin as its header says.
type Origin struct {
	EnqueuedAt time.Time
	Via        string // "go", "cli", "http" or "http:<label>"; "" when the header is absent
}

// ParseOrigin reads the origin header from a task's headers (zero Origin without it).
func ParseOrigin(headers map[string]string) Origin {
	v, ok := headers[HeaderOrigin]
	if !ok {
		if v, ok = headers[headerOriginV1]; !ok {
			return Origin{}
		}
	}
	at, via, _ := strings.Cut(v, " ")
	if via == "" {
		via = "go"
	}
	ms, err := strconv.ParseInt(at, 36, 64)
	if err != nil {
		return Origin{Via: via}
	}
	return Origin{EnqueuedAt: time.UnixMilli(ms).UTC(), Via: via}
}

// lookupMargin is added to a message's lookups' life past its retention: it covers the time the
// message spends being tried (bounded by its deadline, 1h by default).
const lookupMargin = 24 * time.Hour

// messageLife is how long a message can still be looked up after now: until it is due (or its
// send_before, if later), then its retention, plus lookupMargin. The lookups by participant and
// session live that long.
func messageLife(now, sendAt time.Time, sendBefore *time.Time, retention time.Duration) time.Duration {
	end := sendAt
	if sendBefore != nil && sendBefore.After(end) {
		end = *sendBefore
	}
	return max(end.Sub(now), 0) + retention + lookupMargin
}

// indexMessage files a message under its participant and session (see above).
func (e *Enqueuer) indexMessage(ctx context.Context, pr prepared) error {
	if e.rdb == nil {
		return nil
	}
	id, queue := taskIDAndQueue(pr.aopts)
	p := pr.intent.Payload
	now := pr.enqueuedAt
	day := (now.UnixMilli() + pr.life.Milliseconds()) / indexDayMs
	expireAt := time.UnixMilli((day + 1) * indexDayMs)
	value := strconv.FormatInt(now.UnixMilli()-expireAt.UnixMilli(), 10) // expireAt: the bucket's end
	if packed, ok := PackTaskID(id); ok {
		id = packed
	}
	if queue != DefaultQueue {
		value += "|" + queue
	}
	if pr.conversation != "" {
		_, err := e.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			kch := participantIndexKey(pr.conversation, day) // the same bucket shape, keyed by CH…
			pl.HSetNX(ctx, kch, id, value)
			pl.PExpireAt(ctx, kch, expireAt)
			return nil
		})
		if err != nil {
			return fmt.Errorf("enqueue: file the message under its conversation: %w", err)
		}
		return nil
	}
	_, err := e.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		kp, kc := participantIndexKey(p.ParticipantSID, day), sessionIndexKey(p.SessionSID, day)
		pl.HSetNX(ctx, kp, id, value) // a duplicate enqueue keeps the first one's time
		pl.PExpireAt(ctx, kp, expireAt)
		pl.HSetNX(ctx, kc, p.ParticipantSID, "")
		pl.PExpireAt(ctx, kc, expireAt)
		return nil
	})
	if err != nil {
		return fmt.Errorf("enqueue: file the message under its participant: %w", err)
	}
	return nil
}

// Indexed is one message found by participant or session.
type Indexed struct {
	TaskID     string
	Queue      string
	EnqueuedAt time.Time
}

// ByParticipant returns the messages enqueued for participant kp that may still exist, newest
// first: at most limit of them after skipping offset. total is how many the index holds. The
// tasks themselves may be gone (deleted); callers look each one up.
func ByParticipant(ctx context.Context, rdb redis.UniversalClient, kp string, now time.Time, offset, limit int) (_ []Indexed, total int, err error) {
	all, err := byParticipants(ctx, rdb, []string{kp}, now)
	if err != nil {
		return nil, 0, err
	}
	return page(all, offset, limit), len(all), nil
}

// ByConversation returns the Conversations messages enqueued for conversation ch (CH…) that
// may still exist, newest first, as ByParticipant does.
func ByConversation(ctx context.Context, rdb redis.UniversalClient, ch string, now time.Time, offset, limit int) (_ []Indexed, total int, err error) {
	return ByParticipant(ctx, rdb, ch, now, offset, limit)
}

// BySession returns the messages enqueued in session kc that may still exist, newest first, as
// ByParticipant does.
func BySession(ctx context.Context, rdb redis.UniversalClient, kc string, now time.Time, offset, limit int) (_ []Indexed, total int, err error) {
	today := now.UnixMilli() / indexDayMs
	cmds := make([]*redis.StringSliceCmd, 0, 2*LookupDays)
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for d := today; d <= today+LookupDays; d++ {
			cmds = append(cmds, p.HKeys(ctx, sessionIndexKey(kc, d)), p.SMembers(ctx, sessionSetKey(kc, d)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("session index: %w", err)
	}
	seen := map[string]bool{}
	var kps []string
	for _, c := range cmds {
		for _, kp := range c.Val() {
			if !seen[kp] {
				seen[kp] = true
				kps = append(kps, kp)
			}
		}
	}
	all, err := byParticipants(ctx, rdb, kps, now)
	if err != nil {
		return nil, 0, err
	}
	return page(all, offset, limit), len(all), nil
}

func byParticipants(ctx context.Context, rdb redis.UniversalClient, kps []string, now time.Time) ([]Indexed, error) {
	if len(kps) == 0 {
		return nil, nil
	}
	today := now.UnixMilli() / indexDayMs
	var cmds []*redis.MapStringStringCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, kp := range kps {
			for d := today; d <= today+LookupDays; d++ {
				cmds = append(cmds, p.HGetAll(ctx, participantIndexKey(kp, d)))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("participant index: %w", err)
	}
	byID := map[string]Indexed{}
	for i, c := range cmds {
		dayEnd := (today + int64(i%(LookupDays+1)) + 1) * indexDayMs
		for id, v := range c.Val() {
			id = UnpackTaskID(id)
			at, queue, found := strings.Cut(v, "|")
			if !found {
				queue = DefaultQueue
			}
			byID[id] = Indexed{TaskID: id, Queue: queue, EnqueuedAt: parseLookupTime(at, dayEnd)}
		}
	}
	out := make([]Indexed, 0, len(byID))
	for _, m := range byID {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].EnqueuedAt.Equal(out[j].EnqueuedAt) {
			return out[i].EnqueuedAt.After(out[j].EnqueuedAt)
		}
		return out[i].TaskID < out[j].TaskID
	})
	return out, nil
}

// parseLookupTime reads a lookup's time: ms relative to its bucket's end (dayEnd, Unix ms), or
// (written before) Unix ms in base 36, which always starts with a letter.
func parseLookupTime(s string, dayEnd int64) time.Time {
	if rel, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(dayEnd + rel).UTC()
	}
	ms, _ := strconv.ParseInt(s, 36, 64)
	return time.UnixMilli(ms).UTC()
}

func page(all []Indexed, offset, limit int) []Indexed {
	if offset >= len(all) {
		return nil
	}
	return all[offset:min(len(all), offset+limit)]
}

// PackTaskID returns a task ID generated by the Enqueuer (21 characters of base 32; 26 for IDs
// generated before version 0.3) as its bytes after a NUL marker, for indexes that store many of
// them; ok is false for any other ID (an idempotency key), which is kept as it is. UnpackTaskID
// reverses it.
func PackTaskID(id string) (string, bool) {
	if len(id) != 21 && len(id) != 26 {
		return "", false
	}
	b, err := taskIDEncoding.DecodeString(id)
	if err != nil || (len(b) != taskIDBytes && len(b) != 16) || taskIDEncoding.EncodeToString(b) != id {
		return "", false
	}
	return "\x00" + string(b), true
}

// UnpackTaskID returns the task ID a packed (PackTaskID) or plain value names.
func UnpackTaskID(v string) string {
	if (len(v) == 1+taskIDBytes || len(v) == 17) && v[0] == 0 {
		return taskIDEncoding.EncodeToString([]byte(v[1:]))
	}
	return v
}
