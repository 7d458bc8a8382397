package main

// End-to-end tests: the real proxyq binary as a worker process and as a CLI, a real Redis
// (internal/redistest) and the fake Proxy API (proxytest) on loopback. Each test has its own
// Redis database, fake and worker, so they run in parallel.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the proxyq binary")
	}
}

// enqueueFile writes msgs as JSON lines and enqueues them with `proxyq enqueue --file`,
// returning the printed task IDs.
func (h *harness) enqueueFile(msgs []message, extraArgs ...string) []string {
	h.t.Helper()
	path := filepath.Join(h.t.TempDir(), "messages.jsonl")
	if err := os.WriteFile(path, []byte(linesOf(msgs)), 0o600); err != nil {
		h.t.Fatal(err)
	}
	r := h.run("", append([]string{"enqueue", "--file", path}, extraArgs...)...)
	if r.code != 0 {
		h.t.Fatalf("enqueue --file: exit %d\nstderr: %s", r.code, r.stderr)
	}
	ids := strings.Fields(r.stdout)
	if len(ids) != len(msgs) {
		h.t.Fatalf("enqueue --file printed %d IDs for %d messages: %q", len(ids), len(msgs), r.stdout)
	}
	return ids
}

// (a) The happy path: 20 messages from a file, each created once, each status recording the
// interaction SID the fake created; re-enqueuing idempotency keys is reported as duplicates.
func TestE2EHappyPath(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	w := h.startWorker()

	msgs := make([]message, 20)
	for i := range msgs {
		msgs[i] = newMessage(i, fmt.Sprintf("happy path message %d", i))
		if i%2 == 0 {
			msgs[i].key = fmt.Sprintf("happy-%d", i)
		}
	}
	ids := h.enqueueFile(msgs)
	for i, m := range msgs {
		if m.key != "" && ids[i] != m.key {
			t.Errorf("message %d: task ID %q, want its idempotency key %q", i, ids[i], m.key)
		}
	}
	h.waitForState("default", asynq.TaskStateCompleted, 20*time.Second, ids...)

	sidOfBody := map[string]string{}
	for _, in := range h.fake.Fake.Created() {
		sidOfBody[in.Body] = in.SID
	}
	for i, m := range msgs {
		if n := h.fake.Fake.CreatesForBody(m.body); n != 1 {
			t.Errorf("message %d created %d times, want once", i, n)
		}
		st := h.status(ids[i])
		switch {
		case st.State != "completed":
			t.Errorf("message %d: state %q, want completed", i, st.State)
		case st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent:
			t.Errorf("message %d: outcome %+v, want sent", i, st.Outcome)
		case st.Outcome.InteractionSID == "" || st.Outcome.InteractionSID != sidOfBody[m.body]:
			t.Errorf("message %d: interaction SID %q, want the fake's %q", i, st.Outcome.InteractionSID, sidOfBody[m.body])
		case st.Outcome.Attempts != 1 || st.Retried != 0:
			t.Errorf("message %d: attempts %d, retried %d; want 1 and 0", i, st.Outcome.Attempts, st.Retried)
		case st.Message.ParticipantSID != m.participant:
			t.Errorf("message %d: participant %q, want %q", i, st.Message.ParticipantSID, m.participant)
		}
	}

	// The human view names the state and the SID.
	r := h.run("", "status", ids[0])
	if r.code != 0 || !strings.Contains(r.stdout, "completed") || !strings.Contains(r.stdout, sidOfBody[msgs[0].body]) {
		t.Errorf("status %s: exit %d, output:\n%s", ids[0], r.code, r.stdout)
	}

	// Same keys again: the existing IDs come back as duplicates and nothing is sent again.
	var keyed []message
	for _, m := range msgs {
		if m.key != "" {
			keyed = append(keyed, m)
		}
	}
	path := filepath.Join(t.TempDir(), "again.jsonl")
	if err := os.WriteFile(path, []byte(linesOf(keyed)), 0o600); err != nil {
		t.Fatal(err)
	}
	r = h.run("", "enqueue", "--json", "--file", path)
	if r.code != 0 {
		t.Fatalf("enqueue duplicates: exit %d, stderr %s", r.code, r.stderr)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for i, m := range keyed {
		var got struct {
			ID        string `json:"id"`
			Queue     string `json:"queue"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("duplicate line %d: %v (output %q)", i, err, r.stdout)
		}
		if got.ID != m.key || got.Queue != "default" || !got.Duplicate {
			t.Errorf("re-enqueue of %q: %+v, want the same ID on default marked duplicate", m.key, got)
		}
	}
	if info, err := h.insp.GetQueueInfo("default"); err != nil || info.Pending+info.Scheduled+info.Active+info.Retry != 0 {
		t.Errorf("queue after duplicates: %+v, %v; want nothing waiting", info, err)
	}

	// The admin endpoints serve the worker's and asynq's metrics.
	status, body := httpGet(t, "http://"+w.admin+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	for _, want := range []string{`proxyq_attempts_total{api="proxy",outcome="sent"} 20`, `asynq_queue_size{queue="default"}`, "proxyq_worker_up 1", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if status, body := httpGet(t, "http://"+w.admin+"/healthz"); status != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", status, body)
	}
	if strings.Contains(w.log.String(), "happy path message") {
		t.Error("the worker logged a message body")
	}
}

// (b) 429 and 503 storms: everything is delivered exactly once, and 429s burn no attempts.
func TestE2EStorms(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	h.startWorker()
	fake := h.fake.Fake

	// Phase 1: only 429s. Each POST takes the next scripted fault, so every fault is met by
	// exactly one of our requests.
	const n429, n429RA = 20, 4
	must(t, fake.Inject(proxytest.Fault429, n429/2))
	must(t, fake.Inject(proxytest.Fault429RetryAfter, n429RA))
	must(t, fake.Inject(proxytest.Fault429, n429/2))
	first := make([]message, 10)
	for i := range first {
		first[i] = newMessage(i, fmt.Sprintf("429 storm message %d", i))
	}
	ids := h.enqueueFile(first)
	h.waitForState("default", asynq.TaskStateCompleted, 30*time.Second, ids...)
	posts := 0
	for i, m := range first {
		if n := fake.CreatesForBody(m.body); n != 1 {
			t.Errorf("429 storm: message %d created %d times, want once", i, n)
		}
		st := h.status(ids[i])
		if st.Retried != 0 {
			t.Errorf("429 storm: message %d retried %d, want 0 (a 429 is not a failed attempt)", i, st.Retried)
		}
		if st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent {
			t.Fatalf("429 storm: message %d outcome %+v, want sent", i, st.Outcome)
		}
		posts += st.Outcome.Attempts
	}
	if left := fake.Pending(); left != 0 {
		t.Errorf("%d scripted 429s were never requested", left)
	}
	if want := len(first) + n429 + n429RA; posts != want {
		t.Errorf("429 storm: outcomes count %d requests, want %d (one per message plus one per 429)", posts, want)
	}

	// Phase 2: 503s mixed with 429s. Every 503 is one failed attempt of some message.
	const n503 = 12
	must(t, fake.Inject(proxytest.Fault503, n503/2))
	must(t, fake.Inject(proxytest.Fault429, 5))
	must(t, fake.Inject(proxytest.Fault503, n503/2))
	must(t, fake.Inject(proxytest.Fault429RetryAfter, 2))
	second := make([]message, 10)
	for i := range second {
		second[i] = newMessage(100+i, fmt.Sprintf("503 storm message %d", i))
	}
	ids = h.enqueueFile(second)
	h.waitForState("default", asynq.TaskStateCompleted, 30*time.Second, ids...)
	retried := 0
	for i, m := range second {
		if n := fake.CreatesForBody(m.body); n != 1 {
			t.Errorf("503 storm: message %d created %d times, want once", i, n)
		}
		retried += h.status(ids[i]).Retried
	}
	if retried != n503 {
		t.Errorf("503 storm: asynq counted %d failed attempts, want %d (one per 503, none per 429)", retried, n503)
	}
	if got := len(fake.Created()); got != len(first)+len(second) {
		t.Errorf("the fake created %d interactions, want %d", got, len(first)+len(second))
	}
}

// (c) An unknown participant is a permanent failure: archived after one request, code 20404.
func TestE2EUnknownParticipant(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	h.startWorker()
	m := newMessage(1, "to nobody")
	h.fake.Fake.MarkParticipantUnknown(m.participant)

	r := h.run("", "enqueue", "--service", m.service, "--session", m.session, "--participant", m.participant, "--body", m.body)
	if r.code != 0 {
		t.Fatalf("enqueue: exit %d, stderr %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	h.waitForState("default", asynq.TaskStateArchived, 20*time.Second, id)

	st := h.status(id)
	if !strings.Contains(st.LastError, "20404") {
		t.Errorf("last error %q, want it to name code 20404", st.LastError)
	}
	if st.Retried != 0 {
		t.Errorf("retried %d, want 0: a permanent failure burns no retries", st.Retried)
	}
	if o := st.Outcome; o == nil || o.State != tasks.OutcomeFailed || o.ErrorCode != 20404 || o.HTTPStatus != 404 || o.Attempts != 1 {
		t.Errorf("outcome %+v, want failed with code 20404, HTTP 404, 1 attempt", o)
	}
	if got := h.fake.Fake.Stats().Requests; got != 1 {
		t.Errorf("the fake saw %d requests, want exactly one POST", got)
	}
	if n := h.fake.Fake.CreatesForBody(m.body); n != 0 {
		t.Errorf("created %d times for an unknown participant", n)
	}
}

// (d) A malformed payload pushed straight into Redis is archived; the worker keeps sending.
func TestE2EMalformedPayload(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	w := h.startWorker()

	client := asynq.NewClient(h.db.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	info, err := client.Enqueue(asynq.NewTask(tasks.TypeSendInteraction, []byte(`{"nope":1}`)))
	if err != nil {
		t.Fatalf("enqueue malformed task: %v", err)
	}
	h.waitForState("default", asynq.TaskStateArchived, 20*time.Second, info.ID)
	st := h.status(info.ID)
	if !strings.Contains(st.LastError, "invalid payload") {
		t.Errorf("last error %q, want it to say invalid payload", st.LastError)
	}
	if st.Retried != 0 {
		t.Errorf("retried %d, want 0", st.Retried)
	}

	if w.hasExited() {
		t.Fatalf("the worker exited (%d) after a malformed payload", w.code)
	}
	good := newMessage(2, "after the malformed one")
	ids := h.enqueueFile([]message{good})
	h.waitForState("default", asynq.TaskStateCompleted, 20*time.Second, ids...)
	if n := h.fake.Fake.CreatesForBody(good.body); n != 1 {
		t.Errorf("good message created %d times, want once", n)
	}
}

// (e) Invalid CLI input exits 2, names the line and field, and enqueues nothing.
func TestE2EInvalidInput(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	good := newMessage(1, "good")
	badSID := newMessage(2, "bad sid")
	badSID.service = "KS123"
	noBody := newMessage(3, "")

	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantStderr []string
	}{
		{
			name:       "bad SID on one of three lines",
			stdin:      linesOf([]message{good, badSID, newMessage(4, "also good")}),
			args:       []string{"enqueue", "--file", "-"},
			wantStderr: []string{"line 2: service_sid: must match"},
		},
		{
			name:       "every bad line is reported",
			stdin:      linesOf([]message{badSID, good, noBody}),
			args:       []string{"enqueue", "--file", "-"},
			wantStderr: []string{"line 1: service_sid:", "line 3: body: is required"},
		},
		{
			name:       "missing body",
			args:       []string{"enqueue", "--service", good.service, "--session", good.session, "--participant", good.participant},
			wantStderr: []string{"--body: is required"},
		},
		{
			name:       "bad --at",
			args:       []string{"enqueue", "--service", good.service, "--session", good.session, "--participant", good.participant, "--body", "x", "--at", "tomorrow"},
			wantStderr: []string{`--at="tomorrow"`, "RFC 3339"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.stdin, tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q lacks %q", r.stderr, want)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing (no IDs: nothing was enqueued)", r.stdout)
			}
		})
	}
	queues, err := h.insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		if info, err := h.insp.GetQueueInfo(q); err != nil || info.Size != 0 {
			t.Errorf("queue %q after invalid input: %+v, %v; want empty", q, info, err)
		}
	}
}

// (f) SIGTERM while a send is in flight: the send completes, is recorded, and the worker
// exits 0.
func TestE2EGracefulShutdown(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{Latency: 2 * time.Second})
	w := h.startWorker()
	m := newMessage(1, "in flight at SIGTERM")
	ids := h.enqueueFile([]message{m})
	eventually(t, 15*time.Second, "the send to reach the fake", func() bool {
		return h.fake.Fake.InFlight(testAccountSID) == 1
	})
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit within 30s of SIGTERM")
	}
	if w.code != 0 {
		t.Fatalf("worker exit code %d after SIGTERM, want 0", w.code)
	}
	info, err := h.insp.GetTaskInfo("default", ids[0])
	if err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("task after shutdown: %+v, %v; want completed", info, err)
	}
	if n := h.fake.Fake.CreatesForBody(m.body); n != 1 {
		t.Errorf("created %d times, want once", n)
	}
	if st := h.status(ids[0]); st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent {
		t.Errorf("outcome %+v, want sent", st.Outcome)
	}
	if !strings.Contains(w.log.String(), "worker stopped") {
		t.Errorf("no 'worker stopped' in the log")
	}
}

// (g) Missing or malformed configuration exits 2 naming the variable; Redis down exits 1.
func TestE2EWorkerConfigErrors(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	without := func(name string) []string {
		var out []string
		for _, kv := range h.env() {
			if !strings.HasPrefix(kv, name+"=") {
				out = append(out, kv)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		env      []string
		wantCode int
		want     []string
	}{
		{"no credentials", without("TWILIO_ACCOUNT_SID"), exitUsage, []string{"TWILIO_ACCOUNT_SID", "TWILIO_API_KEY"}},
		{"no auth token", without("TWILIO_AUTH_TOKEN"), exitUsage, []string{"TWILIO_AUTH_TOKEN"}},
		{"bad concurrency", h.env("PROXYQ_CONCURRENCY=lots"), exitUsage, []string{"PROXYQ_CONCURRENCY"}},
		{"bad redis url", h.env("REDIS_URL=mysql://x"), exitUsage, []string{"REDIS_URL"}},
		{"redis down", h.env("REDIS_URL=redis://" + freeAddr(t) + "/0"), exitFailure, []string{"unreachable"}},
		{"webhook without secret", h.env("PROXYQ_STATUS_WEBHOOK_URL=https://app.example.com/hooks"), exitUsage, []string{"PROXYQ_STATUS_WEBHOOK_SECRET"}},
		{"bad webhook secret", h.env("PROXYQ_STATUS_WEBHOOK_URL=https://app.example.com/hooks", "PROXYQ_STATUS_WEBHOOK_SECRET=whsec_!!"), exitUsage, []string{"PROXYQ_STATUS_WEBHOOK_SECRET", "base64"}},
		{"max age below poll after", h.env("PROXYQ_DELIVERY_POLL_AFTER=2h", "PROXYQ_DELIVERY_MAX_AGE=1h"), exitUsage, []string{"PROXYQ_DELIVERY_MAX_AGE", "PROXYQ_DELIVERY_POLL_AFTER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, tt.env, "", "worker")
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %s", r.code, tt.wantCode, r.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q lacks %q", r.stderr, want)
				}
			}
		})
	}
}

// (h) status of an unknown ID exits 3.
func TestE2EStatusUnknownID(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	for _, args := range [][]string{{"status", "no-such-task"}, {"status", "--json", "no-such-task"}} {
		r := h.run("", args...)
		if r.code != exitNotFound {
			t.Errorf("%v: exit %d, want %d", args, r.code, exitNotFound)
		}
		if !strings.Contains(r.stderr, `no message with task ID "no-such-task"`) {
			t.Errorf("%v: stderr %q", args, r.stderr)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
