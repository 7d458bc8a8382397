//go:build cluster

package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

// slotLog is a go-redis hook that counts every command (pipelined ones too) and keeps every
// error that says a command or script touched keys in more than one slot, so that an error a
// caller swallows (a release that only logs) still fails the test.
type slotLog struct {
	mu        sync.Mutex
	counts    map[string]int
	crossSlot []string
}

func (l *slotLog) note(cmd redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := strings.ToUpper(cmd.Name())
	l.counts[name]++
	if err := cmd.Err(); err != nil && (strings.Contains(err.Error(), "CROSSSLOT") || strings.Contains(err.Error(), "cross slot")) {
		l.crossSlot = append(l.crossSlot, fmt.Sprintf("%v: %v", cmd.Args(), err))
	}
}

func (l *slotLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *slotLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		l.note(cmd)
		return err
	}
}
func (l *slotLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			l.note(c)
		}
		return err
	}
}

func (l *slotLog) check(t *testing.T, want ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.crossSlot {
		t.Errorf("cross-slot: %s", c)
	}
	for _, w := range want {
		if l.counts[w] == 0 {
			t.Errorf("no %s ran: the test no longer exercises what it claims", w)
		}
	}
	names := make([]string, 0, len(l.counts))
	for n, c := range l.counts {
		names = append(names, fmt.Sprintf("%s=%d", n, c))
	}
	sort.Strings(names)
	t.Logf("commands: %s", strings.Join(names, " "))
}

// hookedOpt is an asynq option whose client carries the command log (asynq, the worker and
// the tests then share what the cluster refuses).
type hookedOpt struct {
	asynq.RedisClusterClientOpt
	log *slotLog
}

func (o hookedOpt) MakeRedisClient() any {
	c := o.RedisClusterClientOpt.MakeRedisClient().(*redis.ClusterClient)
	c.AddHook(o.log)
	// Per-node clients are made lazily; the hook must reach MasterForKey's too.
	c.OnNewNode(func(n *redis.Client) { n.AddHook(o.log) })
	return c
}

// Every ledger and limiter script, the claims, the replica wait, and the whole handler path
// (send, ambiguous answer, reconciliation, 429) run on a real Redis Cluster without a
// cross-slot error. Run with `make test-redis-ha`.
func TestClusterSlotSafety(t *testing.T) {
	c := redistest.StartCluster(t)
	log := &slotLog{counts: map[string]int{}}
	opt := hookedOpt{RedisClusterClientOpt: c.ConnOpt(), log: log}
	rdb := opt.MakeRedisClient().(*redis.ClusterClient)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

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
			if err := l.MarkSent(ctx, q, id, own.Fence, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: sid}); err != nil {
				t.Fatal(err)
			}
			makeTask(t, rdb, q, id+"-other")
			if err := l.MarkSent(ctx, q, id+"-other", 0, &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: sid}); !errors.Is(err, ErrLostOwnership) && !errors.Is(err, ErrClaimed) {
				t.Fatalf("MarkSent by another message: %v", err)
			}
			by, err := l.ClaimedBy(ctx, []string{sid, "KI-none"})
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
		w := newReplicaWait(rdb, 1, 500*time.Millisecond, nil)
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

	log.check(t, "EVALSHA", "WAIT", "GET")
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
