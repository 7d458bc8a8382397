//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/testbin"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// The lanes chaos test (issue 11): ordered lanes under the same abuse as TestChaos, plus a
// Redis crash with the append-only file on, and with order checked at the Fake.
//
// 200 lanes × 10 messages (ordering_key = the lane's participant SID) are enqueued by four
// concurrent producers, one EnqueueBatch per round across their lanes. Every 20th lane has
// its 5th message addressed to a participant the Fake does not know (404, archived as a
// permanent failure): the lane must go on past it. Three `proxyq worker` processes run while
// one of them is SIGKILLed every 1–4 s and Redis is killed and restarted once; the Fake serves
// ambiguous faults (500/reset/hang after create, answers held after create) and 429s.
//
// Asserted: per lane, the order in which the Fake created interactions is the enqueue order
// of the lane's messages that were sent; no message created twice; every message completed
// (created exactly once) or archived for an allowed reason (the planned permanent failures,
// or expired) with nothing created.
var (
	flagLanes           = flag.Int("chaos.lanes", 200, "lanes in TestChaosLanes")
	flagLaneLen         = flag.Int("chaos.lane-len", 10, "messages per lane in TestChaosLanes")
	flagLaneConcurrency = flag.Int("chaos.lane-concurrency", 10, "PROXYQ_CONCURRENCY of each worker in TestChaosLanes")
	flagLaneFailEvery   = flag.Int("chaos.lane-fail-every", 20, "every Nth lane has a permanently failing message in the middle (0: none)")
	flagRedisRestart    = flag.Bool("chaos.redis-restart", true, "kill Redis once during TestChaosLanes and restart it from its append-only file")
)

type laneMsg struct {
	id, lane, participant, body string
	pos                         int  // place in its lane, from 0
	failing                     bool // addressed to the unknown participant
}

func TestChaosLanes(t *testing.T) {
	if *flagLanes < 1 || *flagLaneLen < 1 || *flagWorkers < 1 {
		t.Fatal("-chaos.lanes, -chaos.lane-len and -chaos.workers must be at least 1")
	}
	bin := testbin.Proxyq(t)
	redis := redistest.StartProcess(t, "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
	conn := asynq.RedisClientOpt{Addr: redis.Addr}
	insp := asynq.NewInspector(conn)
	t.Cleanup(func() { _ = insp.Close() })
	api := startFake(t, *flagSeed)
	badKP := fmt.Sprintf("KP%032x", 0xBAD)
	api.Fake.MarkParticipantUnknown(badKP)
	logDir := *flagLogDir
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(workerEnv("redis://"+redis.Addr, api.URL, *flagLaneConcurrency), "PROXYQ_LANE_RECHECK=1s")

	began := time.Now()
	msgs := enqueueLanes(t, conn, badKP)
	fl := newFleet(t, "lanes", []string{bin, "worker"}, env, logDir, *flagWorkers, shutdownTimeout+httpTimeout+15*time.Second)
	progress := newProgress(t, "lanes", insp, api.Fake, fl, len(msgs))

	rng := rand.New(rand.NewPCG(uint64(*flagSeed), 0x1A9E5))
	redisRestarts := 0
	for k := 0; k < *flagKills; k++ {
		gap := time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
		victim := rng.IntN(*flagWorkers)
		pause := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
		if progress.waitDone(gap) {
			t.Logf("lanes: every message finished after %d kills", k)
			break
		}
		if *flagRedisRestart && k == *flagKills/3 {
			t.Logf("lanes: killing Redis (kill -9) at %s", time.Since(began).Round(time.Second))
			redis.Kill()
			time.Sleep(time.Second)
			redis.Restart(t)
			redisRestarts++
			continue
		}
		fl.kill(victim)
		time.Sleep(pause)
		fl.start(victim)
	}
	t.Logf("lanes: kills done (%d) at %s; draining (up to %s)", fl.killCount(), time.Since(began).Round(time.Second), *flagDrain)
	if !progress.waitDone(*flagDrain) {
		t.Logf("lanes: not every message finished within -chaos.drain=%s", *flagDrain)
	}
	wall := time.Since(began)
	fl.stopAll()

	r := verifyLanes(t, insp, api.Fake, msgs)
	for i, p := range r.problems {
		if i == 40 {
			t.Errorf("… and %d more", len(r.problems)-40)
			break
		}
		t.Error(p)
	}
	for _, u := range fl.unexpectedExits() {
		t.Logf("lanes: %s", u)
	}
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	st := api.Fake.Stats()
	rows := [][2]string{
		{"lanes × messages", fmt.Sprintf("%d × %d = %d", *flagLanes, *flagLaneLen, len(msgs))},
		{"worker processes × concurrency", fmt.Sprintf("%d × %d", *flagWorkers, *flagLaneConcurrency)},
		{"kills (SIGKILL)", fmt.Sprint(fl.killCount())},
		{"Redis kill -9 + restart (AOF)", fmt.Sprint(redisRestarts)},
		{"sent (completed, created once)", fmt.Sprint(r.sent)},
		{"archived: the planned unsendable messages", fmt.Sprint(r.failed)},
		{"archived: expired", fmt.Sprint(r.expired)},
		{"duplicates (messages created 2+ times)", fmt.Sprint(r.duplicates)},
		{"lost", fmt.Sprint(r.lost)},
		{"unfinished", fmt.Sprint(r.unfinished)},
		{"lanes out of order", fmt.Sprint(r.outOfOrder)},
		{"reconciled outcomes", fmt.Sprint(r.reconciled)},
		{"creates at the fake", fmt.Sprint(st.Creates)},
	}
	for _, k := range proxytest.Faults() {
		if n := st.Faults[k]; n > 0 {
			rows = append(rows, [2]string{"fault " + k.String(), fmt.Sprint(n)})
		}
	}
	rows = append(rows, [2]string{"workers restarted after exiting by themselves", fmt.Sprint(progress.restarts)},
		[2]string{"wall time", wall.Round(time.Second).String()})
	for _, row := range rows {
		fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
	}
	_ = w.Flush()
	t.Log("\n" + b.String())
}

// enqueueLanes enqueues the lanes with four concurrent producers, each owning a quarter of the
// lanes and enqueuing one batch per round (message r of each of its lanes).
func enqueueLanes(t *testing.T, conn asynq.RedisConnOpt, badKP string) []laneMsg {
	t.Helper()
	enq := tasks.NewEnqueuer(conn)
	defer enq.Close()
	msgs := make([]laneMsg, 0, *flagLanes**flagLaneLen)
	byLane := make([][]laneMsg, *flagLanes)
	for l := range *flagLanes {
		kp := fmt.Sprintf("KP%032x", 0x1A9E0000+l)
		for i := range *flagLaneLen {
			m := laneMsg{id: fmt.Sprintf("lane-%03d-%02d", l, i), lane: kp, participant: kp, pos: i,
				body: fmt.Sprintf("lane %03d message %02d", l, i)}
			if *flagLaneFailEvery > 0 && l%*flagLaneFailEvery == 0 && i == *flagLaneLen/2 {
				m.participant, m.failing = badKP, true
			}
			byLane[l] = append(byLane[l], m)
		}
	}
	const producers = 4
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range *flagLaneLen {
				var batch []tasks.Message
				for l := p; l < *flagLanes; l += producers {
					m := byLane[l][round]
					batch = append(batch, tasks.Message{Payload: tasks.Payload{ServiceSID: serviceSID, SessionSID: sessionSID,
						ParticipantSID: m.participant, Body: m.body, OrderingKey: m.lane}, Options: []tasks.Option{tasks.IdempotencyKey(m.id)}})
				}
				if _, err := enq.EnqueueBatch(context.Background(), batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("enqueue: %v", err)
	}
	for _, lane := range byLane {
		msgs = append(msgs, lane...)
	}
	return msgs
}

type laneResult struct {
	sent, failed, expired, duplicates, lost, unfinished, outOfOrder, reconciled int
	problems                                                                    []string
}

func verifyLanes(t *testing.T, insp *asynq.Inspector, fake *proxytest.Fake, msgs []laneMsg) *laneResult {
	t.Helper()
	r := &laneResult{}
	byBody := map[string]laneMsg{}
	for _, m := range msgs {
		byBody[m.body] = m
	}
	created := map[string][]string{} // lane → bodies in creation order
	for _, in := range fake.Created() {
		m, ok := byBody[in.Body]
		if !ok {
			r.problems = append(r.problems, "the Fake created an interaction the test never enqueued: "+in.SID)
			continue
		}
		created[m.lane] = append(created[m.lane], in.Body)
	}
	want := map[string][]string{} // lane → bodies of its sent messages in enqueue order
	for _, m := range msgs {
		n := fake.CreatesForBody(m.body)
		if n > 1 {
			r.duplicates++
			r.problems = append(r.problems, fmt.Sprintf("%s created %d times", m.id, n))
		}
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.id)
		if err != nil {
			r.unfinished++
			r.problems = append(r.problems, fmt.Sprintf("%s: task not found: %v", m.id, err))
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		switch info.State {
		case asynq.TaskStateCompleted:
			if n == 0 {
				r.lost++
				r.problems = append(r.problems, fmt.Sprintf("%s completed but never created", m.id))
			}
			if o == nil || o.State != tasks.OutcomeSent {
				r.problems = append(r.problems, fmt.Sprintf("%s completed with outcome %s", m.id, describe(o)))
			} else if o.Reconciled {
				r.reconciled++
			}
			r.sent++
			want[m.lane] = append(want[m.lane], m.body)
		case asynq.TaskStateArchived:
			switch {
			case m.failing:
				// It can never be sent (unknown participant). Usually archived as a permanent
				// failure; if a worker was killed during its POST, reconciliation cannot list
				// the unknown participant either, and it is archived when out of retries.
				// Either way the lane must go on, and nothing may have been created.
				r.failed++
			case o != nil && o.State == tasks.OutcomeExpired:
				r.expired++
			default:
				r.lost++
				r.problems = append(r.problems, fmt.Sprintf("%s archived for a reason not allowed: %s (outcome %s)", m.id, info.LastErr, describe(o)))
			}
			if n > 0 {
				r.problems = append(r.problems, fmt.Sprintf("%s archived but created at the Fake", m.id))
			}
		default:
			r.unfinished++
			r.problems = append(r.problems, fmt.Sprintf("%s still %s (last error %q)", m.id, info.State, info.LastErr))
		}
	}
	for lane, w := range want {
		if got := created[lane]; strings.Join(got, "|") != strings.Join(w, "|") {
			r.outOfOrder++
			r.problems = append(r.problems, fmt.Sprintf("lane %s created in the order %q, enqueued %q", lane, got, w))
		}
	}
	return r
}
