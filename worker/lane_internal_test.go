package worker

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// commandLog records every Redis command's arguments.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}
func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.add(cmds...) // one round trip, one entry
		return next(ctx, cmds)
	}
}
func (l *commandLog) add(cmds ...redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var line []string
	for _, cmd := range cmds {
		var parts []string
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok {
				parts = append(parts, s)
			}
		}
		line = append(line, strings.Join(parts, " "))
	}
	l.cmds = append(l.cmds, strings.Join(line, " | "))
}
func (l *commandLog) reset() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.cmds
	l.cmds = nil
	return out
}

func newLoggedFixture(t *testing.T) (*handlerFixture, *commandLog) {
	t.Helper()
	cfg := Config{ReconcileSettle: 300e6, HTTPTimeout: 2e9}.WithDefaults()
	rdb := redistest.NewDB(t).Client(t)
	log := &commandLog{}
	rdb.AddHook(log)
	api := &stubAPI{}
	return &handlerFixture{h: NewHandler(cfg, api, NewLedger(rdb, cfg.LedgerTTL), nil, nil, nil), api: api}, log
}

// A message without an ordering key never touches lane state: same Redis commands as before.
func TestUnorderedMessageMakesNoLaneRoundTrip(t *testing.T) {
	t.Parallel()
	f, log := newLoggedFixture(t)
	if err := f.run(t, "plain-0", testPayload("warm-up")); err != nil { // loads the scripts
		t.Fatal(err)
	}
	makeTask(t, f.h.ledger.rdb, testQ, "plain-1") // the fixture's asynq task, before counting
	log.reset()
	if err := f.run(t, "plain-1", testPayload("hello")); err != nil {
		t.Fatal(err)
	}
	// Commands, not round trips: the autopipeliner may flush the take's two commands together
	// or one after the other (it depends on when its flusher wakes), so the test counts what
	// was sent, which does not depend on timing.
	var cmds []string
	for _, entry := range log.reset() {
		for _, c := range strings.Split(entry, " | ") {
			if !strings.HasPrefix(c, "exists ") { // the fixture's own check that the task exists
				cmds = append(cmds, c)
			}
		}
	}
	for _, c := range cmds {
		if strings.Contains(c, ":lane") {
			t.Errorf("unordered message ran a lane command: %s", c)
		}
	}
	// A fresh message is taken without a script: HSETNX of its first ledger entry with the
	// check that asynq still has the task (beginFresh), then the record's one script.
	want := []string{"hsetnx ", "hexists ", "evalsha "}
	if len(cmds) != len(want) {
		t.Fatalf("unordered message sent %d Redis commands, want %d (take: hsetnx+hexists, record: evalsha): %v", len(cmds), len(want), cmds)
	}
	for i, w := range want {
		if !strings.HasPrefix(cmds[i], w) {
			t.Errorf("command %d is %q, want %s…", i+1, cmds[i], w)
		}
	}
}

// A follower is told to wait: no POST, no ledger send, not a failed attempt; the head sends and
// hands the lane on; then the follower sends.
func TestLaneFollowerWaitsWithoutAttempt(t *testing.T) {
	t.Parallel()
	f, _ := newLoggedFixture(t)
	ctx := context.Background()
	rdb := f.h.lanes.rdb
	// Places taken as the Enqueuer would: head then follower.
	head, follower := testPayload("first"), testPayload("second")
	head.OrderingKey, follower.OrderingKey = "KP-lane", "KP-lane"
	for _, id := range []string{"head", "follower"} {
		// The asynq tasks, as the lane sees them (it reads their state).
		rdb.HSet(ctx, "asynq:{default}:t:"+id, "state", "pending")
		if _, err := tasks.LaneTurn(ctx, rdb, "default", "KP-lane", id, tasks.LaneEnqueueGrace); err != nil {
			t.Fatal(err) // joins the tail: same effect as a place taken at enqueue
		}
	}
	rl := wantRetry(t, f.run(t, "follower", follower), false)
	if !strings.Contains(rl.Error(), `waiting in lane "KP-lane": 1 ahead, head head`) {
		t.Errorf("wait reason = %v", rl)
	}
	if rl.After <= 0 || rl.After > 2*f.h.cfg.LaneRecheck {
		t.Errorf("recheck after %v, want about LaneRecheck (%v)", rl.After, f.h.cfg.LaneRecheck)
	}
	if n := int(f.api.creates.Load()); n != 0 {
		t.Fatalf("follower posted %d times before its turn", n)
	}
	if e := f.entry(t, "follower"); e.Posts != 0 || e.Attempt == attemptInFlight {
		t.Errorf("follower ledger = %+v", e)
	}
	if err := f.run(t, "head", head); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, "follower", follower); err != nil {
		t.Fatal(err)
	}
	if n := int(f.api.creates.Load()); n != 2 {
		t.Fatalf("%d creates, want 2", n)
	}
	if n, _ := rdb.Exists(ctx, tasks.LaneKey("default", "KP-lane")).Result(); n != 0 {
		t.Errorf("lane not emptied")
	}
}
