//go:build chaos || cluster

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/testbin"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Identities. The Fake accepts any well-formed Account SID with a non-empty token.
var (
	accountSID = fmt.Sprintf("AC%032x", 0xC4A05)
	serviceSID = fmt.Sprintf("KS%032x", 0xC4A05)
	sessionSID = fmt.Sprintf("KC%032x", 0xC4A05)
)

// Worker timings (issue 3's chaos scenario): short, so a run fits in minutes.
const (
	httpTimeout     = 2 * time.Second
	shutdownTimeout = 8 * time.Second // validation wants at least httpTimeout+5s
)

// message is one enqueued message and what the test knows of it.
type message struct {
	id, participant, body string
}

// runResult is what one run of the scenario counted.
type runResult struct {
	name       string
	messages   int
	kills      int
	duplicates int // messages created more than once
	extraSMS   int // creates beyond the first, summed
	lost       int // messages never created and not archived for an allowed reason
	reconciled int // outcomes recorded with reconciled=true
	archived   int
	unfinished int // neither completed nor archived when the drain ended
	unknown    int // creates of bodies the test never enqueued
	creates    int
	faults     map[proxytest.Fault]int
	wall       time.Duration
	restarts   int      // workers that exited by themselves and were restarted
	archivedBy []string // one line per archived message: ID, reason, outcome
	problems   []string // broken guarantees, one line each (checked for proxyq only)
	suspects   []message
	logs       []string // the workers' log files

	// Delivery status (delivery_test.go), for proxyq's own run.
	delivery        bool
	final           int // sent, with the final delivery status the Fake gave the SMS
	notFinal        int // sent, without a final delivery status
	wrongFinal      int // sent, final, but not the Fake's status
	callbacksFailed int // callbacks the Fake gave up posting
}

// The chaos test: proxyq's workers, then the naive handler, in the same scenario; one table.
func TestChaos(t *testing.T) {
	if *flagMessages < 1 || *flagWorkers < 1 || *flagParticipants < 1 || *flagConcurrency < 1 {
		t.Fatal("-chaos.messages, -chaos.workers, -chaos.participants and -chaos.concurrency must be at least 1")
	}
	bin := testbin.Proxyq(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	var ours, naive *runResult
	t.Run("proxyq", func(t *testing.T) {
		ours = runScenario(t, "proxyq", []string{bin, "worker"}, nil)
		checkOurs(t, ours)
	})
	if *flagNaive {
		t.Run("naive", func(t *testing.T) {
			naive = runScenario(t, "naive", []string{self}, []string{naiveWorkerEnv + "=1"})
			for _, line := range naive.archivedBy {
				t.Logf("archived: %s", line)
			}
			if naive.duplicates == 0 {
				t.Log("note: the naive handler sent no duplicate in this run; the scenario was too gentle to tell the two apart")
			}
		})
	}
	t.Log("\n" + table(ours, naive))
}

// checkOurs fails the test for every broken guarantee in proxyq's run, with forensics.
func checkOurs(t *testing.T, r *runResult) {
	t.Helper()
	if r == nil {
		return
	}
	for _, line := range r.archivedBy {
		t.Logf("archived: %s", line)
	}
	if r.delivery && (r.notFinal != 0 || r.wrongFinal != 0) {
		t.Errorf("proxyq: %d sent messages without a final delivery status, %d with a wrong one; want 0", r.notFinal, r.wrongFinal)
	}
	if r.duplicates != 0 || r.lost != 0 || r.unfinished != 0 || r.unknown != 0 {
		t.Errorf("proxyq: %d duplicated (%d extra SMS), %d lost, %d unfinished, %d unknown creates; want all 0",
			r.duplicates, r.extraSMS, r.lost, r.unfinished, r.unknown)
	}
	const maxShown = 30
	for i, p := range r.problems {
		if i == maxShown {
			t.Errorf("… and %d more", len(r.problems)-maxShown)
			break
		}
		t.Error(p)
	}
}

// store is the Redis a run uses: a private database, or a Redis Cluster or Sentinel set-up
// (cluster_test.go).
type store struct {
	url    string             // REDIS_URL of the workers
	opt    asynq.RedisConnOpt // the test's own clients
	client func(t *testing.T) redis.UniversalClient
	// enqueuer: the producer's options (the HA runs wait for a replica, as the workers do).
	enqueuer []tasks.EnqueuerOption
}

func dbStore(db redistest.DB) store {
	return store{url: db.URL(), opt: db.ConnOpt(), client: func(t *testing.T) redis.UniversalClient { return db.Client(t) }}
}

// runScenario runs the whole scenario with the given worker program and counts what happened.
func runScenario(t *testing.T, name string, argv, extraEnv []string) *runResult {
	return runScenarioOn(t, name, dbStore(redistest.NewDB(t)), argv, extraEnv, nil)
}

// runScenarioOn is runScenario on st. during, when set, runs from before the enqueue until
// every message has finished (its stop channel is then closed, and it must return): Redis
// failovers for the cluster and Sentinel runs.
func runScenarioOn(t *testing.T, name string, st store, argv, extraEnv []string, during func(stop <-chan struct{})) *runResult {
	api := startFake(t, *flagSeed)
	if name == "proxyq" {
		startCallbacks(t, st, api.Fake)
	}
	insp := asynq.NewInspector(st.opt)
	t.Cleanup(func() { _ = insp.Close() })
	logDir := *flagLogDir
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}

	env := append(workerEnv(st.url, api.URL, *flagConcurrency), extraEnv...)

	stopDuring, duringDone := make(chan struct{}), make(chan struct{})
	if during != nil {
		go func() { defer close(duringDone); during(stopDuring) }()
	} else {
		close(duringDone)
	}
	endDuring := sync.OnceFunc(func() { close(stopDuring); <-duringDone })
	t.Cleanup(endDuring)
	began := time.Now()
	// The worker's own shutdown waits up to ShutdownTimeout plus HTTPTimeout and a record timeout.
	grace := shutdownTimeout + httpTimeout + 15*time.Second
	var msgs []message
	var fl *fleet
	var enqErr error
	enqueued := make(chan struct{})
	if *flagEnqueueOver > 0 {
		// Producers, workers and kills at once, so that failovers meet all of them.
		fl = newFleet(t, name, argv, env, logDir, *flagWorkers, grace)
		go func() { defer close(enqueued); msgs, enqErr = enqueueAll(st.opt, st.enqueuer...) }()
	} else {
		msgs = enqueue(t, st.opt, st.enqueuer...)
		close(enqueued)
		fl = newFleet(t, name, argv, env, logDir, *flagWorkers, grace)
	}
	progress := newProgress(t, name, insp, api.Fake, fl, *flagMessages)

	// Kills: every 1–4 s one worker at random, restarted after 0.2–1.5 s. The schedule comes
	// from the seed alone, so both runs get the same one; it is drawn whole even when the
	// messages finish early.
	rng := rand.New(rand.NewPCG(uint64(*flagSeed), 0xC4A05))
	for k := 0; k < *flagKills; k++ {
		gap := time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
		victim := rng.IntN(*flagWorkers)
		pause := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
		if progress.waitDone(gap) {
			t.Logf("%s: every message finished after %d kills; no more kills", name, k)
			break
		}
		fl.kill(victim)
		time.Sleep(pause)
		fl.start(victim)
	}
	<-enqueued
	if enqErr != nil {
		t.Fatal(enqErr)
	}
	t.Logf("%s: kills done (%d) at %s; draining (up to %s)", name, fl.killCount(), time.Since(began).Round(time.Second), *flagDrain)
	if !progress.waitDone(*flagDrain) {
		t.Logf("%s: not every message finished within -chaos.drain=%s", name, *flagDrain)
	}
	wall := time.Since(began)
	endDuring()
	fl.stopAll()

	r := verify(t, name, insp, api.Fake, msgs)
	if name == "proxyq" {
		verifyDelivery(t, r, insp, api.Fake, msgs)
	}
	r.kills, r.wall, r.restarts, r.logs = fl.killCount(), wall, progress.restarts, fl.logFiles()
	for _, u := range fl.unexpectedExits() {
		t.Logf("%s: %s", name, u)
	}
	if name == "proxyq" && len(r.suspects) > 0 {
		forensics(t, st, api.Fake, fl, r.suspects)
	}
	return r
}

// enqueue puts the messages on the queue with unique bodies, task IDs chaos-NNNN. A failed
// enqueue is retried with the same idempotency key for up to a minute, as a producer would while
// Redis fails over; a message counts as accepted once an enqueue succeeds, and a retry that
// finds its key taken (the failed try went through after all) is accepted too.
func enqueue(t *testing.T, opt asynq.RedisConnOpt, enqOpts ...tasks.EnqueuerOption) []message {
	t.Helper()
	msgs, err := enqueueAll(opt, enqOpts...)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// enqueueAll is enqueue returning its error, for a goroutine.
func enqueueAll(opt asynq.RedisConnOpt, enqOpts ...tasks.EnqueuerOption) ([]message, error) {
	enq := tasks.NewEnqueuer(opt, enqOpts...)
	defer enq.Close()
	ctx := context.Background()
	msgs := make([]message, *flagMessages)
	for i := range msgs {
		m := message{
			id:          fmt.Sprintf("chaos-%05d", i),
			participant: fmt.Sprintf("KP%032x", 0xC4A0500+i%*flagParticipants),
			body:        fmt.Sprintf("chaos message %05d of %d", i, len(msgs)),
		}
		if *flagEnqueueOver > 0 {
			time.Sleep(*flagEnqueueOver / time.Duration(len(msgs)))
		}
		giveUp := time.Now().Add(time.Minute)
		for failed := false; ; {
			res, err := enq.Enqueue(ctx, tasks.Payload{
				ServiceSID: serviceSID, SessionSID: sessionSID, ParticipantSID: m.participant, Body: m.body,
			}, tasks.IdempotencyKey(m.id))
			if err == nil && res.Duplicate && !failed {
				return nil, fmt.Errorf("enqueue message %d: task ID %s already taken on a flushed database", i, m.id)
			}
			if err == nil {
				break
			}
			if time.Now().After(giveUp) {
				return nil, fmt.Errorf("enqueue message %d: %v", i, err)
			}
			failed = true
			time.Sleep(100 * time.Millisecond)
		}
		msgs[i] = m
	}
	return msgs, nil
}

// progress watches the queue until every message has finished, restarting workers that die
// by themselves and logging a line every 10 s.
type progress struct {
	t        *testing.T
	name     string
	insp     *asynq.Inspector
	fake     *proxytest.Fake
	fl       *fleet
	n        int
	began    time.Time
	lastLog  time.Time
	restarts int
}

func newProgress(t *testing.T, name string, insp *asynq.Inspector, fake *proxytest.Fake, fl *fleet, n int) *progress {
	now := time.Now()
	return &progress{t: t, name: name, insp: insp, fake: fake, fl: fl, n: n, began: now, lastLog: now}
}

// waitDone waits up to d and reports whether every message is completed or archived.
func (p *progress) waitDone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p.restarts += p.fl.revive()
		q, err := p.insp.GetQueueInfo(tasks.DefaultQueue)
		if err == nil && time.Since(p.lastLog) >= 10*time.Second {
			p.lastLog = time.Now()
			p.t.Logf("%s t=%-4s kills=%-3d completed=%-5d archived=%-3d active=%-3d pending=%-5d retry=%-4d scheduled=%-3d creates=%d",
				p.name, time.Since(p.began).Round(time.Second), p.fl.killCount(), q.Completed, q.Archived, q.Active,
				q.Pending, q.Retry, q.Scheduled, p.fake.Stats().Creates)
		}
		if err == nil && q.Completed+q.Archived >= p.n && q.Pending+q.Active+q.Retry+q.Scheduled+q.Aggregating == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(min(250*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
}

// allowedArchive says whether an archived message ended for a reason the guarantee allows.
// In this scenario the only one is its deadline ("expired"), and then nothing was created.
// A permanent failure cannot happen (every payload is valid and no fault is permanent), and
// the "list too long to reconcile" reason cannot either (a participant has about
// messages/participants interactions, far below the 10 pages read): both would be bugs here.
func allowedArchive(o *tasks.Outcome) bool {
	return o != nil && o.State == tasks.OutcomeExpired
}

// verify compares every message's task and outcome with what the Fake created.
func verify(t *testing.T, name string, insp *asynq.Inspector, fake *proxytest.Fake, msgs []message) *runResult {
	t.Helper()
	r := &runResult{name: name, messages: len(msgs), faults: map[proxytest.Fault]int{}}
	st := fake.Stats()
	r.creates = st.Creates
	for k, n := range st.Faults {
		r.faults[k] = n
	}

	sent := make(map[string][]proxytest.Interaction, len(msgs))
	ours := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		ours[m.body] = true
	}
	for _, in := range fake.Created() {
		if !ours[in.Body] {
			r.unknown++
			r.problems = append(r.problems, fmt.Sprintf("the Fake created %s with a body the test never enqueued", in.SID))
			continue
		}
		sent[in.Body] = append(sent[in.Body], in)
	}

	suspect := func(m message, format string, args ...any) {
		r.problems = append(r.problems, m.id+": "+fmt.Sprintf(format, args...))
		if len(r.suspects) == 0 || r.suspects[len(r.suspects)-1].id != m.id {
			r.suspects = append(r.suspects, m)
		}
	}
	for _, m := range msgs {
		n := fake.CreatesForBody(m.body)
		if n > 1 {
			r.duplicates++
			r.extraSMS += n - 1
			suspect(m, "created %d times at the Fake (%s)", n, sids(sent[m.body]))
		}
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.id)
		if err != nil {
			r.unfinished++
			suspect(m, "task not found: %v", err)
			continue
		}
		o, oerr := tasks.ParseOutcome(info.Result)
		switch info.State {
		case asynq.TaskStateCompleted:
			if n == 0 {
				r.lost++
				suspect(m, "completed but never created at the Fake (outcome %s)", describe(o))
			}
			switch {
			case oerr != nil || o == nil:
				suspect(m, "completed without a readable outcome record (%v)", oerr)
			case o.State != tasks.OutcomeSent:
				suspect(m, "completed with outcome %s, want sent", describe(o))
			case n == 1 && o.InteractionSID != sent[m.body][0].SID:
				suspect(m, "outcome records %s, the Fake created %s", o.InteractionSID, sids(sent[m.body]))
			}
			if o != nil && o.Reconciled {
				r.reconciled++
			}
		case asynq.TaskStateArchived:
			r.archived++
			r.archivedBy = append(r.archivedBy, fmt.Sprintf("%s: %s (outcome %s)", m.id, info.LastErr, describe(o)))
			switch {
			case !allowedArchive(o):
				if n == 0 {
					r.lost++
				}
				suspect(m, "archived for a reason that is not allowed: %s (outcome %s)", info.LastErr, describe(o))
			case n > 0:
				suspect(m, "archived (%s) but created at the Fake: %s", describe(o), sids(sent[m.body]))
			}
		default:
			r.unfinished++
			suspect(m, "still %s (retried %d, last error %q, outcome %s)", info.State, info.Retried, info.LastErr, describe(o))
		}
	}
	return r
}

func sids(ins []proxytest.Interaction) string {
	parts := make([]string, len(ins))
	for i, in := range ins {
		parts[i] = in.SID + " at " + in.CreatedAt.UTC().Format("15:04:05.000")
	}
	return strings.Join(parts, ", ")
}

func describe(o *tasks.Outcome) string {
	if o == nil {
		return "none"
	}
	s := o.State
	if o.InteractionSID != "" {
		s += " " + o.InteractionSID
	}
	if o.Reconciled {
		s += " reconciled"
	}
	if o.Error != "" {
		s += " (" + o.Error + ")"
	}
	return s
}

// forensics prints, for the first few messages at fault, their ledger entry and every worker
// log line that names their task ID: enough to see which step let a duplicate or a loss through.
func forensics(t *testing.T, st store, fake *proxytest.Fake, fl *fleet, suspects []message) {
	t.Helper()
	const maxMessages, maxLines = 5, 40
	rdb := st.client(t)
	files := fl.logFiles()
	for i, m := range suspects {
		if i == maxMessages {
			break
		}
		var b strings.Builder
		fmt.Fprintf(&b, "forensics for %s (participant %s):\n", m.id, m.participant)
		ledger, err := rdb.HGet(context.Background(), worker.LedgerKey(tasks.DefaultQueue, m.id), "proxyq").Result()
		fmt.Fprintf(&b, "  ledger: %q %v\n", ledger, errOrEmpty(err))
		for _, in := range fake.Created() {
			if in.Body == m.body {
				fmt.Fprintf(&b, "  fake created %s at %s\n", in.SID, in.CreatedAt.UTC().Format(time.RFC3339Nano))
			}
		}
		needle := []byte(`"task_id":"` + m.id + `"`)
		lines := 0
		for _, path := range files {
			file, err := os.Open(path)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(file)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() && lines < maxLines {
				if bytes.Contains(sc.Bytes(), needle) {
					fmt.Fprintf(&b, "  %s: %s\n", filepath.Base(path), sc.Text())
					lines++
				}
			}
			_ = file.Close()
		}
		t.Log(b.String())
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// table prints the two runs side by side.
func table(runs ...*runResult) string {
	var present []*runResult
	for _, r := range runs {
		if r != nil {
			present = append(present, r)
		}
	}
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(label string, f func(r *runResult) string) {
		fmt.Fprintf(w, "%s\t", label)
		for _, r := range present {
			fmt.Fprintf(w, "%s\t", f(r))
		}
		fmt.Fprintln(w)
	}
	num := func(f func(r *runResult) int) func(r *runResult) string {
		return func(r *runResult) string { return fmt.Sprint(f(r)) }
	}
	row("", func(r *runResult) string { return r.name })
	row("messages", num(func(r *runResult) int { return r.messages }))
	row("kills (SIGKILL)", num(func(r *runResult) int { return r.kills }))
	row("duplicates (messages sent 2+ times)", num(func(r *runResult) int { return r.duplicates }))
	row("extra SMS", num(func(r *runResult) int { return r.extraSMS }))
	row("lost", num(func(r *runResult) int { return r.lost }))
	row("reconciled", func(r *runResult) string {
		if r.name == "naive" {
			return "-"
		}
		return fmt.Sprint(r.reconciled)
	})
	row("archived", num(func(r *runResult) int { return r.archived }))
	row("unfinished", num(func(r *runResult) int { return r.unfinished }))
	row("creates at the fake", num(func(r *runResult) int { return r.creates }))
	deliveryRow := func(f func(r *runResult) int) func(r *runResult) string {
		return func(r *runResult) string {
			if !r.delivery {
				return "-"
			}
			return fmt.Sprint(f(r))
		}
	}
	row("sent, final delivery status", deliveryRow(func(r *runResult) int { return r.final }))
	row("sent, no final delivery status", deliveryRow(func(r *runResult) int { return r.notFinal }))
	row("sent, wrong final status", deliveryRow(func(r *runResult) int { return r.wrongFinal }))
	row("callbacks the fake gave up on", deliveryRow(func(r *runResult) int { return r.callbacksFailed }))
	kinds := make([]proxytest.Fault, 0)
	for _, r := range present {
		for k, n := range r.faults {
			if n > 0 && !containsFault(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		row("fault "+k.String(), num(func(r *runResult) int { return r.faults[k] }))
	}
	row("workers restarted after exiting by themselves", num(func(r *runResult) int { return r.restarts }))
	row("wall time", func(r *runResult) string { return r.wall.Round(time.Second).String() })
	_ = w.Flush()
	return b.String()
}

func containsFault(ks []proxytest.Fault, k proxytest.Fault) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// workerEnv is the environment of a chaos worker process: the Redis and fake API it runs
// against, short timeouts and backoffs so that a run fits in minutes, JSON logs.
func workerEnv(redisURL, apiURL string, concurrency int) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"REDIS_URL=" + redisURL,
		"TWILIO_ACCOUNT_SID=" + accountSID,
		"TWILIO_AUTH_TOKEN=" + authToken,
		"PROXYQ_API_BASE_URL=" + apiURL,
		"PROXYQ_HTTP_TIMEOUT=" + httpTimeout.String(),
		"PROXYQ_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		"PROXYQ_RECONCILE_SETTLE=3s",
		"PROXYQ_BACKOFF_BASE=100ms",
		"PROXYQ_BACKOFF_MAX=2s",
		"PROXYQ_DELAYED_CHECK_INTERVAL=200ms",
		"PROXYQ_POLL_INTERVAL=20ms",
		fmt.Sprintf("PROXYQ_CONCURRENCY=%d", concurrency),
		"PROXYQ_ADMIN_ADDR=off",
		"PROXYQ_LOG_FORMAT=json",
		"PROXYQ_LOG_LEVEL=info",
	}
}
