//go:build cluster

package delivery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// clusterEnv is env (helpers_test.go) on a Redis Cluster: messages on queues spread over the
// slots, their interactions (proxyq:{ki:…}) over others.
type clusterEnv struct {
	t    *testing.T
	rdb  *redis.ClusterClient
	cli  *asynq.Client
	insp *asynq.Inspector
	n    int
}

// message enqueues a task on queue and writes a sent outcome as its result, as the worker does.
func (e *clusterEnv) message(queue string) (string, string, *tasks.Outcome) {
	t := e.t
	t.Helper()
	e.n++
	info, err := e.cli.Enqueue(asynq.NewTask(tasks.TypeSendInteraction, []byte(`{}`)), asynq.Queue(queue), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now().UTC().Add(-time.Second).Truncate(time.Millisecond)
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: fmt.Sprintf("KI%032x", 0xc1000+e.n), OutboundStatus: "queued",
		OutboundResourceSID: fmt.Sprintf("SM%032x", 0xc1000+e.n), Attempts: 1, SentAt: &sent, RecordedAt: sent}
	data, _ := json.Marshal(o)
	if err := e.rdb.HSet(context.Background(), taskKey(queue, info.ID), "result", data).Err(); err != nil {
		t.Fatal(err)
	}
	return info.ID, o.InteractionSID, o
}

func (e *clusterEnv) outcome(queue, id string) *tasks.Outcome {
	e.t.Helper()
	info, err := e.insp.GetTaskInfo(queue, id)
	if err != nil {
		e.t.Fatal(err)
	}
	o, err := tasks.ParseOutcome(info.Result)
	if err != nil || o == nil {
		e.t.Fatalf("outcome of %s: %v %v", id, o, err)
	}
	return o
}

// Every script of the package (early, record, claim, drain, the timeline's compare-and-set)
// and the record's SET NX GET run on a real Redis Cluster without a cross-slot error, and do their job: callbacks
// reach the outcome record, early ones are applied at record, polls are claimed and applied,
// expired early callbacks are drained, and a missing error code is fetched. Run with
// `go test -tags cluster ./delivery/`.
func TestClusterSlotSafety(t *testing.T) {
	c := redistest.StartCluster(t)
	log := redistest.NewSlotLog()
	rdb := c.Client(t)
	log.Attach(rdb)
	ctx := context.Background()
	e := &clusterEnv{t: t, rdb: rdb, cli: asynq.NewClientFromRedisClient(rdb), insp: asynq.NewInspectorFromRedisClient(rdb)}

	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	s, err := New(Config{PollAfter: time.Minute, PollEvery: time.Minute, MaxAge: time.Hour, PendingTTL: time.Minute,
		WebhookURL: "http://127.0.0.1:1/hook", WebhookSecret: secret}, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb := newCallbackClient(t, s)
	queues := []string{"dq-0", "dq-1", "dq-2", "dq-3", "dq-4", "dq-5"}

	// Callbacks after the record: a GET finds the index and the timeline is updated by the
	// compare-and-set script on the task's slot; a final status unschedules the poll and
	// announces the change (a webhook task on the message's queue).
	type msg struct{ q, id, ki string }
	var after []msg
	for _, q := range queues {
		id, ki, o := e.message(q)
		s.Recorded(ctx, q, id, testAccount, o, false)
		if n, err := rdb.Exists(ctx, interaction.Key(ki)).Result(); err != nil || n != 1 {
			t.Fatalf("%s not indexed: %v", ki, err)
		}
		if _, err := rdb.ZScore(ctx, pollKey, ki).Result(); err != nil {
			t.Fatalf("%s not scheduled for a poll: %v", ki, err)
		}
		after = append(after, msg{q, id, ki})
	}
	for _, m := range after {
		for _, st := range []string{"sent", "delivered", "sent"} {
			if code := cb.post(cb.params(m.ki, st), ""); code != http.StatusOK {
				t.Fatalf("%s %s: %d", m.ki, st, code)
			}
		}
		o := e.outcome(m.q, m.id)
		if o.OutboundStatus != StatusDelivered || !o.Final || o.DeliveredAt == nil ||
			!slices.Equal(statuses(o), []string{"queued", "sent", "delivered"}) {
			t.Fatalf("%s after callbacks: %+v", m.ki, o)
		}
		if still := stillPolled(t, rdb, m.ki); len(still) != 0 {
			t.Fatalf("%s final but still scheduled for a poll", m.ki)
		}
		if _, err := e.insp.GetTaskInfo(m.q, webhookID(m.q, m.id, StatusDelivered)); err != nil {
			t.Fatalf("%s: no webhook task for delivered: %v", m.ki, err)
		}
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultAccepted)); n != float64(2*len(after)) {
		t.Fatalf("accepted callbacks %v, want %d", n, 2*len(after))
	}

	// Callbacks before the record: kept by the early script, applied by the record script.
	var early []msg
	for _, q := range queues[:3] {
		id, ki, o := e.message(q)
		for _, st := range []string{"sent", "sending"} {
			if code := cb.post(cb.params(ki, st), ""); code != http.StatusOK {
				t.Fatalf("%s early %s: %d", ki, st, code)
			}
		}
		if n, err := rdb.LLen(ctx, interaction.EarlyList(ki)).Result(); err != nil || n != 2 {
			t.Fatalf("%s: %d callbacks kept, want 2 (%v)", ki, n, err)
		}
		if got := e.outcome(q, id); got.OutboundStatus != "queued" || len(got.StatusHistory) != 0 {
			t.Fatalf("%s applied before its record: %+v", ki, got)
		}
		s.Recorded(ctx, q, id, testAccount, o, false)
		got := e.outcome(q, id)
		if got.OutboundStatus != "sent" || got.Final || !slices.Equal(statuses(got), []string{"queued", "sending", "sent"}) &&
			!slices.Equal(statuses(got), []string{"queued", "sent", "sending"}) {
			t.Fatalf("%s after its record: %+v", ki, got)
		}
		if n, err := rdb.Exists(ctx, interaction.EarlyList(ki)).Result(); err != nil || n != 0 {
			t.Fatalf("%s: early callbacks left behind (%v)", ki, err)
		}
		if _, err := rdb.ZScore(ctx, earlyKey, ki).Result(); err != redis.Nil {
			t.Fatalf("%s: pending expiry left behind (%v)", ki, err)
		}
		early = append(early, msg{q, id, ki})
	}

	// A callback for an interaction never recorded: kept, then drained once its TTL is over.
	unknown := fmt.Sprintf("KI%032x", 0xdead)
	if code := cb.post(cb.params(unknown, "delivered"), ""); code != http.StatusOK {
		t.Fatal(code)
	}

	// Polls: every message not final is due two minutes on; the claim script takes them, the
	// fetcher's answers are applied. The early messages: one delivered, one undelivered with its
	// code, one unchanged (the fetcher answers "sent").
	f := &fakeFetcher{status: map[string]Update{
		fmt.Sprintf("SM%032x", 0xc1000+len(after)+1): {Status: StatusDelivered},
		fmt.Sprintf("SM%032x", 0xc1000+len(after)+2): {Status: StatusUndelivered, ErrorCode: 30006, ErrorMessage: "Landline or unreachable carrier"},
	}}
	w, _, _ := pollWorker(t, s, f, 1000)
	clock := time.Now().Add(2 * time.Minute)
	s.now = func() time.Time { return clock }
	n, err := w.PollOnce(ctx)
	if err != nil || n != len(early) {
		t.Fatalf("poll fetched %d (%v), want %d", n, err, len(early))
	}
	if o := e.outcome(early[0].q, early[0].id); o.OutboundStatus != StatusDelivered || !o.Final {
		t.Fatalf("polled delivered: %+v", o)
	}
	if o := e.outcome(early[1].q, early[1].id); o.OutboundStatus != StatusUndelivered || o.DeliveryErrorCode != 30006 {
		t.Fatalf("polled undelivered: %+v", o)
	}
	if o := e.outcome(early[2].q, early[2].id); o.OutboundStatus != "sent" || o.Final {
		t.Fatalf("polled unchanged: %+v", o)
	}
	if sc, err := rdb.ZScore(ctx, pollKey, early[2].ki).Result(); err != nil || int64(sc) != clock.Add(time.Minute).UnixMilli() {
		t.Fatalf("the unchanged message's next poll: %v %v, want PollEvery on", sc, err)
	}
	if still := stillPolled(t, rdb, early[0].ki, early[1].ki); len(still) != 0 {
		t.Fatalf("final but still scheduled: %v", still)
	}
	if z, err := rdb.ZCard(ctx, pollKey).Result(); err != nil || z != 1 {
		t.Fatalf("%d messages still scheduled, want 1 (%v)", z, err)
	}
	if got := counter(t, s.metrics.Callbacks.WithLabelValues(ResultUnknownInteraction)); got != 1 {
		t.Fatalf("drained early callbacks counted %v, want 1", got)
	}
	if n, err := rdb.Exists(ctx, interaction.EarlyList(unknown)).Result(); err != nil || n != 0 {
		t.Fatalf("expired early callbacks kept (%v)", err)
	}
	s.now = time.Now

	// undelivered without a code (a callback has none): the fetch task, run by the worker's
	// handler, records the code.
	id, ki, o := e.message(queues[4])
	s.Recorded(ctx, queues[4], id, testAccount, o, false)
	f.mu.Lock()
	f.status[o.OutboundResourceSID] = Update{Status: StatusUndelivered, ErrorCode: 30003, ErrorMessage: "Unreachable destination handset"}
	f.mu.Unlock()
	if code := cb.post(cb.params(ki, StatusUndelivered), ""); code != http.StatusOK {
		t.Fatal(code)
	}
	info, err := e.insp.GetTaskInfo(queues[4], "dlverr:"+ki)
	if err != nil {
		t.Fatalf("no fetch task: %v", err)
	}
	if err := w.Handlers()[TypeFetchError].ProcessTask(ctx, asynq.NewTask(TypeFetchError, info.Payload)); err != nil {
		t.Fatal(err)
	}
	if got := e.outcome(queues[4], id); got.OutboundStatus != StatusUndelivered || got.DeliveryErrorCode != 30003 || !got.Final {
		t.Fatalf("after the fetch: %+v", got)
	}

	// The scripts that ran, by their first key.
	if n := log.ScriptRuns(interaction.Key(early[0].ki)); n < 3 { // 2 early callbacks + the record's slow path
		t.Errorf("%d record/early scripts on %s, want 3", n, early[0].ki)
	}
	if n := log.ScriptRuns(taskKey(after[0].q, after[0].id)); n < 2 { // sent, delivered
		t.Errorf("%d compare-and-set scripts on %s, want 2", n, after[0].id)
	}
	if n := log.ScriptRuns(pollKey); n < 1 {
		t.Error("the claim script did not run")
	}
	if n := log.ScriptRuns(interaction.EarlyList(unknown)); n != 1 {
		t.Errorf("the drain script ran %d times, want 1", n)
	}
	log.Check(t, "EVAL", "EVALSHA", "SET", "HSET", "ZADD")
}
