//go:build cluster

package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// hookedOpt is an asynq option whose client carries the command log (asynq, the worker and
// the tests then share what the cluster refuses).
type hookedOpt struct {
	asynq.RedisClusterClientOpt
	log *redistest.SlotLog
}

func (o hookedOpt) MakeRedisClient() any {
	c := o.RedisClusterClientOpt.MakeRedisClient().(*redis.ClusterClient)
	o.log.Attach(c)
	return c
}

// Every ledger and limiter script, the claims, the replica wait, and the whole handler path
// (send, ambiguous answer, reconciliation, 429) run on a real Redis Cluster without a
// cross-slot error. Run with `make test-redis-ha`.
func TestClusterSlotSafety(t *testing.T) {
	c := redistest.StartCluster(t)
	log := redistest.NewSlotLog()
	opt := hookedOpt{RedisClusterClientOpt: c.ConnOpt(), log: log}
	rdb := opt.MakeRedisClient().(*redis.ClusterClient)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

	t.Run("the hook sees cross-slot errors", func(t *testing.T) {
		// Declared keys of two slots (CROSSSLOT), and a script reaching an undeclared key of
		// another slot (Redis 7's own wording): both must be caught, then forgotten.
		errs := []error{
			rdb.MGet(ctx, "proxyq:{a}:x", "proxyq:{b}:x").Err(),
			rdb.Eval(ctx, "return redis.call('GET', 'proxyq:{b}:x')", []string{"proxyq:{a}:x"}).Err(),
		}
		for _, err := range errs {
			if !redistest.IsCrossSlot(err) {
				t.Errorf("not recognised as cross-slot: %v", err)
			}
		}
		caught := len(log.TakeCrossSlot())
		if caught < len(errs) {
			t.Fatalf("the hook caught %d cross-slot errors of %d", caught, len(errs))
		}
	})

	t.Run("ledger", func(t *testing.T) {
		l := NewLedger(rdb, time.Hour)
		for i := range 20 { // queues spread over the slots (a message's keys share its queue's)
			q := fmt.Sprintf("q-%d", i)
			id := fmt.Sprintf("slot-%d", i)
			makeTask(t, rdb, q, id)
			own, err := l.AcquireToSend(ctx, q, id, time.Minute, SendIntent{Lease: time.Minute, SendWithin: time.Hour})
			if err != nil || !own.Began {
				t.Fatalf("AcquireToSend: %+v %v", own, err)
			}
			if err := l.Release(ctx, q, id, own.Fence, attemptUnknown, nil); err != nil {
				t.Fatal(err)
			}
			own, err = l.Acquire(ctx, q, id, time.Minute)
			if err != nil || own.Attempt != attemptUnknown {
				t.Fatalf("Acquire: %+v %v", own, err)
			}
			if err := l.Renew(ctx, q, id, own.Fence, time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.BeginSend(ctx, q, id, own.Fence, time.Minute); err != nil {
				t.Fatal(err)
			}
			sid := fmt.Sprintf("KI%032x", 0xC1A1D+i) // not a SID the stub API hands out later
			sm := fmt.Sprintf("SM%032x", 0xC1A1D+i)
			if _, err := l.MarkSent(ctx, q, id, testClaim, own.Fence, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: sid, OutboundResourceSID: sm}); err != nil {
				t.Fatal(err)
			}
			// The Message SID index (another slot than the record's) finds it for the console.
			if ref, ok, err := FindByMessageSID(ctx, rdb, sm, time.Now().UnixMilli()/dayMs, 2); err != nil || !ok || ref != (MessageRef{Queue: q, TaskID: id}) {
				t.Fatalf("FindByMessageSID(%s): %+v %v %v", sm, ref, ok, err)
			}
			makeTask(t, rdb, q, id+"-other")
			if _, err := l.MarkSent(ctx, q, id+"-other", testClaim, 0, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: sid}); !errors.Is(err, ErrLostOwnership) && !errors.Is(err, ErrClaimed) {
				t.Fatalf("MarkSent by another message: %v", err)
			}
			by, err := l.ClaimedBy(ctx, testKP, time.Now(), time.Now(), []string{sid, "KI-none"})
			if err != nil || by[0] != id || by[1] != "" {
				t.Fatalf("ClaimedBy: %v %v", by, err)
			}
			if e, err := l.Read(ctx, q, id); err != nil || e.Attempt != attemptSent {
				t.Fatalf("Read: %+v %v", e, err)
			}
		}
	})

	t.Run("limiter", func(t *testing.T) {
		lim, err := NewAccountLimiter(rdb, AccountLimits{MaxInFlight: 2, Rate: 1000, Lease: time.Minute}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			account := fmt.Sprintf("AC%032d", i)
			p1, err := lim.Acquire(ctx, account, "h1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			p2, err := lim.Acquire(ctx, account, "h2", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			p1.Release(false)
			p2.Release(true) // a 429: the throttle script
		}
	})

	t.Run("replica wait", func(t *testing.T) {
		w := newReplicaWait(rdb, 1, 3*time.Second, nil) // generous: a replica may ack only with its periodic (1 s) ACK
		_ = rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.ConfigResetStat(ctx).Err() })
		const n = 500
		began := time.Now()
		for i := range n {
			if err := w.Wait(ctx, LedgerKey(fmt.Sprintf("q-%d", i), "w")); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(began)
		// Redis's side, from INFO commandstats on every master: calls and CPU of SET and WAIT.
		var mu sync.Mutex
		calls, usec := map[string]int64{}, map[string]int64{}
		_ = rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			info, err := m.Info(ctx, "commandstats").Result()
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, line := range strings.Split(info, "\n") {
				for _, cmd := range []string{"set", "wait"} {
					var c, u int64
					if _, err := fmt.Sscanf(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=%d,usec=%d", &c, &u); err == nil {
						calls[cmd] += c
						usec[cmd] += u
					}
				}
			}
			return nil
		})
		if calls["set"] < n || calls["wait"] < n {
			t.Fatalf("commandstats: %v calls, want at least %d SET and WAIT", calls, n)
		}
		t.Logf("replica wait on the cluster, per message: %v wall (one round trip + replica ack), 2 commands (SET %.2f µs + WAIT %.2f µs of Redis CPU)",
			took/n, float64(usec["set"])/float64(calls["set"]), float64(usec["wait"])/float64(calls["wait"]))
	})

	t.Run("handler through asynq", func(t *testing.T) {
		api := &stubAPI{script: []error{nil, apiError(502, 0), apiError(429, 20429)}} // 502: created, answer lost
		w, err := New(Config{Concurrency: 4, HTTPTimeout: 2 * time.Second, ReconcileSettle: 200 * time.Millisecond,
			BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, DelayedCheckInterval: 50 * time.Millisecond,
			MaxInFlight: 5, RateLimit: 100, RedisWaitReplicas: 1},
			Deps{Redis: opt, API: participantStub{api}, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Shutdown()
		enq := tasks.NewEnqueuer(opt)
		defer enq.Close()
		insp := asynq.NewInspector(opt)
		defer insp.Close()
		const n = 12
		var msgs []tasks.Message
		for i := range n {
			msgs = append(msgs, tasks.Message{
				Payload: tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: fmt.Sprintf("KP%032d", i%4), Body: fmt.Sprintf("m%d", i)},
				Options: []tasks.Option{tasks.IdempotencyKey(fmt.Sprintf("cluster-%02d", i))},
			})
		}
		if _, err := enq.EnqueueBatch(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < n; {
			st, err := tasks.Lookup(ctx, insp, fmt.Sprintf("cluster-%02d", i))
			if err == nil && st.State == "completed" {
				if st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent {
					t.Fatalf("cluster-%02d: outcome %+v", i, st.Outcome)
				}
				i++
				continue
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster-%02d not completed: %+v %v", i, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := int(api.creates.Load()); got != n {
			t.Errorf("%d creates for %d messages (one answer was lost and must have been reconciled, not resent)", got, n)
		}
		// Cancel: a scheduled message goes; the guard reads the ledger of a sent one.
		res, err := enq.Enqueue(ctx, tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: fmt.Sprintf("KP%032d", 1), Body: "later"},
			tasks.ProcessIn(time.Hour), tasks.IdempotencyKey("cluster-later"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tasks.Cancel(ctx, insp, res.TaskID); err != nil {
			t.Fatalf("cancel a scheduled message: %v", err)
		}
		guard := NewSendGuard(NewLedger(rdb, time.Hour), insp)
		if err := guard(ctx, "cluster-00"); !errors.Is(err, ErrMaySend) {
			t.Fatalf("guard of a sent message: %v, want ErrMaySend", err)
		}
	})

	t.Run("idempotency keys across queues", func(t *testing.T) {
		// The reservation (proxyq:{idem:<key>}), asynq:queues and each queue's asynq keys are
		// four slots: reserve, the look-up on the other queues and the release run on the cluster.
		enq := tasks.NewEnqueuer(opt)
		defer enq.Close()
		insp := asynq.NewInspector(opt)
		defer insp.Close()
		p := tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: fmt.Sprintf("KP%032d", 7), Body: "once"}
		const key = "cluster-across-queues"
		released := func() bool {
			t.Helper()
			n, err := rdb.Exists(ctx, tasks.ReservationKey(key)).Result()
			if err != nil {
				t.Fatalf("reservation of %s: %v", key, err)
			}
			return n == 0
		}
		r1, err := enq.Enqueue(ctx, p, tasks.Queue("xq-a"), tasks.IdempotencyKey(key), tasks.ProcessIn(time.Hour))
		if err != nil || r1.Duplicate || r1.Queue != "xq-a" || r1.TaskID != key {
			t.Fatalf("first enqueue: %+v %v", r1, err)
		}
		if !released() {
			t.Fatal("reservation still held after the first enqueue")
		}
		r2, err := enq.Enqueue(ctx, p, tasks.Queue("xq-b"), tasks.IdempotencyKey(key), tasks.ProcessIn(time.Hour))
		if err != nil || !r2.Duplicate || r2.Queue != "xq-a" {
			t.Fatalf("same key on another queue: %+v %v, want the duplicate on xq-a", r2, err)
		}
		if n, err := rdb.Exists(ctx, "asynq:{xq-b}:t:"+key).Result(); err != nil || n != 0 {
			t.Fatalf("a second message was enqueued on xq-b (%v)", err)
		}
		// The message is gone (deleted): the key is free for the next one.
		if err := insp.DeleteTask("xq-a", key); err != nil {
			t.Fatal(err)
		}
		r3, err := enq.Enqueue(ctx, p, tasks.Queue("xq-b"), tasks.IdempotencyKey(key), tasks.ProcessIn(time.Hour))
		if err != nil || r3.Duplicate || r3.Queue != "xq-b" {
			t.Fatalf("after the holder is gone: %+v %v, want a new message on xq-b", r3, err)
		}
		if !released() {
			t.Fatal("reservation still held after the third enqueue")
		}
		// reserve+release, three times (the second finds the task on xq-a).
		if n := log.ScriptRuns(tasks.ReservationKey(key)); n != 6 {
			t.Fatalf("%d reservation scripts ran, want 6", n)
		}
	})

	t.Run("ordered lanes through asynq", func(t *testing.T) {
		// Lanes on four queues (each queue's lanes share its slot; the queues spread over the
		// masters), two lanes each, 5 messages a lane: placed at enqueue (batches and single
		// enqueues interleaved), sent one at a time in enqueue order by a real worker.
		queues := []string{"lane-a", "lane-b", "lane-c", "lane-d"}
		masters := map[string]bool{}
		for _, q := range queues {
			m, err := rdb.MasterForKey(ctx, tasks.LaneKey(q, "k"))
			if err != nil {
				t.Fatal(err)
			}
			masters[m.Options().Addr] = true
		}
		if len(masters) < 2 {
			t.Fatalf("the lane queues all live on one master (%v): pick other names", masters)
		}
		api := &orderStub{participantStub: participantStub{&stubAPI{}}}
		// Interaction SIDs the handler subtest's stub has not handed out (and claimed) already.
		api.creates.Store(10000)
		qs := map[string]int{}
		for _, q := range queues {
			qs[q] = 1
		}
		w, err := New(Config{Concurrency: 8, HTTPTimeout: 2 * time.Second, BackoffBase: 50 * time.Millisecond,
			BackoffMax: 200 * time.Millisecond, DelayedCheckInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond,
			ReconcileSettle: 200 * time.Millisecond, LaneRecheck: 300 * time.Millisecond, Queues: qs},
			Deps{Redis: opt, API: api, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
		if err != nil {
			t.Fatal(err)
		}
		enq := tasks.NewEnqueuer(opt)
		defer enq.Close()
		insp := asynq.NewInspector(opt)
		defer insp.Close()
		const perLane = 5
		lanesOf := []string{"k-1", "k-2"}
		msg := func(q, key string, n int) tasks.Message {
			return tasks.Message{
				Payload: tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: fmt.Sprintf("KP%032d", n%3),
					Body: fmt.Sprintf("%s|%s|%d", q, key, n), OrderingKey: key},
				Options: []tasks.Option{tasks.Queue(q)},
			}
		}
		var ids []string
		// Messages 0-1 of every lane in one batch (one place script per queue), 2 alone, 3-4 in
		// a second batch; the worker starts after the first batch, so later ones queue behind.
		var first, second []tasks.Message
		for _, q := range queues {
			for _, k := range lanesOf {
				first = append(first, msg(q, k, 0), msg(q, k, 1))
				second = append(second, msg(q, k, 3), msg(q, k, 4))
			}
		}
		res, err := enq.EnqueueBatch(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			ids = append(ids, r.TaskID)
		}
		for _, q := range queues {
			if n, err := rdb.ZCard(ctx, tasks.LaneKey(q, "k-1")).Result(); err != nil || n != 2 {
				t.Fatalf("lane %s/k-1 after the batch: %d places, %v", q, n, err)
			}
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Shutdown()
		for _, q := range queues {
			for _, k := range lanesOf {
				m := msg(q, k, 2)
				r, err := enq.Enqueue(ctx, m.Payload, m.Options...)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, r.TaskID)
			}
		}
		res, err = enq.EnqueueBatch(ctx, second)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			ids = append(ids, r.TaskID)
		}
		total := len(queues) * len(lanesOf) * perLane
		if len(ids) != total {
			t.Fatalf("%d enqueued, want %d", len(ids), total)
		}
		deadline := time.Now().Add(90 * time.Second)
		for _, id := range ids {
			for {
				st, err := tasks.Lookup(ctx, insp, id)
				if err == nil && st.State == "completed" {
					if st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent {
						t.Fatalf("%s: outcome %+v", id, st.Outcome)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not completed: %+v %v", id, st, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		bodies := api.sent()
		if len(bodies) != total {
			t.Fatalf("%d creates for %d messages: %v", len(bodies), total, bodies)
		}
		next := map[string]int{}
		for _, b := range bodies {
			i := strings.LastIndex(b, "|")
			lane, n := b[:i], b[i+1:]
			if want := fmt.Sprint(next[lane]); n != want {
				t.Fatalf("lane %s: message %s created when %s was next; order %v", lane, n, want, bodies)
			}
			next[lane]++
		}
		// Every lane emptied and tidied (its info hash deleted with its last message).
		for _, q := range queues {
			for _, k := range lanesOf {
				if n, err := rdb.Exists(ctx, tasks.LaneKey(q, k), tasks.LaneInfoKey(q, k)).Result(); err != nil || n != 0 {
					t.Fatalf("lane %s/%s left %d keys: %v", q, k, n, err)
				}
			}
		}
		for _, q := range queues {
			// 3 place scripts (two batches, one single enqueue), a turn and a leave per message.
			if n := log.ScriptRuns(tasks.LaneKey(q, "k-1")); n < 3+2*perLane {
				t.Fatalf("%d lane scripts ran on %s/k-1, want at least %d", n, q, 3+2*perLane)
			}
		}
	})

	t.Run("lane turn, leave and wake", func(t *testing.T) {
		// The worker-side scripts on their own, with asynq's states set as asynq would: a head
		// goes, a follower waits and is woken from the retry set by the head's leave, and a
		// follower still running at the leave is woken later by the wake script.
		const q, key = "lane-direct", "direct"
		enq := tasks.NewEnqueuer(opt)
		defer enq.Close()
		var ids []string
		for i := range 3 {
			r, err := enq.Enqueue(ctx, tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP,
				Body: fmt.Sprint(i), OrderingKey: key}, tasks.Queue(q), tasks.ProcessIn(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.TaskID)
		}
		prefix := "asynq:{" + q + "}:"
		state := func(id string) string {
			t.Helper()
			s, err := rdb.HGet(ctx, prefix+"t:"+id, "state").Result()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		// toRetry moves a task to asynq's retry set, as asynq does with a run told to wait.
		toRetry := func(id string) {
			t.Helper()
			if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.ZRem(ctx, prefix+"scheduled", id)
				p.ZAdd(ctx, prefix+"retry", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
				p.HSet(ctx, prefix+"t:"+id, "state", "retry")
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		pending := func(id string) bool {
			t.Helper()
			l, err := rdb.LRange(ctx, prefix+"pending", 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range l {
				if x == id {
					return true
				}
			}
			return false
		}
		grace := tasks.LaneEnqueueGrace
		if tr, err := tasks.LaneTurn(ctx, rdb, q, key, ids[0], grace); err != nil || !tr.Go {
			t.Fatalf("head's turn: %+v %v", tr, err)
		}
		tr, err := tasks.LaneTurn(ctx, rdb, q, key, ids[1], grace)
		if err != nil || tr.Go || tr.Ahead != 1 || tr.Head != ids[0] || tr.HeadState != "scheduled" {
			t.Fatalf("follower's turn: %+v %v", tr, err)
		}
		st := &tasks.Status{ID: ids[1], Queue: q, State: "retry"}
		st.Message.OrderingKey = key
		if err := tasks.ReadLane(ctx, rdb, st); err != nil || st.Lane.Position != 2 || st.Lane.Length != 3 || st.Lane.Head != ids[0] {
			t.Fatalf("ReadLane: %+v %v", st.Lane, err)
		}
		toRetry(ids[1])
		lv, err := tasks.LeaveLane(ctx, rdb, q, key, ids[0], grace)
		if err != nil || !lv.Removed || lv.Head != ids[1] || lv.HeadState != "woken" {
			t.Fatalf("head leaves: %+v %v", lv, err)
		}
		if s := state(ids[1]); s != "pending" || !pending(ids[1]) {
			t.Fatalf("woken follower is %s, in pending list %v", s, pending(ids[1]))
		}
		if tr, err := tasks.LaneTurn(ctx, rdb, q, key, ids[1], grace); err != nil || !tr.Go {
			t.Fatalf("woken follower's turn: %+v %v", tr, err)
		}
		if tr, err := tasks.LaneTurn(ctx, rdb, q, key, ids[2], grace); err != nil || tr.Go || tr.Head != ids[1] {
			t.Fatalf("third's turn: %+v %v", tr, err)
		}
		// The third is still running (being told to wait) when the second ends.
		if err := rdb.HSet(ctx, prefix+"t:"+ids[2], "state", "active").Err(); err != nil {
			t.Fatal(err)
		}
		lv, err = tasks.LeaveLane(ctx, rdb, q, key, ids[1], grace)
		if err != nil || !lv.Removed || lv.Head != ids[2] || lv.HeadState != "active" {
			t.Fatalf("second leaves: %+v %v", lv, err)
		}
		if s, err := tasks.WakeLaneHead(ctx, rdb, q, key, ids[2]); err != nil || s != "active" {
			t.Fatalf("wake a running head: %q %v", s, err)
		}
		toRetry(ids[2])
		if s, err := tasks.WakeLaneHead(ctx, rdb, q, key, ids[2]); err != nil || s != "woken" {
			t.Fatalf("wake a sleeping head: %q %v", s, err)
		}
		if s := state(ids[2]); s != "pending" || !pending(ids[2]) {
			t.Fatalf("woken head is %s, in pending list %v", s, pending(ids[2]))
		}
		if s, err := tasks.WakeLaneHead(ctx, rdb, q, key, ids[0]); err != nil || s != "" {
			t.Fatalf("wake a message that left: %q %v", s, err)
		}
		if tr, err := tasks.LaneTurn(ctx, rdb, q, key, ids[2], grace); err != nil || !tr.Go {
			t.Fatalf("last one's turn: %+v %v", tr, err)
		}
		if lv, err := tasks.LeaveLane(ctx, rdb, q, key, ids[2], grace); err != nil || !lv.Removed || lv.Head != "" {
			t.Fatalf("last one leaves: %+v %v", lv, err)
		}
		if n, err := rdb.Exists(ctx, tasks.LaneKey(q, key), tasks.LaneInfoKey(q, key)).Result(); err != nil || n != 0 {
			t.Fatalf("empty lane left %d keys: %v", n, err)
		}
	})

	t.Run("service window", func(t *testing.T) {
		const acct = "AC00000000000000000000000000000001"
		// 3 requests per 3 s window, at most one per 333 ms: the 4th within the window is refused.
		lim, err := NewServiceLimiter(rdb, ServiceLimits{Rate: 1, Window: 3 * time.Second, Margin: time.Millisecond, BurstRate: 3,
			MaxWait: time.Second}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 6 { // Services spread over the slots
			wg.Add(1)
			go func(svc string) {
				defer wg.Done()
				for j := range 3 {
					if _, err := lim.Reserve(ctx, acct, svc, EndpointCreate, 2*time.Second); err != nil {
						t.Errorf("%s: request %d refused: %v", svc, j, err)
						return
					}
				}
				var le *LimitedError
				if _, err := lim.Reserve(ctx, acct, svc, EndpointCreate, 0); !errors.As(err, &le) || le.RetryIn <= 0 || le.Service != svc {
					t.Errorf("%s: 4th request in the window: %v, want a LimitedError", svc, err)
				}
				if n, err := rdb.ZCard(ctx, serviceTag(acct, svc)+string(EndpointCreate)).Result(); err != nil || n != 3 {
					t.Errorf("%s: %d reservations in the window, want 3 (%v)", svc, n, err)
				}
			}(fmt.Sprintf("KS%032x", 0x5e0+i))
		}
		wg.Wait()

		// A 429 for a Service halves its factor: its window then holds one request (3 × ½).
		svcT := fmt.Sprintf("KS%032x", 0x7a0)
		lim.Throttled(acct, svcT)
		if f := lim.Factor(acct, svcT); f != 0.5 {
			t.Fatalf("factor after a 429: %v, want 0.5", f)
		}
		if f, err := rdb.HGet(ctx, serviceTag(acct, svcT)+"adaptive", "factor").Result(); err != nil || f != "500" {
			t.Fatalf("adaptive factor in Redis: %q %v", f, err)
		}
		if _, err := lim.Reserve(ctx, acct, svcT, EndpointCreate, 0); err != nil {
			t.Fatalf("first request after the 429: %v", err)
		}
		var le *LimitedError
		if _, err := lim.Reserve(ctx, acct, svcT, EndpointCreate, time.Second); !errors.As(err, &le) {
			t.Fatalf("second request after the 429: %v, want refused (unthrottled it would wait 333ms)", err)
		}

		// A request leaving late gives its reservation back and takes a new slot, one script
		// on the Service's slot.
		svcD := fmt.Sprintf("KS%032x", 0xde0)
		rsv, err := lim.Reserve(ctx, acct, svcD, EndpointCreate, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		again, err := rsv.Departing(ctx, time.Second)
		if err != nil || again.member == rsv.member || again.atMs < rsv.atMs+50 {
			t.Fatalf("late departure: %+v, %v; want a new slot ≥ 100ms after %d", again, err, rsv.atMs)
		}
		if _, err := rdb.ZScore(ctx, rsv.key, rsv.member).Result(); !errors.Is(err, redis.Nil) {
			t.Fatalf("late departure: the late reservation is still counted (%v)", err)
		}

		// Batches: one script reserves 8 consecutive slots of a Service at Twilio's default
		// limits; the next 7 requests take them without another script.
		def, err := NewServiceLimiter(rdb, ServiceLimits{}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		svcB := fmt.Sprintf("KS%032x", 0xba0)
		key := serviceTag(acct, svcB) + string(EndpointCreate)
		pool := def.pool(key)
		if s, fill, wait := pool.take(time.Now(), time.Second); s != nil || wait != nil || fill < 1 {
			t.Fatalf("fresh pool: %v %d %v", s, fill, wait)
		}
		first, err := def.reserveBatch(ctx, acct, svcB, EndpointCreate, time.Second, pool, 8)
		if err != nil || first == nil {
			t.Fatalf("batch: %v %v", first, err)
		}
		if n, err := rdb.ZCard(ctx, key).Result(); err != nil || n != 8 {
			t.Fatalf("a batch of 8 reserved %d (%v)", n, err)
		}
		runs := log.ScriptRuns(key)
		if runs != 1 {
			t.Fatalf("%d scripts reserved the batch, want 1", runs)
		}
		// Seven requests at once, as a busy worker's would come: each takes its slot from the
		// pool at once and sleeps until it (one after the other, a slow machine could let a
		// slot go stale, which is the pool's correct behaviour but not what this checks).
		members := map[string]bool{first.member: true}
		var mu sync.Mutex
		var takers sync.WaitGroup
		for range 7 {
			takers.Add(1)
			go func() {
				defer takers.Done()
				r, err := def.Reserve(ctx, acct, svcB, EndpointCreate, time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				members[r.member] = true
				mu.Unlock()
			}()
		}
		takers.Wait()
		if len(members) != 8 {
			t.Fatalf("%d distinct slots handed out, want 8", len(members))
		}
		if n := log.ScriptRuns(key); n != runs {
			t.Fatalf("%d more scripts for slots reserved ahead", n-runs)
		}
		zs, err := rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(zs); i++ { // at most 150/s: ≥ 6.67ms apart
			if d := zs[i].Score - zs[i-1].Score; d < 6 {
				t.Fatalf("slots %d and %d only %vms apart: %v", i-1, i, d, zs)
			}
		}
		if err := def.AcquireRead(ctx, acct, svcB, EndpointList); err != nil {
			t.Fatal(err)
		}
		if n, err := rdb.ZCard(ctx, serviceTag(acct, svcB)+string(EndpointList)).Result(); err != nil || n != 1 {
			t.Fatalf("list reservations %d (%v)", n, err)
		}
	})

	log.Check(t, "EVALSHA", "WAIT", "GET")
}

// participantStub is stubAPI recording the participant of each interaction it creates (the stub
// files them all under testKP), so that messages spread over participants (and so over
// cluster slots) reconcile as they would with Twilio.
// Creates are serialised so that the last one created is this call's.
type participantStub struct{ *stubAPI }

var participantStubMu sync.Mutex

func (s participantStub) CreateMessageInteraction(ctx context.Context, p proxyclient.CreateParams) (*proxyclient.MessageInteraction, error) {
	participantStubMu.Lock()
	defer participantStubMu.Unlock()
	s.mu.Lock()
	before := len(s.created)
	s.mu.Unlock()
	mi, err := s.stubAPI.CreateMessageInteraction(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.created) > before { // created (a refused request creates nothing)
		s.created[before].ParticipantSID = p.ParticipantSID
	}
	if mi != nil {
		mi.ParticipantSID = p.ParticipantSID
	}
	return mi, err
}

// orderStub records the body of each interaction created, in creation order.
type orderStub struct {
	participantStub
	mu     sync.Mutex
	bodies []string
}

func (s *orderStub) CreateMessageInteraction(ctx context.Context, p proxyclient.CreateParams) (*proxyclient.MessageInteraction, error) {
	mi, err := s.participantStub.CreateMessageInteraction(ctx, p)
	if err == nil {
		s.mu.Lock()
		s.bodies = append(s.bodies, p.Body)
		s.mu.Unlock()
	}
	return mi, err
}

func (s *orderStub) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}
