package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// laneRig is a real worker on a real Redis against the in-process fake.
type laneRig struct {
	fake *proxytest.Server
	enq  *tasks.Enqueuer
	insp *asynq.Inspector
	rdb  redis.UniversalClient
	w    *worker.Worker
}

func laneWorkerConfig() worker.Config {
	return worker.Config{
		Concurrency: 20, HTTPTimeout: 2 * time.Second, BackoffBase: 50 * time.Millisecond,
		BackoffMax: 300 * time.Millisecond, DelayedCheckInterval: 50 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, ReconcileSettle: 500 * time.Millisecond,
		LaneRecheck: 200 * time.Millisecond,
	}
}

func newLaneRig(t *testing.T, fakeCfg proxytest.Config, start bool, mods ...func(*worker.Config)) *laneRig {
	t.Helper()
	db := redistest.NewDB(t)
	return newLaneRigOn(t, db.ConnOpt(), db.Client(t), fakeCfg, start, mods...)
}

func newLaneRigOn(t *testing.T, conn asynq.RedisConnOpt, rdb redis.UniversalClient, fakeCfg proxytest.Config, start bool, mods ...func(*worker.Config)) *laneRig {
	t.Helper()
	fake := proxytest.NewServer(fakeCfg)
	t.Cleanup(fake.Close)
	client, err := proxyclient.New(proxyclient.Config{
		AccountSID: "AC00000000000000000000000000000001", AuthToken: "secret",
		BaseURL: fake.URL, HTTPTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := laneWorkerConfig()
	for _, mod := range mods {
		mod(&cfg)
	}
	w, err := worker.New(cfg, worker.Deps{Redis: conn, API: client})
	if err != nil {
		t.Fatal(err)
	}
	r := &laneRig{fake: fake, enq: tasks.NewEnqueuer(conn), insp: asynq.NewInspector(conn), rdb: rdb, w: w}
	t.Cleanup(func() { _ = r.enq.Close(); _ = r.insp.Close() })
	if start {
		r.start(t)
	}
	return r
}

func (r *laneRig) start(t *testing.T) {
	t.Helper()
	if err := r.w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.w.Shutdown)
}

func lanePayload(kp, key, body string) tasks.Payload {
	return tasks.Payload{ServiceSID: "KS00000000000000000000000000000001", SessionSID: "KC00000000000000000000000000000001",
		ParticipantSID: kp, Body: body, OrderingKey: key}
}

// createdBodies is the fake's creation order of bodies with the given prefix.
func (r *laneRig) createdBodies(prefix string) []string {
	var out []string
	for _, in := range r.fake.Fake.Created() {
		if strings.HasPrefix(in.Body, prefix) {
			out = append(out, in.Body)
		}
	}
	return out
}

func (r *laneRig) state(t *testing.T, id string) string {
	t.Helper()
	st, err := tasks.Lookup(context.Background(), r.insp, id)
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

// Several lanes, fed by a batch and by concurrent producers, through 429s and 503s and a
// permanently failing message in the middle of one lane: every lane is created at Twilio in
// enqueue order, each message once, and unordered messages flow beside them.
func TestLanesKeepEnqueueOrderThroughFaults(t *testing.T) {
	r := newLaneRig(t, proxytest.Config{Latency: 5 * time.Millisecond}, false)
	ctx := context.Background()
	badKP := fmt.Sprintf("KP%032d", 999)
	r.fake.Fake.MarkParticipantUnknown(badKP)

	// Lane "batch": one EnqueueBatch, interleaved with unordered messages.
	var batch []tasks.Message
	for i := range 12 {
		kp := fmt.Sprintf("KP%032d", 1)
		if i == 5 {
			kp = badKP // fails for good: archived, the lane goes on
		}
		batch = append(batch, tasks.Message{Payload: lanePayload(kp, "batch", fmt.Sprintf("batch-%02d", i))})
		batch = append(batch, tasks.Message{Payload: lanePayload(fmt.Sprintf("KP%032d", 2), "", fmt.Sprintf("free-%02d", i))})
	}
	if _, err := r.enq.EnqueueBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Lane "shared": four producers at once; each producer's own order must hold, and the
	// lane's order is the order Redis gave.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				body := fmt.Sprintf("shared-p%d-%d", p, i)
				if _, err := r.enq.Enqueue(ctx, lanePayload(fmt.Sprintf("KP%032d", 3), "shared", body)); err != nil {
					t.Error(err)
				}
				mu.Lock()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sharedOrder, err := r.rdb.ZRange(ctx, tasks.LaneKey(tasks.DefaultQueue, "shared"), 0, -1).Result()
	if err != nil || len(sharedOrder) != 32 {
		t.Fatalf("shared lane = %d entries, %v", len(sharedOrder), err)
	}
	var wantShared []string
	for _, id := range sharedOrder {
		info, err := r.insp.GetTaskInfo(tasks.DefaultQueue, id)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := tasks.Decode(info.Payload)
		wantShared = append(wantShared, p.Body)
	}
	if err := r.fake.Fake.Inject(proxytest.Fault429, 6); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.Fake.Inject(proxytest.Fault503, 4); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	waitFor(t, 60*time.Second, func() bool {
		q, err := r.insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && q.Completed+q.Archived == 12+12+32
	})
	var wantBatch []string
	for i := range 12 {
		if i != 5 {
			wantBatch = append(wantBatch, fmt.Sprintf("batch-%02d", i))
		}
	}
	if got := r.createdBodies("batch-"); strings.Join(got, ",") != strings.Join(wantBatch, ",") {
		t.Errorf("lane batch created as %v, want %v", got, wantBatch)
	}
	if got := r.createdBodies("shared-"); strings.Join(got, ",") != strings.Join(wantShared, ",") {
		t.Errorf("lane shared created as %v, want %v", got, wantShared)
	}
	for p := range 4 { // each producer's own order, implied by the above, checked plainly
		last := -1
		for i, b := range r.createdBodies(fmt.Sprintf("shared-p%d-", p)) {
			if b != fmt.Sprintf("shared-p%d-%d", p, i) || i <= last {
				t.Errorf("producer %d: %v out of order", p, b)
			}
			last = i
		}
	}
	if got := len(r.createdBodies("free-")); got != 12 {
		t.Errorf("%d unordered messages created, want 12", got)
	}
	for _, in := range r.fake.Fake.Created() {
		if n := r.fake.Fake.CreatesForBody(in.Body); n != 1 {
			t.Errorf("%s created %d times", in.Body, n)
		}
	}
	if n, _ := r.rdb.Exists(ctx, tasks.LaneKey(tasks.DefaultQueue, "batch"), tasks.LaneKey(tasks.DefaultQueue, "shared")).Result(); n != 0 {
		t.Errorf("finished lanes left %d keys", n)
	}
}

// A head scheduled for later holds its lane; its ready follower waits (no attempt burnt) and
// goes right after it. A follower whose deadline passes while it waits expires, unsent, and
// the lane goes on.
func TestLaneScheduledHeadAndExpiredFollower(t *testing.T) {
	r := newLaneRig(t, proxytest.Config{}, true)
	ctx := context.Background()
	kp := fmt.Sprintf("KP%032d", 7)
	head, err := r.enq.Enqueue(ctx, lanePayload(kp, "L", "sched-0-head"), tasks.ProcessIn(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(700 * time.Millisecond).UTC()
	p := lanePayload(kp, "L", "sched-1-expires")
	p.SendBefore = &soon
	expiring, err := r.enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	follower, err := r.enq.Enqueue(ctx, lanePayload(kp, "L", "sched-2-follower"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := r.createdBodies("sched-"); len(got) != 0 {
		t.Fatalf("created %v while the head is scheduled", got)
	}
	st, err := tasks.Lookup(ctx, r.insp, follower.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Retried != 0 {
		t.Errorf("waiting follower burnt %d attempts", st.Retried)
	}
	if err := tasks.ReadLane(ctx, r.rdb, st); err != nil || st.Lane == nil || st.Lane.Position != 3 || st.Lane.Head != head.TaskID || st.Lane.WaitingFor == "" {
		t.Errorf("lane status = %+v, %v", st.Lane, err)
	}
	waitFor(t, 10*time.Second, func() bool { return r.state(t, expiring.TaskID) == "archived" })
	waitFor(t, 10*time.Second, func() bool { return len(r.createdBodies("sched-")) == 2 })
	if got := r.createdBodies("sched-"); got[0] != "sched-0-head" || got[1] != "sched-2-follower" {
		t.Errorf("created %v", got)
	}
	st, _ = tasks.Lookup(ctx, r.insp, expiring.TaskID)
	if st.Outcome == nil || st.Outcome.State != tasks.OutcomeExpired {
		t.Errorf("expiring follower outcome = %+v", st.Outcome)
	}
}

// A head cancelled through the API and a head deleted from the dashboard are skipped; the
// next message goes within the recheck interval.
func TestLaneCancelledAndDeletedHeadsAreSkipped(t *testing.T) {
	r := newLaneRig(t, proxytest.Config{}, true)
	ctx := context.Background()
	kp := fmt.Sprintf("KP%032d", 8)
	cancelled, err := r.enq.Enqueue(ctx, lanePayload(kp, "C", "skip-0-cancelled"), tasks.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := r.enq.Enqueue(ctx, lanePayload(kp, "C", "skip-1-deleted"), tasks.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	third, err := r.enq.Enqueue(ctx, lanePayload(kp, "C", "skip-2-sent"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			st, _ := tasks.Lookup(ctx, r.insp, third.TaskID)
			_ = tasks.ReadLane(ctx, r.rdb, st)
			t.Logf("follower: %+v lane %+v", st, st.Lane)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	if got := r.createdBodies("skip-"); len(got) != 0 {
		t.Fatalf("created %v behind a scheduled head", got)
	}
	if _, err := tasks.Cancel(ctx, r.insp, cancelled.TaskID); err != nil {
		t.Fatal(err)
	}
	// The follower's next check skips the cancelled head (its task was seen by earlier checks)
	// and sees the second head's task: only then is a deleted task known to be gone rather
	// than still being enqueued (docs/lanes.md: a head the lane never saw waits out 15 s).
	waitFor(t, 5*time.Second, func() bool {
		st, err := tasks.Lookup(ctx, r.insp, third.TaskID)
		return err == nil && strings.Contains(st.LastError, "head "+deleted.TaskID+" is scheduled")
	})
	if got := r.createdBodies("skip-"); len(got) != 0 {
		t.Fatalf("created %v while the second head is still scheduled", got)
	}
	began := time.Now()
	if err := r.insp.DeleteTask(tasks.DefaultQueue, deleted.TaskID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(r.createdBodies("skip-")) == 1 })
	// The follower is next in line: it checks every LaneRecheck (200ms + jitter) and is moved
	// back to its queue by the 50ms delayed check.
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("the deleted head was skipped after %v", took)
	}
}

// Redis crashes mid-run and comes back from its append-only file: lanes keep their order,
// nothing is lost or sent twice.
func TestLaneRedisCrashWithAOF(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a redis-server")
	}
	srv := redistest.StartProcess(t, "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")
	conn := asynq.RedisClientOpt{Addr: srv.Addr}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	r := newLaneRigOn(t, conn, rdb, proxytest.Config{Latency: 20 * time.Millisecond}, false)
	ctx := context.Background()
	const lanes, per = 5, 20
	var msgs []tasks.Message
	for i := range per {
		for l := range lanes {
			msgs = append(msgs, tasks.Message{Payload: lanePayload(fmt.Sprintf("KP%032d", l), fmt.Sprint("lane-", l),
				fmt.Sprintf("aof-%d-%02d", l, i)), Options: []tasks.Option{tasks.IdempotencyKey(fmt.Sprintf("aof-%d-%d", l, i))}})
		}
	}
	if _, err := r.enq.EnqueueBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	waitFor(t, 30*time.Second, func() bool { return len(r.createdBodies("aof-")) >= lanes*per/4 })
	srv.Kill()
	time.Sleep(300 * time.Millisecond)
	srv.Restart(t)
	// The kill can land between asynq's dequeue script and its reply: the task is active in
	// Redis with no worker running it, and only asynq's recoverer brings it back, once its 30 s
	// lease has lapsed, on its next one-minute tick, after the retry delay: up to ~100 s.
	waitFor(t, 150*time.Second, func() bool {
		q, err := r.insp.GetQueueInfo(tasks.DefaultQueue)
		return err == nil && q.Completed == lanes*per
	})
	for l := range lanes {
		got := r.createdBodies(fmt.Sprintf("aof-%d-", l))
		if len(got) != per {
			t.Errorf("lane %d: %d created, want %d", l, len(got), per)
		}
		for i, b := range got {
			if want := fmt.Sprintf("aof-%d-%02d", l, i); b != want {
				t.Errorf("lane %d: #%d created is %s, want %s", l, i, b, want)
				break
			}
		}
	}
}

// A head that fails its last allowed attempt and a head that fails for good both hand the lane
// on at once: with rechecks set to a minute, only the wake-up can explain the followers going.
func TestLaneEndsHandOnAtOnce(t *testing.T) {
	r := newLaneRig(t, proxytest.Config{}, true, func(c *worker.Config) { c.LaneRecheck = time.Minute })
	ctx := context.Background()
	kp, badKP := fmt.Sprintf("KP%032d", 9), fmt.Sprintf("KP%032d", 10)
	r.fake.Fake.MarkParticipantUnknown(badKP)
	if err := r.fake.Fake.Inject(proxytest.Fault503, 2); err != nil {
		t.Fatal(err)
	}
	// Out of retries after one failed attempt (MaxRetry 1: two 503s).
	outOfRetries, err := r.enq.Enqueue(ctx, lanePayload(kp, "E", "end-0-out-of-retries"), tasks.MaxRetry(1))
	if err != nil {
		t.Fatal(err)
	}
	permanent, err := r.enq.Enqueue(ctx, lanePayload(badKP, "E", "end-1-permanent"))
	if err != nil {
		t.Fatal(err)
	}
	// An account this worker has no credentials for: archived at its turn, the lane goes on.
	noAccount := lanePayload(kp, "E", "end-1b-unknown-account")
	noAccount.AccountSID = fmt.Sprintf("AC%032d", 77)
	unknownAccount, err := r.enq.Enqueue(ctx, noAccount)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.enq.Enqueue(ctx, lanePayload(kp, "E", "end-2-sent")); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, 20*time.Second, func() bool { return len(r.createdBodies("end-")) == 1 })
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the lane took %v to get past three failed heads", took)
	}
	for _, id := range []string{outOfRetries.TaskID, permanent.TaskID, unknownAccount.TaskID} {
		if st := r.state(t, id); st != "archived" {
			t.Errorf("%s is %s, want archived", id, st)
		}
	}
	if got := r.createdBodies("end-"); got[0] != "end-2-sent" {
		t.Errorf("created %v", got)
	}
}
