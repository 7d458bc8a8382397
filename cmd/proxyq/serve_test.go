package main

// In-process tests of `proxyq serve` and `proxyq healthcheck`: Main.Run in a goroutine with
// its own environment map (nothing inherited), a real Redis (internal/redistest), the fake
// Proxy API (proxytest) and a real worker (worker.New) on loopback.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/httpapi"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Bearer tokens of the serve tests: one from PROXYQ_API_TOKENS, one from the tokens file.
const (
	serveToken     = "serve-test-token-0123456789abcdef"
	serveFileToken = "serve-file-token-fedcba9876543210"
)

// serveProc is one `proxyq serve` running in-process.
type serveProc struct {
	base           string // http://127.0.0.1:port
	stdout, stderr *lockedBuffer
	cancel         context.CancelFunc
	done           chan int // receives the exit code once
	code           int
	exited         bool
}

// startServe runs `proxyq serve --addr 127.0.0.1:<free port> args…` with exactly env and
// waits until /healthz answers. The command is cancelled (as by SIGTERM) when the test ends.
func startServe(t *testing.T, env map[string]string, args ...string) *serveProc {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &serveProc{base: "http://" + addr, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	m := &Main{Stdin: strings.NewReader(""), Stdout: p.stdout, Stderr: p.stderr, Getenv: func(k string) string { return env[k] }}
	argv := append([]string{"serve", "--addr", addr}, args...)
	go func() { p.done <- m.Run(ctx, argv) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			log := p.stderr.String()
			if len(log) > 8000 {
				log = "…" + log[len(log)-8000:]
			}
			t.Logf("serve stdout:\n%s\nserve log:\n%s", p.stdout.String(), log)
		}
	})
	eventually(t, 15*time.Second, "proxyq serve answering /healthz", func() bool {
		select {
		case code := <-p.done:
			p.exited, p.code = true, code
			t.Fatalf("proxyq serve exited with %d before it was ready:\n%s", code, p.stderr.String())
		default:
		}
		status, _ := httpGet(t, p.base+"/healthz")
		return status == http.StatusOK
	})
	return p
}

// stop cancels the command and returns its exit code, waiting at most 30s.
func (p *serveProc) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	if !p.exited {
		select {
		case p.code = <-p.done:
			p.exited = true
		case <-time.After(30 * time.Second):
			t.Fatal("proxyq serve did not stop within 30s of cancellation")
		}
	}
	return p.code
}

// apiAnswer is one HTTP exchange with the server.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v, failing the test when it is not JSON.
func (a apiAnswer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", a.status, a.body, err)
	}
}

// call makes one request with the given bearer token ("" for none) and optional JSON body.
func (p *serveProc) call(t *testing.T, method, path, token, body string, header ...string) apiAnswer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return apiAnswer{resp.StatusCode, resp.Header, b}
}

// serveMessage is a POST body for participant n.
func serveMessage(n int, body string, extra ...string) string {
	obj := map[string]any{"service_sid": sid("KS", 1), "session_sid": sid("KC", 2), "participant_sid": sid("KP", 0x5e0+n), "body": body}
	for i := 0; i+1 < len(extra); i += 2 {
		obj[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(obj)
	return string(b)
}

// asynqInspector returns an Inspector on db, closed when the test ends.
func asynqInspector(t *testing.T, db redistest.DB) *asynq.Inspector {
	t.Helper()
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	return insp
}

// startTestWorker runs a real worker pool on db against the fake, stopped when the test ends.
func startTestWorker(t *testing.T, db redistest.DB, fake *proxytest.Server) {
	t.Helper()
	api, err := proxyclient.New(proxyclient.Config{AccountSID: testAccountSID, AuthToken: "x", BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		Concurrency: 4, Queues: map[string]int{"default": 3, "low": 1},
		DelayedCheckInterval: 100 * time.Millisecond, PollInterval: 10 * time.Millisecond,
	}, worker.Deps{Redis: db.ConnOpt(), API: api})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
}

// The API end to end: authentication and probes, a message POSTed over HTTP and sent by a
// real worker, idempotent replays, cancellation before and after sending, the mounted
// dashboard and metrics, and a graceful stop with exit 0. Not parallel: --metrics redirects
// the standard library's logger while the command runs.
func TestServeEndToEnd(t *testing.T) {
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokensFile, []byte("# rotated in\n"+serveFileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"REDIS_URL":              db.URL(),
		"PROXYQ_API_TOKENS":      serveToken,
		"PROXYQ_API_TOKENS_FILE": tokensFile,
		"PROXYQ_QUEUES":          "default=3,low=1",
		"PROXYQ_MAX_RETRY":       "7",
		"PROXYQ_RETENTION":       "2h",
		"PROXYQ_LOG_FORMAT":      "json",
		"PROXYQ_LOG_LEVEL":       "debug",
	}
	p := startServe(t, env, "--dashboard", "--metrics", "--drain-delay", "2s")

	t.Run("auth and probes", func(t *testing.T) {
		for _, tt := range []struct {
			method, path, token string
			want                int
		}{
			{"GET", "/healthz", "", http.StatusOK},
			{"GET", "/readyz", "", http.StatusOK},
			{"GET", "/v1/openapi.json", "", http.StatusUnauthorized},
			{"GET", "/v1/openapi.json", "not-a-configured-token-000", http.StatusUnauthorized},
			{"GET", "/v1/openapi.json", serveToken, http.StatusOK},
			{"GET", "/v1/openapi.json", serveFileToken, http.StatusOK},
			{"GET", "/dashboard/", "", http.StatusUnauthorized},
			{"GET", "/dashboard/queues/api/queues", "", http.StatusUnauthorized},
			{"GET", "/dashboard/", serveToken, http.StatusOK},
			{"GET", "/dashboard/queues/api/queues", serveFileToken, http.StatusOK},
			{"GET", "/metrics", "", http.StatusUnauthorized},
			{"GET", "/metrics", serveToken, http.StatusOK},
		} {
			if a := p.call(t, tt.method, tt.path, tt.token, ""); a.status != tt.want {
				t.Errorf("%s %s (token %t): %d, want %d: %.200s", tt.method, tt.path, tt.token != "", a.status, tt.want, a.body)
			}
		}
		if a := p.call(t, "GET", "/dashboard/", serveToken, ""); !strings.Contains(a.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET /dashboard/: Content-Type %q, want the console's HTML", a.header.Get("Content-Type"))
		}
		if a := p.call(t, "GET", "/metrics", serveToken, ""); !strings.Contains(string(a.body), "go_goroutines") {
			t.Errorf("GET /metrics lacks the runtime metrics:\n%.500s", a.body)
		}
		var h healthcheckRun
		h.run(t, "--url", p.base+"/readyz")
		if h.code != exitOK {
			t.Errorf("healthcheck of serve's /readyz: exit %d, stderr %q", h.code, h.stderr)
		}
	})

	const sentBody = "sent over the HTTP API"
	const key = "serve-e2e-sent"
	t.Run("POST, worker sends, replay, DELETE refused", func(t *testing.T) {
		a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(1, sentBody), "Idempotency-Key", key)
		var acc httpapi.Accepted
		a.decode(t, &acc)
		if a.status != http.StatusAccepted || acc.ID != key || acc.State != "pending" || acc.Queue != "default" {
			t.Fatalf("POST: %d %+v, want 202 pending on default with id %q", a.status, acc, key)
		}
		// The producer settings from the environment reached the task.
		info, err := asynqInspector(t, db).GetTaskInfo("default", key)
		if err != nil {
			t.Fatal(err)
		}
		if info.MaxRetry != 7 || info.Retention != 2*time.Hour {
			t.Errorf("task max_retry %d, retention %v; want PROXYQ_MAX_RETRY 7 and PROXYQ_RETENTION 2h", info.MaxRetry, info.Retention)
		}

		startTestWorker(t, db, fake)
		var st tasks.Status
		eventually(t, 20*time.Second, "the message to be sent", func() bool {
			a := p.call(t, "GET", "/v1/message-interactions/"+key, serveToken, "")
			if a.status != http.StatusOK {
				t.Fatalf("GET: %d %s", a.status, a.body)
			}
			st = tasks.Status{}
			a.decode(t, &st)
			return st.State == "completed"
		})
		created := fake.Fake.Created()
		if len(created) != 1 || created[0].Body != sentBody {
			t.Fatalf("the fake created %+v, want exactly the one message", created)
		}
		if st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent || st.Outcome.InteractionSID != created[0].SID {
			t.Errorf("outcome %+v, want sent with the fake's %s", st.Outcome, created[0].SID)
		}
		if st.MaxRetry != 7 || st.Message.ParticipantSID != sid("KP", 0x5e0+1) {
			t.Errorf("status %+v, want max_retry 7 and the participant", st)
		}

		a = p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(1, sentBody), "Idempotency-Key", key)
		var rep struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		a.decode(t, &rep)
		if a.status != http.StatusOK || rep.ID != key || rep.State != "completed" || a.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("repeat POST: %d %s, want 200 with the same id, completed, Idempotent-Replayed", a.status, a.body)
		}

		a = p.call(t, "DELETE", "/v1/message-interactions/"+key, serveToken, "")
		var prob httpapi.Problem
		a.decode(t, &prob)
		if a.status != http.StatusConflict || prob.Type != httpapi.ProblemNotCancelable {
			t.Errorf("DELETE after sent: %d %s, want 409 %s", a.status, a.body, httpapi.ProblemNotCancelable)
		}
		if n := fake.Fake.CreatesForBody(sentBody); n != 1 {
			t.Errorf("created %d times, want once", n)
		}
	})

	const laterBody = "scheduled, then cancelled"
	t.Run("scheduled message cancelled", func(t *testing.T) {
		const laterKey = "serve-e2e-later"
		sendAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(2, laterBody, "send_at", sendAt), "Idempotency-Key", laterKey)
		var acc httpapi.Accepted
		a.decode(t, &acc)
		if a.status != http.StatusAccepted || acc.State != "scheduled" {
			t.Fatalf("POST with send_at +1h: %d %s, want 202 scheduled", a.status, a.body)
		}
		a = p.call(t, "DELETE", "/v1/message-interactions/"+laterKey, serveToken, "")
		var st tasks.Status
		a.decode(t, &st)
		if a.status != http.StatusOK || st.ID != laterKey || st.State != "scheduled" {
			t.Fatalf("DELETE scheduled: %d %s, want 200 with the scheduled status", a.status, a.body)
		}
		if a := p.call(t, "GET", "/v1/message-interactions/"+laterKey, serveToken, ""); a.status != http.StatusNotFound {
			t.Errorf("GET after DELETE: %d %s, want 404", a.status, a.body)
		}
	})

	t.Run("send guard refuses what asynq alone would cancel", func(t *testing.T) {
		// A scheduled task whose ledger says a request is in flight (a run that started
		// before the task was rescheduled): asynq's state allows the cancel, the ledger not.
		const guardedKey = "serve-e2e-guarded"
		sendAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(3, "guarded", "send_at", sendAt), "Idempotency-Key", guardedKey)
		if a.status != http.StatusAccepted {
			t.Fatalf("POST: %d %s, want 202", a.status, a.body)
		}
		ledger := worker.NewLedger(db.Client(t), time.Hour)
		own, err := ledger.Acquire(t.Context(), tasks.DefaultQueue, guardedKey, time.Minute)
		if err != nil || own.Fence == 0 {
			t.Fatalf("Acquire = %+v, %v", own, err)
		}
		if _, _, err := ledger.BeginSend(t.Context(), tasks.DefaultQueue, guardedKey, own.Fence, time.Minute); err != nil {
			t.Fatal(err)
		}
		a = p.call(t, "DELETE", "/v1/message-interactions/"+guardedKey, serveToken, "")
		var prob httpapi.Problem
		a.decode(t, &prob)
		if a.status != http.StatusConflict || prob.Type != httpapi.ProblemNotCancelable {
			t.Fatalf("DELETE with a send in flight: %d %s, want 409 %s", a.status, a.body, httpapi.ProblemNotCancelable)
		}
		if a := p.call(t, "GET", "/v1/message-interactions/"+guardedKey, serveToken, ""); a.status != http.StatusOK {
			t.Errorf("GET after the refused DELETE: %d %s, want 200", a.status, a.body)
		}
		if !strings.Contains(p.stderr.String(), `"msg":"cancel refused by send guard"`) {
			t.Errorf("the log does not show the send guard refusing the cancel")
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		p.cancel()
		// During the drain delay /readyz fails while the listener still answers.
		eventually(t, 10*time.Second, "/readyz to answer 503 while draining", func() bool {
			status, body := httpGet(t, p.base+"/readyz")
			if status == 0 {
				t.Fatalf("the listener closed before /readyz answered 503: %s", body)
			}
			return status == http.StatusServiceUnavailable
		})
		if code := p.stop(t); code != exitOK {
			t.Fatalf("serve exited with %d after cancellation, want 0", code)
		}
		if status, _ := httpGet(t, p.base+"/healthz"); status != 0 {
			t.Errorf("/healthz answered %d after exit, want the listener closed", status)
		}
	})

	if n := fake.Fake.CreatesForBody(laterBody); n != 0 {
		t.Errorf("the cancelled message was created %d times, want never", n)
	}
	log := p.stderr.String()
	for _, secret := range []string{serveToken, serveFileToken, sentBody, laterBody, "authentication is OFF"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	for _, want := range []string{`"msg":"api listening"`, `"msg":"api stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
}

// Configuration errors exit 2 before anything listens, naming the variable or flag; a port
// in use exits 1. Redis is a closed port: none of this needs it.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	base := map[string]string{"REDIS_URL": "redis://" + freeAddr(t) + "/0", "PROXYQ_API_TOKENS": serveToken}
	without := func(env map[string]string, key string) map[string]string {
		out := with(env)
		delete(out, key)
		return out
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // substrings of stderr
	}{
		{"no token", without(base, "PROXYQ_API_TOKENS"), nil, []string{"PROXYQ_API_TOKENS", "PROXYQ_API_TOKENS_FILE"}},
		{"blank tokens", with(base, "PROXYQ_API_TOKENS", " , # none"), nil, []string{"PROXYQ_API_TOKENS", "PROXYQ_API_TOKENS_FILE"}},
		{"short token", with(base, "PROXYQ_API_TOKENS", "short"), nil, []string{"PROXYQ_API_TOKENS", "at least 16"}},
		{"missing tokens file", with(base, "PROXYQ_API_TOKENS_FILE", "/nonexistent/proxyq-tokens"), nil, []string{"/nonexistent/proxyq-tokens"}},
		{"queues without default", with(base, "PROXYQ_QUEUES", "critical=6,low=1"), nil, []string{"PROXYQ_QUEUES", `"default"`}},
		{"malformed queues", with(base, "PROXYQ_QUEUES", "default=x"), nil, []string{"PROXYQ_QUEUES"}},
		{"malformed retention", with(base, "PROXYQ_RETENTION", "soon"), nil, []string{"PROXYQ_RETENTION"}},
		{"malformed shutdown timeout", with(base, "PROXYQ_SHUTDOWN_TIMEOUT", "-1s"), nil, []string{"PROXYQ_SHUTDOWN_TIMEOUT"}},
		{"drain longer than shutdown", with(base, "PROXYQ_SHUTDOWN_TIMEOUT", "5s"), []string{"--drain-delay", "5s"}, []string{"--drain-delay", "PROXYQ_SHUTDOWN_TIMEOUT"}},
		{"bad addr", base, []string{"--addr", "8081"}, []string{"--addr"}},
		{"bad redis url", with(base, "REDIS_URL", "http://nope"), nil, []string{"REDIS_URL"}},
		{"argument", base, []string{"now"}, []string{`unexpected argument "now"`}},
		// Status callbacks: the route needs the Auth Token, also when the workers use an API key.
		{"callbacks without auth token", with(with(with(base, "PROXYQ_PUBLIC_URL", "https://proxyq.example.com"), "TWILIO_ACCOUNT_SID", testAccountSID), "TWILIO_API_KEY", "SK0123456789abcdef0123456789abcdef"), nil,
			[]string{"PROXYQ_PUBLIC_URL", "TWILIO_AUTH_TOKEN", "X-Twilio-Signature", "API_KEY"}},
		{"callbacks with a relative public url", with(with(with(base, "PROXYQ_PUBLIC_URL", "/proxyq"), "TWILIO_ACCOUNT_SID", testAccountSID), "TWILIO_AUTH_TOKEN", "tok"), nil,
			[]string{"PROXYQ_PUBLIC_URL", "absolute"}},
		{"bad webhook url", with(base, "PROXYQ_STATUS_WEBHOOK_URL", "ftp://x"), nil, []string{"PROXYQ_STATUS_WEBHOOK_URL"}},
		{"malformed poll after", with(base, "PROXYQ_DELIVERY_POLL_AFTER", "soon"), nil, []string{"PROXYQ_DELIVERY_POLL_AFTER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runMain(t, tt.env, "", append([]string{"serve", "--addr", "127.0.0.1:0"}, tt.args...)...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitUsage, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, serveToken) || strings.Contains(r.stderr, `"msg":"api listening"`) {
				t.Errorf("stderr shows the token or a started server:\n%s", r.stderr)
			}
		})
	}

	t.Run("address in use", func(t *testing.T) {
		t.Parallel()
		busy := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(busy.Close)
		addr := strings.TrimPrefix(busy.URL, "http://")
		r := runMain(t, base, "", "serve", "--addr", addr)
		if r.code != exitFailure || !strings.Contains(r.stderr, "listen on "+addr) {
			t.Fatalf("exit %d, want %d naming the address; stderr:\n%s", r.code, exitFailure, r.stderr)
		}
	})
}

// healthcheckRun is one `proxyq healthcheck` run in-process.
type healthcheckRun struct {
	code           int
	stdout, stderr string
}

func (h *healthcheckRun) run(t *testing.T, args ...string) {
	t.Helper()
	r := runMain(t, map[string]string{}, "", append([]string{"healthcheck"}, args...)...)
	h.code, h.stdout, h.stderr = r.code, r.stdout, r.stderr
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	answer := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/readyz" {
				http.Error(w, "want GET /readyz", http.StatusBadRequest)
				return
			}
			if status == http.StatusFound {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/readyz"
	}
	// hang answers only after the client gave up.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)

	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string // substring, when the probe passes
		stderrHas []string
	}{
		{"200", []string{"--url", answer(200, "ready\n")}, exitOK, "200 OK: ready", nil},
		{"204", []string{"--url", answer(204, "")}, exitOK, "204 No Content", nil},
		{"503", []string{"--url", answer(503, "not ready:\n redis: connection refused\n")}, exitFailure, "",
			[]string{"unhealthy", "503 Service Unavailable", "not ready: redis: connection refused"}},
		{"redirect is not followed", []string{"--url", answer(302, "")}, exitFailure, "", []string{"302 Found"}},
		{"unreachable", []string{"--url", "http://" + freeAddr(t) + "/readyz"}, exitFailure, "", []string{"unhealthy", "connection refused"}},
		{"timeout", []string{"--url", hang.URL + "/readyz", "--timeout", "200ms"}, exitFailure, "", []string{"unhealthy"}},
		{"password not shown", []string{"--url", "http://user:s3cret@" + freeAddr(t) + "/readyz"}, exitFailure, "", []string{"unhealthy", "user:"}},
		{"relative url", []string{"--url", "/readyz"}, exitUsage, "", []string{"--url"}},
		{"ftp url", []string{"--url", "ftp://127.0.0.1/readyz"}, exitUsage, "", []string{"--url"}},
		{"zero timeout", []string{"--timeout", "0s"}, exitUsage, "", []string{"--timeout"}},
		{"argument", []string{"http://127.0.0.1:9090/readyz"}, exitUsage, "", []string{"--url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h healthcheckRun
			h.run(t, tt.args...)
			if h.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", h.code, tt.code, h.stdout, h.stderr)
			}
			if tt.stdout != "" && !strings.Contains(h.stdout, tt.stdout) {
				t.Errorf("stdout %q lacks %q", h.stdout, tt.stdout)
			}
			for _, w := range tt.stderrHas {
				if !strings.Contains(h.stderr, w) {
					t.Errorf("stderr %q lacks %q", h.stderr, w)
				}
			}
			if strings.Contains(h.stderr, "s3cret") {
				t.Errorf("stderr shows the URL's password: %q", h.stderr)
			}
		})
	}
}
