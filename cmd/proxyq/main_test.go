package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/testbin"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLog{}) // as main does; several tests point at a closed port on purpose
	code := m.Run()
	redistest.Stop()
	testbin.Remove()
	os.Exit(code)
}

// proxyqBinary is the real program, built once for the end-to-end tests.
func proxyqBinary(t *testing.T) string { return testbin.Proxyq(t) }

// Test identities. The fake accepts any well-formed Account SID with a non-empty token.
const testAccountSID = "AC0123456789abcdef0123456789abcdef"

func sid(prefix string, n int) string { return fmt.Sprintf("%s%032x", prefix, n) }

// harness is one test's world: its own Redis database and its own fake Proxy API.
type harness struct {
	t    *testing.T
	db   redistest.DB
	fake *proxytest.Server
	insp *asynq.Inspector
	url  string // REDIS_URL of the children: db's, or a cluster's (cluster_test.go)
}

func newHarness(t *testing.T, cfg proxytest.Config) *harness {
	t.Helper()
	db := redistest.NewDB(t)
	srv := proxytest.NewServer(cfg)
	t.Cleanup(srv.Close)
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	return &harness{t: t, db: db, fake: srv, insp: insp, url: db.URL()}
}

// env is the complete environment of a child process: nothing is inherited but PATH, so the
// developer's own REDIS_URL or TWILIO_* can never leak in.
func (h *harness) env(extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"REDIS_URL=" + h.url,
		"TWILIO_ACCOUNT_SID=" + testAccountSID,
		"TWILIO_AUTH_TOKEN=x",
		"PROXYQ_API_BASE_URL=" + h.fake.URL,
		"PROXYQ_ADMIN_ADDR=127.0.0.1:0",
		"PROXYQ_BACKOFF_BASE=50ms",
		"PROXYQ_BACKOFF_MAX=500ms",
		"PROXYQ_DELAYED_CHECK_INTERVAL=100ms",
		"PROXYQ_RECONCILE_SETTLE=1s",
		"PROXYQ_LOG_FORMAT=json",
	}
	return append(env, extra...)
}

// result is what one run of the CLI did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the proxyq binary to completion (bounded) with stdin.
func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	return runBinary(h.t, h.env(), stdin, args...)
}

func runBinary(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyqBinary(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("proxyq %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return result{stdout.String(), stderr.String(), code}
}

// lockedBuffer collects a child's output; the child writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// workerProc is a `proxyq worker` child process.
type workerProc struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	admin  string // host:port of the admin server
	exited chan struct{}
	code   int // valid once exited is closed
}

// stopAtCleanup stops a proxyq process when the test ends (SIGTERM, then SIGKILL after 15s)
// and prints its log if the test failed or E2E_LOGS is set. exited is closed once it exited.
func stopAtCleanup(t *testing.T, cmd *exec.Cmd, exited <-chan struct{}, name string, log *lockedBuffer) {
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
}

var adminAddrPattern = regexp.MustCompile(`"msg":"admin server listening","addr":"([^"]+)"`)

// startWorker starts a worker and waits until its admin server says it is ready. The worker
// is stopped (SIGTERM, then SIGKILL) when the test ends; its log is printed if the test failed.
func (h *harness) startWorker(extraEnv ...string) *workerProc {
	h.t.Helper()
	t := h.t
	cmd := exec.Command(proxyqBinary(t), "worker")
	cmd.Env = h.env(extraEnv...)
	w := &workerProc{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w.log, w.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		w.code = cmd.ProcessState.ExitCode()
		close(w.exited)
	}()
	stopAtCleanup(t, cmd, w.exited, "worker", w.log)

	eventually(t, 15*time.Second, "worker admin server listening", func() bool {
		if w.hasExited() {
			t.Fatalf("worker exited with %d before it was ready:\n%s", w.code, w.log.String())
		}
		if m := adminAddrPattern.FindStringSubmatch(w.log.String()); m != nil {
			w.admin = m[1]
			return true
		}
		return false
	})
	eventually(t, 15*time.Second, "worker /readyz answering 200", func() bool {
		status, _ := httpGet(t, "http://"+w.admin+"/readyz")
		return status == http.StatusOK
	})
	return w
}

func (w *workerProc) hasExited() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// httpGet returns the status and body of a GET, or 0 when the request failed.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// eventually polls cond every 25ms until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitForState waits until every task is in the wanted asynq state on queue.
func (h *harness) waitForState(queue string, state asynq.TaskState, timeout time.Duration, ids ...string) {
	h.t.Helper()
	pending := append([]string(nil), ids...)
	eventually(h.t, timeout, fmt.Sprintf("%d task(s) to be %s", len(ids), state), func() bool {
		left := pending[:0]
		for _, id := range pending {
			info, err := h.insp.GetTaskInfo(queue, id)
			if err != nil || info.State != state {
				left = append(left, id)
			}
		}
		pending = left
		return len(pending) == 0
	})
}

// status runs `proxyq status --json ID` and decodes it.
func (h *harness) status(id string) tasks.Status {
	h.t.Helper()
	r := h.run("", "status", id, "--json")
	if r.code != 0 {
		h.t.Fatalf("proxyq status %s: exit %d\nstderr: %s", id, r.code, r.stderr)
	}
	var st tasks.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		h.t.Fatalf("proxyq status --json output %q: %v", r.stdout, err)
	}
	return st
}

// message is one test message; line renders it as a JSON line for --file.
type message struct {
	service, session, participant, body, key string
}

func newMessage(n int, body string) message {
	return message{service: sid("KS", 1), session: sid("KC", 2), participant: sid("KP", 1000+n), body: body}
}

func (m message) line() string {
	obj := map[string]any{
		"service_sid": m.service, "session_sid": m.session, "participant_sid": m.participant, "body": m.body,
	}
	if m.key != "" {
		obj["idempotency_key"] = m.key
	}
	b, _ := json.Marshal(obj)
	return string(b)
}

func linesOf(msgs []message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.line())
		b.WriteByte('\n')
	}
	return b.String()
}

// freeAddr returns a loopback address that nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
