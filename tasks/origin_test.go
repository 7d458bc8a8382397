package tasks

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A message is filed under its participant and session when it is enqueued, with its origin;
// lookups list a participant's or a session's messages newest first, and duplicates once.
func TestOriginAndLookups(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rdb := e.enq.rdb
	p1, p2 := validPayload(), validPayload()
	p2.ParticipantSID = "KP" + "ffffffffffffffffffffffffffffffff"
	first, err := e.enq.Enqueue(ctx, p1, IdempotencyKey("order-8812-eta"), Via("cli"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	second, err := e.enq.Enqueue(ctx, p2, Queue("other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.enq.Enqueue(ctx, p1, IdempotencyKey("order-8812-eta"), Via("cli")); err != nil { // a duplicate
		t.Fatal(err)
	}
	if o := ParseOrigin(e.taskInfo(t, DefaultQueue, first.TaskID).Headers); o.Via != "cli" || time.Since(o.EnqueuedAt) > time.Minute {
		t.Errorf("origin of the CLI's message = %+v", o)
	}
	if o := ParseOrigin(e.taskInfo(t, "other", second.TaskID).Headers); o.Via != "go" {
		t.Errorf("origin of the Go message = %+v, want go", o)
	}
	got, total, err := ByParticipant(ctx, rdb, p1.ParticipantSID, time.Now(), 0, 10)
	if err != nil || total != 1 || len(got) != 1 || got[0].TaskID != "order-8812-eta" || got[0].Queue != DefaultQueue {
		t.Errorf("ByParticipant = %+v, %d, %v", got, total, err)
	}
	got, total, err = BySession(ctx, rdb, p1.SessionSID, time.Now(), 0, 10)
	if err != nil || total != 2 || got[0].TaskID != second.TaskID || got[0].Queue != "other" || got[1].TaskID != "order-8812-eta" {
		t.Errorf("BySession = %+v, %d, %v; want the newer message first", got, total, err)
	}
	if got, _, _ := BySession(ctx, rdb, p1.SessionSID, time.Now(), 1, 10); len(got) != 1 || got[0].TaskID != "order-8812-eta" {
		t.Errorf("BySession's second page = %+v", got)
	}
	for _, key := range rdb.Keys(ctx, "proxyq:{K*").Val() {
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > (LookupDays+1)*24*time.Hour {
			t.Errorf("lookup key %s expires in %v", key, ttl)
		}
	}
	if packed, ok := PackTaskID(second.TaskID); !ok || len(packed) != 14 || UnpackTaskID(packed) != second.TaskID {
		t.Errorf("PackTaskID(%q) = %q, %v", second.TaskID, packed, ok)
	}
	if _, ok := PackTaskID("order-8812-eta"); ok {
		t.Error("an idempotency key was packed")
	}
}

// A Conversations message is filed under its conversation (CH…), one bucket in one slot, and
// not under an empty participant or session.
func TestConversationLookup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rdb := e.enq.rdb
	first, err := e.enq.EnqueueConversation(ctx, ConversationPayload{ConversationSID: testCH, Body: "one"}, Via("cli"))
	if err != nil {
		t.Fatal(err)
	}
	if o := ParseOrigin(e.taskInfo(t, DefaultQueue, first.TaskID).Headers); o.Via != "cli" || time.Since(o.EnqueuedAt) > time.Minute {
		t.Errorf("origin of a Conversations message = %+v, want cli, now", o)
	}
	time.Sleep(5 * time.Millisecond)
	second, err := e.enq.EnqueueConversation(ctx, ConversationPayload{ConversationSID: testCH, Body: "two"}, Queue("other"))
	if err != nil {
		t.Fatal(err)
	}
	got, total, err := ByConversation(ctx, rdb, testCH, time.Now(), 0, 10)
	if err != nil || total != 2 || got[0].TaskID != second.TaskID || got[0].Queue != "other" || got[1].TaskID != first.TaskID {
		t.Errorf("ByConversation = %+v, %d, %v; want both, newest first", got, total, err)
	}
	keys := rdb.Keys(ctx, "proxyq:{*}:*").Val()
	for _, key := range keys {
		if !strings.HasPrefix(key, "proxyq:{"+testCH+"}:m:") {
			continue
		}
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > (LookupDays+1)*24*time.Hour {
			t.Errorf("conversation lookup key %s expires in %v", key, ttl)
		}
	}
	if n := len(rdb.Keys(ctx, "proxyq:{}:*").Val()); n != 0 {
		t.Errorf("%d keys filed under an empty participant or session", n)
	}
}

// A participant's bucket holds a generated ID packed (17 bytes) and the time as a small
// integer (ms before the bucket's end: a listpack stores it in 4 bytes); entries written in the
// earlier form (the ID as text, Unix ms in base 36) are still read.
func TestLookupBucketCompact(t *testing.T) {
	e, p, res := enqueueOne(t)
	ctx, rdb := context.Background(), e.enq.rdb
	keys := rdb.Keys(ctx, "proxyq:{"+p.ParticipantSID+"}:m:*").Val()
	if len(keys) != 1 {
		t.Fatalf("participant buckets %v", keys)
	}
	packed, _ := PackTaskID(res.TaskID)
	v, err := rdb.HGet(ctx, keys[0], packed).Result()
	if err != nil {
		t.Fatalf("the bucket has no packed field for %s: %v", res.TaskID, err)
	}
	if rel, err := strconv.ParseInt(v, 10, 64); err != nil || rel >= 0 || rel < -int64(LookupDays+1)*indexDayMs {
		t.Errorf("bucket value %q: want ms before the bucket's end, a small negative integer", v)
	}
	old := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	rdb.HSet(ctx, keys[0], "order-old-form", strconv.FormatInt(old.UnixMilli(), 36))
	got, total, err := ByParticipant(ctx, rdb, p.ParticipantSID, time.Now(), 0, 10)
	if err != nil || total != 2 || got[0].TaskID != res.TaskID || got[1].TaskID != "order-old-form" || !got[1].EnqueuedAt.Equal(old) ||
		time.Since(got[0].EnqueuedAt) > time.Minute || got[0].EnqueuedAt.Before(old) {
		t.Errorf("ByParticipant = %+v, %d, %v", got, total, err)
	}
}

// The origin header is short ("o", via left out for go); the earlier "origin" header still reads.
func TestParseOriginForms(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ms := strconv.FormatInt(at.UnixMilli(), 36)
	for _, c := range []struct {
		headers map[string]string
		want    Origin
	}{
		{map[string]string{HeaderOrigin: originHeader(at, "")}, Origin{EnqueuedAt: at, Via: "go"}},
		{map[string]string{HeaderOrigin: originHeader(at, "http:billing")}, Origin{EnqueuedAt: at, Via: "http:billing"}},
		{map[string]string{"origin": ms + " cli"}, Origin{EnqueuedAt: at, Via: "cli"}},
		{map[string]string{"origin": ms + " go"}, Origin{EnqueuedAt: at, Via: "go"}},
		{map[string]string{}, Origin{}},
	} {
		if got := ParseOrigin(c.headers); got != c.want {
			t.Errorf("ParseOrigin(%v) = %+v, want %+v", c.headers, got, c.want)
		}
	}
	if h := originHeader(at, "go"); h != ms {
		t.Errorf("origin header of a Go message = %q, want %q (no via)", h, ms)
	}
}

// A session's bucket is a small hash (a listpack before Redis 7.2, where a set of strings is a
// hashtable), and sets written before it are still read until they expire.
func TestSessionBucketIsAHash(t *testing.T) {
	e, p, res := enqueueOne(t)
	ctx, rdb := context.Background(), e.enq.rdb
	keys := rdb.Keys(ctx, "proxyq:{"+p.SessionSID+"}:*").Val()
	if len(keys) != 1 || !strings.Contains(keys[0], "}:s:") || rdb.Type(ctx, keys[0]).Val() != "hash" {
		t.Fatalf("session buckets %v, want one hash", keys)
	}
	if enc := rdb.ObjectEncoding(ctx, keys[0]).Val(); enc != "listpack" && enc != "ziplist" {
		t.Errorf("session bucket encoded as %s, want a listpack", enc)
	}
	// A participant filed by an earlier version, in the session's set. Enqueued a few ms
	// later on the Enqueuer's clock: in the same millisecond the two would list by task ID.
	old := validPayload()
	old.ParticipantSID = "KP" + "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	later := time.Now().Add(5 * time.Millisecond)
	e.enq.now = func() time.Time { return later }
	oldRes, err := e.enq.Enqueue(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	day := strings.TrimPrefix(keys[0], "proxyq:{"+p.SessionSID+"}:s:")
	if err := rdb.HDel(ctx, keys[0], old.ParticipantSID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.SAdd(ctx, "proxyq:{"+p.SessionSID+"}:p:"+day, old.ParticipantSID).Err(); err != nil {
		t.Fatal(err)
	}
	got, total, err := BySession(ctx, rdb, p.SessionSID, time.Now(), 0, 10)
	if err != nil || total != 2 || got[0].TaskID != oldRes.TaskID || got[1].TaskID != res.TaskID {
		t.Errorf("BySession = %+v, %d, %v; want both, newest first", got, total, err)
	}
}

// enqueueOne enqueues one valid message on a fresh database.
func enqueueOne(t *testing.T) (*env, Payload, Result) {
	t.Helper()
	e := newEnv(t)
	p := validPayload()
	res, err := e.enq.Enqueue(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return e, p, res
}
