package main

// In-process tests of `proxyq dev`, `proxyq dashboard` and `proxyq sandbox`: Main.Run with its
// own environment map (nothing inherited), loopback addresses with port 0, and the addresses
// read back from what the command prints.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/devmode"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// syncBuffer is written by the command while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// inProcess is one Main.Run in a goroutine.
type inProcess struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int // receives the exit code
}

// startInProcess runs `proxyq args…` with exactly env as its environment. The command is
// cancelled (as by SIGTERM) when the test ends, if it has not exited by then.
func startInProcess(t *testing.T, env map[string]string, args ...string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	m := &Main{Stdin: strings.NewReader(""), Stdout: p.stdout, Stderr: p.stderr, Getenv: func(k string) string { return env[k] }}
	go func() { p.done <- m.Run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Errorf("proxyq %s did not stop within 30s of cancellation", strings.Join(args, " "))
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", p.stdout.String(), tail(p.stderr.String(), 6000))
		}
	})
	return p
}

// waitOutput waits (bounded) until stdout matches re, failing if the command exits first.
func (p *inProcess) waitOutput(t *testing.T, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	deadline := time.After(within)
	for {
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			return m
		}
		select {
		case code := <-p.done:
			p.done <- code
			t.Fatalf("command exited with %d before printing %q", code, re)
		case <-deadline:
			t.Fatalf("no %q on stdout within %v", re, within)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop cancels the command and returns its exit code.
func (p *inProcess) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("command did not stop within 30s")
		return -1
	}
}

// wait waits for the command to exit by itself.
func (p *inProcess) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(within):
		t.Fatalf("command still running after %v", within)
		return -1
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

type httpResult struct {
	status int
	header http.Header
	body   string
}

func request(t *testing.T, method, url string, header map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

func basicAuth(user, pass string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

var (
	devDashboardLine = regexp.MustCompile(`Dashboard\s+(http://127\.0\.0\.1:\d+)/\n\s+user (\S+), password (\S+)`)
	devSummaryLine   = regexp.MustCompile(`(?m)^Demo finished in .*: (\d+) messages`)
	devCount         = func(name string) *regexp.Regexp { return regexp.MustCompile(`(?m)^  ` + name + `\s+(\d+)`) }
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func expectedDemoFailures(n int) int {
	k := 0
	for i := 0; i < n; i++ {
		if devmode.Failure(i) != "" {
			k++
		}
	}
	return k
}

// TestDevDemoExitAfterDemo runs the README's first command the way CI can: a demo batch of 30
// against the fake, every message ending completed or archived for the reason the demo
// intended, then a clean exit 0. REDIS_URL points at a test Redis so the end state can be read
// after the command is gone.
func TestDevDemoExitAfterDemo(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	const n = 30
	p := startInProcess(t, map[string]string{"REDIS_URL": db.URL()},
		"dev", "--demo", strconv.Itoa(n), "--exit-after-demo", "--addr", "127.0.0.1:0")
	if code := p.wait(t, 45*time.Second); code != exitOK {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, p.stdout, tail(p.stderr.String(), 4000))
	}
	out := p.stdout.String()
	if m := devSummaryLine.FindStringSubmatch(out); m == nil || m[1] != strconv.Itoa(n) {
		t.Fatalf("no summary for %d messages:\n%s", n, out)
	}
	if !regexp.MustCompile(`delivery +\d+ delivered, \d+ undelivered or failed`).MatchString(out) {
		t.Errorf("no delivery line in the summary:\n%s", out)
	}
	wantFailed := expectedDemoFailures(n)
	if got := devCount("failed").FindStringSubmatch(out); got == nil || atoi(t, got[1]) != wantFailed {
		t.Errorf("summary failed = %v, want %d:\n%s", got, wantFailed, out)
	}
	if got := devCount("sent").FindStringSubmatch(out); got == nil || atoi(t, got[1]) != n-wantFailed {
		t.Errorf("summary sent = %v, want %d:\n%s", got, n-wantFailed, out)
	}
	wantConv := 0
	for i := range n {
		if devmode.Conversation(i) {
			wantConv++
		}
	}
	if got := regexp.MustCompile(`(?m)^  conversations +(\d+)`).FindStringSubmatch(out); got == nil || atoi(t, got[1]) != wantConv {
		t.Errorf("summary conversations = %v, want %d:\n%s", got, wantConv, out)
	}
	for _, bad := range []string{"unfinished", "DUPLICATES", "unexpected"} {
		if strings.Contains(out, "  "+bad) {
			t.Errorf("summary reports %s:\n%s", bad, out)
		}
	}

	// The end state in Redis, message by message.
	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	completed, err := insp.ListCompletedTasks(tasks.DefaultQueue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	archived, err := insp.ListArchivedTasks(tasks.DefaultQueue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(completed)+len(archived) != n {
		t.Fatalf("%d completed + %d archived, want %d in all", len(completed), len(archived), n)
	}
	index := func(id string) int { // demo-<run>-007 → 6
		i := strings.LastIndex(id, "-")
		return atoi(t, id[i+1:]) - 1
	}
	for _, ti := range completed {
		o, err := tasks.ParseOutcome(ti.Result)
		// Every third message (devmode.Conversation) went through Twilio Conversations.
		switch conv := devmode.Conversation(index(ti.ID)); {
		case err != nil || o == nil || o.State != tasks.OutcomeSent:
			t.Errorf("completed %s: outcome %+v, %v; want sent", ti.ID, o, err)
		case !conv && !strings.HasPrefix(o.InteractionSID, "KI"):
			t.Errorf("completed %s: outcome %+v; want a Proxy interaction SID", ti.ID, o)
		case conv && (o.API != tasks.APIConversations || !strings.HasPrefix(o.MessageSID, "IM") || o.InteractionSID != ""):
			t.Errorf("completed %s: outcome %+v; want a Conversations message SID", ti.ID, o)
		}
		if r := devmode.Failure(index(ti.ID)); r != "" {
			t.Errorf("completed %s was meant to fail (%s)", ti.ID, r)
		}
		// The fake's signed status callbacks reached dev's callback route: every sent message
		// ends with a final delivery status, its history holding queued and that status (in
		// the order proxyq learned them: some callbacks come out of order), and an error code
		// when it was not delivered.
		hasStatus := func(o *tasks.Outcome, st string) bool {
			return slices.ContainsFunc(o.StatusHistory, func(e tasks.StatusEvent) bool { return e.Status == st })
		}
		// Proxy records queued at the send; a Conversations record holds only the receipts'
		// statuses, and a "sent" receipt that comes after "delivered" is not recorded (a status
		// never moves back).
		first := "queued"
		if o != nil && o.API == tasks.APIConversations {
			first = o.OutboundStatus
		}
		if o != nil && (!o.Final || !hasStatus(o, first) || !hasStatus(o, o.OutboundStatus) ||
			(o.OutboundStatus != "delivered" && o.DeliveryErrorCode == 0)) {
			t.Errorf("completed %s: delivery %s final=%v history %+v error %d", ti.ID, o.OutboundStatus, o.Final, o.StatusHistory, o.DeliveryErrorCode)
		}
	}
	wantCode := map[string]int{"unknown participant": 20404, "closed session": 80607}
	for _, ti := range archived {
		o, err := tasks.ParseOutcome(ti.Result)
		reason := devmode.Failure(index(ti.ID))
		if err != nil || o == nil || o.State != tasks.OutcomeFailed || o.ErrorCode != wantCode[reason] {
			t.Errorf("archived %s (meant: %q): outcome %+v, %v; want failed with code %d", ti.ID, reason, o, err, wantCode[reason])
		}
	}
}

// TestDevServesEverything keeps dev running after a demo on its embedded Redis (miniredis) and
// checks the one server: health, dashboard auth with the generated password, the fake's
// endpoints, and the metrics' names and values against the demo's summary. Then it stops it
// as Ctrl-C would and expects exit 0.
func TestDevServesEverything(t *testing.T) {
	t.Parallel()
	const n = 20
	p := startInProcess(t, map[string]string{}, "dev", "--demo", strconv.Itoa(n), "--addr", "127.0.0.1:0")
	m := p.waitOutput(t, devDashboardLine, 15*time.Second)
	base, user, password := m[1], m[2], m[3]
	p.waitOutput(t, regexp.MustCompile(`Serving until Ctrl-C`), 45*time.Second)
	out := p.stdout.String()
	sent := atoi(t, devCount("sent").FindStringSubmatch(out)[1])
	reconciled := atoi(t, devCount("reconciled").FindStringSubmatch(out)[1])
	failed := atoi(t, devCount("failed").FindStringSubmatch(out)[1])
	convSent := atoi(t, regexp.MustCompile(`(?m)^  conversations +(\d+)`).FindStringSubmatch(out)[1])
	if sent+failed != n || failed != expectedDemoFailures(n) {
		t.Fatalf("summary: sent %d, failed %d; want %d and %d", sent, failed, n-expectedDemoFailures(n), expectedDemoFailures(n))
	}

	t.Run("health", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
			if r := request(t, "GET", base+path, nil); r.status != 200 || strings.TrimSpace(r.body) != want {
				t.Errorf("GET %s = %d %q, want 200 %q", path, r.status, r.body, want)
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		if r := request(t, "GET", base+"/", nil); r.status != http.StatusUnauthorized {
			t.Errorf("GET / without credentials = %d, want 401", r.status)
		}
		if r := request(t, "GET", base+"/queues/api/queues", basicAuth(user, password+"x")); r.status != http.StatusUnauthorized {
			t.Errorf("GET /queues/api/queues with a wrong password = %d, want 401", r.status)
		}
		r := request(t, "GET", base+"/queues/api/queues", basicAuth(user, password))
		if r.status != 200 {
			t.Fatalf("GET /queues/api/queues = %d %s", r.status, r.body)
		}
		var q struct {
			Queues []struct {
				Queue     string `json:"queue"`
				Completed int    `json:"completed"`
				Archived  int    `json:"archived"`
			} `json:"queues"`
		}
		if err := json.Unmarshal([]byte(r.body), &q); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, qq := range q.Queues {
			if qq.Queue == "default" {
				found = true
				if qq.Completed != sent || qq.Archived != failed {
					t.Errorf("dashboard: default queue completed %d archived %d, want %d and %d", qq.Completed, qq.Archived, sent, failed)
				}
			}
		}
		if !found {
			t.Errorf("dashboard lists no default queue: %s", r.body)
		}
		// Payloads are redacted in dev too.
		r = request(t, "GET", base+"/queues/api/queues/default/completed_tasks", basicAuth(user, password))
		if r.status != 200 || strings.Contains(r.body, "your driver") || !strings.Contains(r.body, "[redacted: ") {
			t.Errorf("completed tasks view is not redacted: %d %s", r.status, tail(r.body, 600))
		}
	})

	t.Run("fake", func(t *testing.T) {
		for _, path := range []string{"/_proxytest/interactions", "/twilio/_proxytest/interactions"} {
			r := request(t, "GET", base+path, nil)
			var created []map[string]any
			if r.status != 200 || json.Unmarshal([]byte(r.body), &created) != nil {
				t.Fatalf("GET %s = %d %s", path, r.status, tail(r.body, 300))
			}
			if len(created) != sent-convSent {
				t.Errorf("GET %s: %d interactions created, want %d (one per sent Proxy message)", path, len(created), sent-convSent)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := request(t, "GET", base+"/metrics", nil)
		if r.status != 200 {
			t.Fatalf("GET /metrics = %d", r.status)
		}
		tests := []struct {
			series string
			want   float64 // -1: present, any value
		}{
			{`proxyq_attempts_total{outcome="sent"}`, float64(sent - reconciled)},
			{`proxyq_attempts_total{outcome="permanent"}`, float64(failed)},
			{`proxyq_worker_up`, 1},
			{`asynq_queue_size{queue="default"}`, float64(n)},
			{`asynq_tasks_enqueued_total{queue="default",state="completed"}`, float64(sent)},
			{`asynq_tasks_enqueued_total{queue="default",state="archived"}`, float64(failed)},
			{`proxyq_in_flight_sends`, 0},
			{`proxyq_request_duration_seconds_count{operation="create"}`, -1},
			{`go_goroutines`, -1},
		}
		if reconciled > 0 {
			tests = append(tests, struct {
				series string
				want   float64
			}{`proxyq_attempts_total{outcome="reconciled"}`, float64(reconciled)})
		}
		for _, tt := range tests {
			got, ok := metricValue(r.body, tt.series)
			switch {
			case !ok:
				t.Errorf("%s missing from /metrics", tt.series)
			case tt.want >= 0 && got != tt.want:
				t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
			}
		}
		if !strings.Contains(r.body, "proxyq_twilio_errors_total{code=") {
			t.Errorf("no proxyq_twilio_errors_total series after a demo with faults")
		}
	})

	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d after Ctrl-C, want 0", code)
	}
	if !strings.Contains(p.stdout.String(), "Stopping: letting messages in flight finish.") {
		t.Errorf("no shutdown message:\n%s", p.stdout)
	}
	client := http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("server still answers after shutdown")
	}
}

// metricValue finds one series in Prometheus text output, labels written exactly as the
// registry writes them (sorted).
// metricValue sums the samples of series (`name` or `name{k="v",…}`) over every label set that
// has the given labels, so a check need not name labels it does not care about (the api
// label, say). ok is false when no sample matches.
func metricValue(text, series string) (float64, bool) {
	name, want, _ := strings.Cut(series, "{")
	want = strings.TrimSuffix(want, "}")
	sum, ok := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		sample, value, found := strings.Cut(line, " ")
		if !found || strings.HasPrefix(line, "#") {
			continue
		}
		lname, labels, _ := strings.Cut(sample, "{")
		if lname != name {
			continue
		}
		labels = "," + strings.TrimSuffix(labels, "}") + ","
		matches := true
		for _, l := range strings.Split(want, ",") {
			if l != "" && !strings.Contains(labels, ","+l+",") {
				matches = false
				break
			}
		}
		if !matches {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, false
		}
		sum, ok = sum+v, true
	}
	return sum, ok
}

func TestDevUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"negative demo", nil, []string{"--demo", "-1"}, "--demo=-1"},
		{"huge demo", nil, []string{"--demo", "1000000"}, "--demo=1000000"},
		{"live with demo", nil, []string{"--live", "--demo", "5"}, "--demo cannot be combined with --live"},
		{"exit without demo", nil, []string{"--exit-after-demo"}, "--exit-after-demo needs --demo"},
		{"bad addr", nil, []string{"--addr", "8080"}, `--addr="8080"`},
		{"live without credentials", nil, []string{"--live", "--addr", "127.0.0.1:0"}, "TWILIO_ACCOUNT_SID"},
		{"bad log level", map[string]string{"PROXYQ_LOG_LEVEL": "loud"}, []string{"--addr", "127.0.0.1:0"}, "PROXYQ_LOG_LEVEL"},
		{"half dashboard credentials", map[string]string{"PROXYQ_DASHBOARD_USER": "me"}, []string{"--addr", "127.0.0.1:0"}, "PROXYQ_DASHBOARD_PASSWORD is required when PROXYQ_DASHBOARD_USER is set"},
		{"bad worker setting", map[string]string{"PROXYQ_CONCURRENCY": "many"}, []string{"--addr", "127.0.0.1:0"}, "PROXYQ_CONCURRENCY"},
		{"stray argument", nil, []string{"now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return tt.env[k] }}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if code := m.Run(ctx, append([]string{"dev"}, tt.args...)); code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
			if strings.Contains(stdout.String(), "Dashboard") {
				t.Errorf("started despite the error:\n%s", stdout.String())
			}
		})
	}
}

// TestDevTokenFromEnv checks that dev takes PROXYQ_DASHBOARD_* instead of generating a
// password, and never prints a secret it did not generate.
func TestDevTokenFromEnv(t *testing.T) {
	t.Parallel()
	p := startInProcess(t, map[string]string{"PROXYQ_DASHBOARD_TOKEN": "dev-token-123"}, "dev", "--addr", "127.0.0.1:0")
	m := p.waitOutput(t, regexp.MustCompile(`Dashboard\s+(http://\S+)/\n\s+bearer token from PROXYQ_DASHBOARD_TOKEN`), 15*time.Second)
	p.waitOutput(t, regexp.MustCompile(`Serving until Ctrl-C`), 15*time.Second)
	if strings.Contains(p.stdout.String(), "dev-token-123") {
		t.Errorf("the token was printed")
	}
	if r := request(t, "GET", m[1]+"/queues/api/queues", map[string]string{"Authorization": "Bearer dev-token-123"}); r.status != 200 {
		t.Errorf("GET /queues/api/queues with the token = %d", r.status)
	}
	if r := request(t, "GET", m[1]+"/queues/api/queues", basicAuth("admin", "")); r.status != 401 {
		t.Errorf("GET /queues/api/queues with basic auth = %d, want 401", r.status)
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
}

// TestDevLive points --live at a fake standing in for Twilio (PROXYQ_API_BASE_URL): dev must use
// the TWILIO_* credentials and that URL, serve no fake of its own, and send what is enqueued.
func TestDevLive(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	twilio := proxytest.NewServer(proxytest.Config{Credentials: map[string]string{testAccountSID: "live-secret"}})
	t.Cleanup(twilio.Close)
	env := map[string]string{"REDIS_URL": db.URL(), "TWILIO_ACCOUNT_SID": testAccountSID, "TWILIO_AUTH_TOKEN": "live-secret",
		"PROXYQ_API_BASE_URL": twilio.URL, "PROXYQ_DASHBOARD_USER": "u", "PROXYQ_DASHBOARD_PASSWORD": "p"}
	p := startInProcess(t, env, "dev", "--live", "--addr", "127.0.0.1:0")
	base := p.waitOutput(t, regexp.MustCompile(`Dashboard\s+(http://\S+)/\n`), 15*time.Second)[1]
	p.waitOutput(t, regexp.MustCompile(`Serving until Ctrl-C`), 15*time.Second)
	out := p.stdout.String()
	if !strings.Contains(out, "LIVE") || strings.Contains(out, "Fake API") {
		t.Errorf("banner does not say live, or offers a fake:\n%s", out)
	}
	if strings.Contains(out, "live-secret") {
		t.Errorf("the Twilio secret was printed")
	}
	if r := request(t, "GET", base+"/_proxytest/interactions", nil); r.status == 200 {
		t.Errorf("--live serves the fake's endpoints")
	}

	enq := tasks.NewEnqueuer(db.ConnOpt())
	defer enq.Close()
	res, err := enq.Enqueue(context.Background(), tasks.Payload{ServiceSID: sbService, SessionSID: sbSession, ParticipantSID: sbKnown, Body: "live hello"})
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := tasks.Lookup(context.Background(), insp, res.TaskID); err == nil && st.State == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message not sent through --live within 15s")
		}
		time.Sleep(25 * time.Millisecond)
	}
	if n := twilio.Fake.CreatesForBody("live hello"); n != 1 {
		t.Errorf("created %d times at the live API, want 1", n)
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
}
