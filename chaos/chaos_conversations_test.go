//go:build chaos || cluster

package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// The Conversations chaos scenario: the Proxy scenario's kills and faults, with Conversations
// messages (conversations:send_message) against the Conversations fake (convtest, behind the
// same held answers), proxyq's send policy beside a naive handler. Messages are spread over
// -chaos.participants conversations (several identical-looking messages per conversation: the
// stamp, not the body, tells them apart at reconciliation).
//
// The proxyq side runs worker.New with a Conversations client in a child process (the test
// binary re-executed with CHAOS_CONV_WORKER=1): the same package `proxyq worker` runs, until
// cmd wires PROXYQ_CONVERSATIONS_BASE_URL (then argv can be the proxyq binary's). Both read
// the environment the Proxy scenario's workers read.

const (
	convWorkerEnv      = "CHAOS_CONV_WORKER"
	convNaiveWorkerEnv = "CHAOS_CONV_NAIVE_WORKER"
)

// init runs a child worker instead of the tests (before TestMain, so main_test.go stays as is).
func init() {
	switch {
	case os.Getenv(convWorkerEnv) == "1":
		os.Exit(convWorkerMain())
	case os.Getenv(convNaiveWorkerEnv) == "1":
		os.Exit(convNaiveWorkerMain())
	}
}

func TestChaosConversations(t *testing.T) {
	if *flagMessages < 1 || *flagWorkers < 1 || *flagParticipants < 1 || *flagConcurrency < 1 {
		t.Fatal("-chaos.messages, -chaos.workers, -chaos.participants and -chaos.concurrency must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var ours, naive *runResult
	t.Run("proxyq", func(t *testing.T) {
		ours = runConvScenario(t, "proxyq-conversations", []string{self}, []string{convWorkerEnv + "=1"})
		checkOurs(t, ours)
	})
	if *flagNaive {
		t.Run("naive", func(t *testing.T) {
			naive = runConvScenario(t, "naive-conversations", []string{self}, []string{convNaiveWorkerEnv + "=1"})
			if naive.duplicates == 0 {
				t.Log("note: the naive handler sent no duplicate in this run; the scenario was too gentle to tell the two apart")
			}
		})
	}
	t.Log("\n" + table(ours, naive))
}

// startConvFake serves the Conversations fake with the scenario's faults, behind heldAnswers.
func startConvFake(t *testing.T, seed int64) (string, *convtest.Fake) {
	t.Helper()
	f, err := convtest.New(convtest.Config{Seed: uint64(seed), HangLimit: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rate := *flagFaultRate
	if err := f.SetFaultRates(map[convtest.Fault]float64{
		proxytest.Fault500AfterCreate:   rate,
		proxytest.FaultResetAfterCreate: rate,
		proxytest.FaultHangAfterCreate:  rate,
		proxytest.Fault429:              *flag429Rate / 2,
		proxytest.Fault429RetryAfter:    *flag429Rate / 2,
	}); err != nil {
		t.Fatalf("fault rates: %v", err)
	}
	h := &heldAnswers{next: f.Mount(convtest.DefaultPrefix), mean: *flagAnswerDelay,
		rng: rand.New(rand.NewPCG(uint64(seed), 0xA5)), done: make(chan struct{})}
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		f.Close()
		close(h.done)
		ts.Close()
	})
	return ts.URL + convtest.DefaultPrefix, f
}

func convSID(i int) string { return fmt.Sprintf("CH%032x", 0xC4A0500+i%*flagParticipants) }

func runConvScenario(t *testing.T, name string, argv, extraEnv []string) *runResult {
	db := redistest.NewDB(t)
	apiURL, fake := startConvFake(t, *flagSeed)
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	logDir := t.TempDir()
	if *flagLogDir != "" {
		logDir = *flagLogDir
	}
	env := append(workerEnv(db.URL(), apiURL, *flagConcurrency), "PROXYQ_CONVERSATIONS_BASE_URL="+apiURL)
	env = append(env, extraEnv...)

	// Enqueue: unique bodies, task IDs chaos-conv-NNNNN.
	enq := tasks.NewEnqueuer(db.ConnOpt())
	msgs := make([]message, *flagMessages)
	for i := range msgs {
		msgs[i] = message{id: fmt.Sprintf("chaos-conv-%05d", i), participant: convSID(i),
			body: fmt.Sprintf("chaos conversations message %05d of %d", i, len(msgs))}
		if _, err := enq.EnqueueConversation(context.Background(), tasks.ConversationPayload{
			ConversationSID: msgs[i].participant, Author: "chaos", Body: msgs[i].body,
			Attributes: []byte(`{"run":"chaos"}`)}, tasks.IdempotencyKey(msgs[i].id)); err != nil {
			t.Fatal(err)
		}
	}
	_ = enq.Close()

	began := time.Now()
	grace := shutdownTimeout + httpTimeout + 15*time.Second
	fl := newFleet(t, name, argv, env, logDir, *flagWorkers, grace)
	restarts := 0
	lastLog := time.Now()
	done := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for {
			restarts += fl.revive()
			q, err := insp.GetQueueInfo(tasks.DefaultQueue)
			if err == nil && time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				t.Logf("%s t=%-4s kills=%-3d completed=%-5d archived=%-3d active=%-3d pending=%-5d retry=%-4d creates=%d",
					name, time.Since(began).Round(time.Second), fl.killCount(), q.Completed, q.Archived, q.Active,
					q.Pending, q.Retry, fake.Stats().Creates)
			}
			if err == nil && q.Completed+q.Archived >= len(msgs) && q.Pending+q.Active+q.Retry+q.Scheduled+q.Aggregating == 0 {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(min(250*time.Millisecond, time.Until(deadline)+time.Millisecond))
		}
	}
	// The Proxy scenario's kill schedule (same seed, same draws).
	rng := rand.New(rand.NewPCG(uint64(*flagSeed), 0xC4A05))
	for k := 0; k < *flagKills; k++ {
		gap := time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
		victim := rng.IntN(*flagWorkers)
		pause := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
		if done(gap) {
			t.Logf("%s: every message finished after %d kills; no more kills", name, k)
			break
		}
		fl.kill(victim)
		time.Sleep(pause)
		fl.start(victim)
	}
	if !done(*flagDrain) {
		t.Logf("%s: not every message finished within -chaos.drain=%s", name, *flagDrain)
	}
	wall := time.Since(began)
	fl.stopAll()
	r := verifyConv(t, name, insp, fake, msgs)
	r.kills, r.wall, r.restarts, r.logs = fl.killCount(), wall, restarts, fl.logFiles()
	for _, u := range fl.unexpectedExits() {
		t.Logf("%s: %s", name, u)
	}
	return r
}

// verifyConv compares every message's task and outcome with the messages the fake holds.
func verifyConv(t *testing.T, name string, insp *asynq.Inspector, fake *convtest.Fake, msgs []message) *runResult {
	t.Helper()
	r := &runResult{name: name, messages: len(msgs), faults: map[proxytest.Fault]int{}}
	st := fake.Stats()
	r.creates = st.Creates
	for k, n := range st.Faults {
		f, err := proxytest.ParseFault(k)
		if err == nil {
			r.faults[f] = n
		}
	}
	ours := map[string]bool{}
	convs := map[string]bool{}
	for _, m := range msgs {
		ours[m.body] = true
		convs[m.participant] = true
	}
	byBody := map[string][]convtest.Message{}
	for ch := range convs {
		for _, m := range fake.Messages(accountSID, "", ch) {
			if !ours[m.Body] {
				r.unknown++
				r.problems = append(r.problems, fmt.Sprintf("the fake holds %s with a body the test never enqueued", m.SID))
				continue
			}
			byBody[m.Body] = append(byBody[m.Body], m)
		}
	}
	problem := func(m message, format string, args ...any) {
		r.problems = append(r.problems, m.id+": "+fmt.Sprintf(format, args...))
	}
	for _, m := range msgs {
		created := byBody[m.body]
		n := len(created)
		if n > 1 {
			r.duplicates++
			r.extraSMS += n - 1
			problem(m, "created %d times", n)
		}
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.id)
		if err != nil {
			r.unfinished++
			problem(m, "task not found: %v", err)
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		switch info.State {
		case asynq.TaskStateCompleted:
			if n == 0 {
				r.lost++
				problem(m, "completed but never created")
			}
			if name != "naive-conversations" {
				switch {
				case o == nil || o.State != tasks.OutcomeSent || o.API != tasks.APIConversations:
					problem(m, "completed with outcome %s", describe(o))
				case n == 1 && o.MessageSID != created[0].SID:
					problem(m, "outcome records %s, the fake created %s", o.MessageSID, created[0].SID)
				case n == 1:
					if id, _ := conversations.StampID(created[0].Attributes); id != m.id {
						problem(m, "its message carries stamp %q", id)
					}
				}
			}
			if o != nil && o.Reconciled {
				r.reconciled++
			}
		case asynq.TaskStateArchived:
			r.archived++
			r.archivedBy = append(r.archivedBy, fmt.Sprintf("%s: %s (outcome %s)", m.id, info.LastErr, describe(o)))
			if !allowedArchive(o) {
				if n == 0 {
					r.lost++
				}
				problem(m, "archived: %s", info.LastErr)
			}
		default:
			r.unfinished++
			problem(m, "still %s (last error %q)", info.State, info.LastErr)
		}
	}
	return r
}

// convWorkerMain runs proxyq's worker package with a Conversations client until SIGTERM.
func convWorkerMain() int {
	cfg, err := naiveConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker:", err)
		return 2
	}
	redisOpt, err := asynq.ParseRedisURI(cfg.redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker: REDIS_URL:", err)
		return 2
	}
	proxy, err := proxyclient.New(proxyclient.Config{AccountSID: cfg.accountSID, AuthToken: cfg.authToken, BaseURL: cfg.apiBase, HTTPTimeout: cfg.httpTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker:", err)
		return 2
	}
	conv, err := conversations.New(conversations.Config{AccountSID: cfg.accountSID, AuthToken: cfg.authToken,
		BaseURL: os.Getenv("PROXYQ_CONVERSATIONS_BASE_URL"), HTTPTimeout: cfg.httpTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker:", err)
		return 2
	}
	log, _ := zap.NewProduction()
	w, err := worker.New(worker.Config{
		Concurrency: cfg.concurrency, HTTPTimeout: cfg.httpTimeout, ShutdownTimeout: cfg.shutdownTimeout,
		ReconcileSettle: 3 * time.Second, BackoffBase: cfg.backoffBase, BackoffMax: cfg.backoffMax,
		PollInterval: cfg.pollInterval, DelayedCheckInterval: cfg.delayedCheck,
	}, worker.Deps{Redis: redisOpt, API: proxy, Conversations: conv, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker:", err)
		return 2
	}
	if err := w.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "conversations worker:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	w.Shutdown()
	return 0
}

// convNaiveWorkerMain is the naive handler for Conversations: POST the message, return the
// error, let asynq retry anything.
func convNaiveWorkerMain() int {
	cfg, err := naiveConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive conversations worker:", err)
		return 2
	}
	redisOpt, err := asynq.ParseRedisURI(cfg.redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive conversations worker: REDIS_URL:", err)
		return 2
	}
	srv := asynq.NewServer(redisOpt, asynq.Config{
		Concurrency: cfg.concurrency, Queues: map[string]int{tasks.DefaultQueue: 1},
		TaskCheckInterval: cfg.pollInterval, DelayedTaskCheckInterval: cfg.delayedCheck, ShutdownTimeout: cfg.shutdownTimeout,
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration { return backoff(n, cfg.backoffBase, cfg.backoffMax) },
		LogLevel:       asynq.WarnLevel,
	})
	base := strings.TrimRight(os.Getenv("PROXYQ_CONVERSATIONS_BASE_URL"), "/")
	client := &http.Client{Timeout: cfg.httpTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency}}
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeSendConversationMessage, func(ctx context.Context, t *asynq.Task) error {
		p, err := tasks.DecodeConversation(t.Payload())
		if err != nil {
			return err
		}
		form := url.Values{"Body": {p.Body}, "Author": {p.Author}, "Attributes": {string(p.Attributes)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/Conversations/"+p.ConversationSID+"/Messages", strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		req.SetBasicAuth(cfg.accountSID, cfg.authToken)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("twilio answered %s", resp.Status)
		}
		return nil
	})
	if err := srv.Run(mux); err != nil {
		fmt.Fprintln(os.Stderr, "naive conversations worker:", err)
		return 1
	}
	return 0
}
