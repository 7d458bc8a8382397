package main

// In-process tests of Main.Run: flag parsing, usage errors, validation and configuration
// errors. They need no binary and, except where noted, no Redis: invalid input must be
// rejected before Redis is contacted, which REDIS_URL pointing at a closed port proves.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// runMain runs Main in-process with env as its whole environment.
func runMain(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: stderr, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := m.Run(ctx, args)
	return result{stdout.String(), stderr.String(), code}
}

// offlineEnv is a complete configuration whose Redis is a closed port.
func offlineEnv(t *testing.T) map[string]string {
	return map[string]string{
		"REDIS_URL":          "redis://" + freeAddr(t) + "/0",
		"TWILIO_ACCOUNT_SID": testAccountSID,
		"TWILIO_AUTH_TOKEN":  "x",
	}
}

func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"worker", "enqueue", "status", "version"} {
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				r := runMain(t, nil, "", args...)
				if r.code != exitOK {
					t.Errorf("exit %d, want 0; stderr %s", r.code, r.stderr)
				}
				if !strings.HasPrefix(r.stdout, "Usage: proxyq "+name) {
					t.Errorf("stdout %q, want usage of %s", r.stdout, name)
				}
			})
		}
	}
	r := runMain(t, nil, "", "--help")
	if r.code != exitOK || !strings.Contains(r.stdout, "enqueue") || !strings.Contains(r.stdout, "Exit codes") {
		t.Errorf("proxyq --help: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := runMain(t, nil, "", "frobnicate"); r.code != exitUsage || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", r.code, r.stderr)
	}
}

const (
	ks = "KS0123456789abcdef0123456789abcdef"
	kc = "KC0123456789abcdef0123456789abcdef"
	kp = "KP0123456789abcdef0123456789abcdef"
)

func jsonLine(extra string) string {
	return `{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `"` + extra + "}"
}

func TestEnqueueUsageErrors(t *testing.T) {
	t.Parallel()
	msg := []string{"--service", ks, "--session", kc, "--participant", kp}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string // substrings of stderr, in any order
	}{
		{"no message", "", nil, []string{"no message"}},
		{"unknown flag", "", []string{"--bdoy", "x"}, []string{"flag provided but not defined: -bdoy"}},
		{"positional argument", "", append(slices.Clone(msg), "--body", "x", "extra"), []string{`unexpected argument "extra"`}},
		{"file with message flags", "", []string{"--file", "-", "--body", "x", "--participant", kp}, []string{"--file cannot be combined with --participant, --body"}},
		{"file without path", "", []string{"--file", ""}, []string{"--file needs a path"}},
		{"missing file", "", []string{"--file", "/nonexistent/messages.jsonl"}, []string{"--file: open /nonexistent/messages.jsonl"}},
		{"at and in", "", append(slices.Clone(msg), "--body", "x", "--at", "2030-01-02T15:04:05Z", "--in", "1m"), []string{"--at and --in cannot be combined"}},
		{"bad at", "", append(slices.Clone(msg), "--body", "x", "--at", "2030-01-02 15:04"), []string{`--at="2030-01-02 15:04": want an RFC 3339 time`}},
		{"bad in", "", append(slices.Clone(msg), "--body", "x", "--in", "soon"), []string{`invalid value "soon" for flag -in`}},
		{"negative in", "", append(slices.Clone(msg), "--body", "x", "--in", "-1m"), []string{"must not be negative"}},
		{"empty queue", "", append(slices.Clone(msg), "--body", "x", "--queue", " "), []string{"--queue must not be empty"}},
		{"missing body", "", msg, []string{"--body: is required when media_url is empty"}},
		{"bad sids", "", []string{"--service", "KS1", "--session", "x", "--body", "hi"}, []string{
			"--service: must match ^KS[0-9a-fA-F]{32}$", "--session: must match", "--participant: is required"}},
		{"bad media url", "", append(slices.Clone(msg), "--media-url", "https://ok.example/a.png", "--media-url", "ftp://x/y"), []string{
			"--media-url [1]: must be an absolute http or https URL"}},
		{"bad idempotency key", "", append(slices.Clone(msg), "--body", "x", "--idempotency-key", "a/b"), []string{"--idempotency-key: may contain only"}},
		{"bad PROXYQ_MAX_RETRY", "", append(slices.Clone(msg), "--body", "x"), nil}, // env set below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := offlineEnv(t)
			want := tt.want
			if tt.name == "bad PROXYQ_MAX_RETRY" {
				env = with(env, "PROXYQ_MAX_RETRY", "many")
				want = []string{`PROXYQ_MAX_RETRY="many"`}
			}
			r := runMain(t, env, tt.stdin, append([]string{"enqueue"}, tt.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
			}
			for _, w := range want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestEnqueueValidatesEveryLine(t *testing.T) {
	t.Parallel()
	long := jsonLine(`,"body":"` + strings.Repeat("x", tasks.MaxPayloadBytes) + `"`)
	input := strings.Join([]string{
		jsonLine(`,"body":"fine"`), // 1
		"",                         // 2: blank, skipped
		jsonLine(`,"body":"x","idempotency_key":"k1"`), // 3
		jsonLine(`,"Body":"x"`),                        // 4: exact keys only
		`{"service_sid":"KS1","body":""}`,              // 5: several problems
		long,                                           // 6
		`not json`,                                     // 7
		jsonLine(`,"body":"x","send_at":"tomorrow"`),    // 8
		jsonLine(`,"body":"x","queue":7`),               // 9
		jsonLine(`,"body":"x","idempotency_key":"k1"`),  // 10: repeats line 3, the same message: fine
		jsonLine(`,"body":"x"} {"body":"y"`),            // 11: two objects
		jsonLine(`,"body":"x","queue":"a","queue":"b"`), // 12
		"   \t", // 13: blank
		jsonLine(`,"body":"x","send_before":"2000-01-01T00:00:00Z"`), // 14: deadline before send time
		jsonLine(`,"body":"x","surprise":true`),                      // 15
	}, "\n")
	r := runMain(t, offlineEnv(t), input, "enqueue", "--file", "-")
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
	}
	for _, want := range []string{
		"line 4: Body: is not a known key",
		"line 5: service_sid: must match",
		"line 5: session_sid: is required",
		"line 5: participant_sid: is required",
		"line 5: body: is required",
		fmt.Sprintf("line 6: payload: line is longer than %d bytes", tasks.MaxPayloadBytes),
		"line 7: payload: must be a JSON object",
		"line 8: send_at: must be an RFC 3339 time",
		"line 9: queue: must be a JSON string",
		"line 11: payload: must be a single JSON object per line",
		"line 12: queue: must appear only once",
		"line 14: send_before: must be after the scheduled send time",
		"line 15: surprise: is not a known key",
		"10 invalid line(s); nothing was enqueued",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	for _, good := range []string{"line 1:", "line 2:", "line 3:", "line 10:", "line 13:"} {
		if strings.Contains(r.stderr, good) {
			t.Errorf("stderr reports %q, a good or blank line", good)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
}

func TestEnqueueEmptyInput(t *testing.T) {
	t.Parallel()
	r := runMain(t, offlineEnv(t), "\n\n", "enqueue", "--file", "-")
	if r.code != exitOK || r.stdout != "" {
		t.Errorf("exit %d stdout %q, want 0 and nothing printed", r.code, r.stdout)
	}
}

func TestEnqueueRedisDown(t *testing.T) {
	t.Parallel()
	r := runMain(t, offlineEnv(t), "", "enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "hi")
	if r.code != exitFailure || !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("exit %d stderr %q, want 1 saying Redis is unreachable", r.code, r.stderr)
	}
}

// Enqueue and status against a real Redis, in-process so the race detector sees them.
func TestEnqueueAndStatusInProcess(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{"REDIS_URL": db.URL(), "PROXYQ_RETENTION": "1h", "PROXYQ_MAX_RETRY": "3"}
	args := []string{"enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "hi",
		"--media-url", "https://media.example.com/a.png", "--idempotency-key", "order-1", "--in", "1h",
		"--queue", "low", "--send-within", "30m", "--json"}
	type out struct {
		ID        string `json:"id"`
		Queue     string `json:"queue"`
		Duplicate bool   `json:"duplicate"`
	}
	for i, wantDup := range []bool{false, true} {
		r := runMain(t, env, "", args...)
		if r.code != exitOK {
			t.Fatalf("enqueue #%d: exit %d, stderr %s", i+1, r.code, r.stderr)
		}
		var got out
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("enqueue #%d output %q: %v", i+1, r.stdout, err)
		}
		if want := (out{"order-1", "low", wantDup}); got != want {
			t.Errorf("enqueue #%d: %+v, want %+v", i+1, got, want)
		}
	}

	// Lines from stdin, with a queue per line and --queue as the default.
	input := jsonLine(`,"body":"a"`) + "\n\n" + jsonLine(`,"body":"b","queue":"critical","idempotency_key":"k-b"`) + "\r\n" +
		jsonLine(`,"body":"c","send_at":"2099-01-02T15:04:05Z"`)
	r := runMain(t, env, input, "enqueue", "--file", "-", "--queue", "low")
	if r.code != exitOK {
		t.Fatalf("enqueue --file -: exit %d, stderr %s", r.code, r.stderr)
	}
	ids := strings.Fields(r.stdout)
	if len(ids) != 3 || ids[1] != "k-b" {
		t.Fatalf("IDs %q, want three with the second k-b", ids)
	}

	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	for i, want := range []struct {
		queue string
		state asynq.TaskState
	}{{"low", asynq.TaskStatePending}, {"critical", asynq.TaskStatePending}, {"low", asynq.TaskStateScheduled}} {
		info, err := insp.GetTaskInfo(want.queue, ids[i])
		if err != nil || info.State != want.state || info.MaxRetry != 3 || info.Retention != time.Hour {
			t.Errorf("message %d: %+v, %v; want %s on %s with max retry 3 and retention 1h", i, info, err, want.state, want.queue)
		}
	}

	r = runMain(t, env, "", "status", "order-1", "--json")
	if r.code != exitOK {
		t.Fatalf("status --json: exit %d, stderr %s", r.code, r.stderr)
	}
	var st tasks.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "order-1" || st.Queue != "low" || st.State != "scheduled" || st.Message.ParticipantSID != kp ||
		st.Message.SendBefore == nil || st.NextProcessAt == nil ||
		// asynq keeps the send time in whole seconds; send_before is computed from the same "now"
		(st.Message.SendBefore.Sub(*st.NextProcessAt)-30*time.Minute).Abs() > 2*time.Second {
		t.Errorf("status: %+v", st)
	}
	if strings.Contains(r.stdout, "media.example.com") || strings.Contains(r.stdout, `"hi"`) {
		t.Errorf("status prints message content: %s", r.stdout)
	}

	r = runMain(t, env, "", "status", "order-1")
	for _, want := range []string{"Task ID:", "order-1", "State:", "scheduled", "Attempts:", "0 (requests to Twilio)", "Retried:", "0 of 3", "Next attempt:", kp} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := runMain(t, env, "", "status", "order-2"); r.code != exitNotFound || !strings.Contains(r.stderr, `no message with task ID "order-2"`) {
		t.Errorf("unknown ID: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestStatusUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing TASK_ID"},
		{[]string{"a", "b"}, "one TASK_ID at a time, got 2"},
		{[]string{"--json"}, "missing TASK_ID"},
		{[]string{"a", "--jsn"}, "flag provided but not defined"},
		{[]string{""}, "TASK_ID must not be empty"},
	}
	for _, tt := range tests {
		r := runMain(t, offlineEnv(t), "", append([]string{"status"}, tt.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("status %q: exit %d stderr %q, want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	if r := runMain(t, offlineEnv(t), "", "status", "x"); r.code != exitFailure || !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("status with Redis down: exit %d stderr %q, want 1", r.code, r.stderr)
	}
}

func TestWorkerConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string // applied over offlineEnv; "" deletes
		args []string
		code int
		want []string
	}{
		{"no credentials", map[string]string{"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""}, nil, exitUsage,
			[]string{"TWILIO_ACCOUNT_SID is required (or TWILIO_API_KEY with TWILIO_API_SECRET)"}},
		{"api key without secret", map[string]string{"TWILIO_API_KEY": "SK0123456789abcdef0123456789abcdef"}, nil, exitUsage,
			[]string{"TWILIO_API_SECRET is required when TWILIO_API_KEY is set"}},
		{"bad account sid", map[string]string{"TWILIO_ACCOUNT_SID": "AC123"}, nil, exitUsage, []string{"TWILIO_ACCOUNT_SID must match"}},
		{"bad base url", map[string]string{"PROXYQ_API_BASE_URL": "proxy.example"}, nil, exitUsage, []string{"PROXYQ_API_BASE_URL must be an absolute"}},
		{"malformed duration", map[string]string{"PROXYQ_HTTP_TIMEOUT": "15"}, nil, exitUsage, []string{`PROXYQ_HTTP_TIMEOUT="15"`}},
		{"concurrency out of range", map[string]string{"PROXYQ_CONCURRENCY": "20000"}, nil, exitUsage, []string{"PROXYQ_CONCURRENCY must be between 1 and 10000"}},
		{"more dequeue loops than handlers", map[string]string{"PROXYQ_DEQUEUE_LOOPS": "3"}, []string{"--concurrency", "2"}, exitUsage,
			[]string{"PROXYQ_DEQUEUE_LOOPS must be between 1 and 16 and at most --concurrency (2), got 3"}},
		{"malformed dequeue loops", map[string]string{"PROXYQ_DEQUEUE_LOOPS": "two"}, nil, exitUsage, []string{`PROXYQ_DEQUEUE_LOOPS="two"`}},
		{"shutdown shorter than a request", map[string]string{"PROXYQ_SHUTDOWN_TIMEOUT": "10s"}, nil, exitUsage,
			[]string{"PROXYQ_SHUTDOWN_TIMEOUT must be at least PROXYQ_HTTP_TIMEOUT+5s"}},
		{"flag named instead of variable", map[string]string{"PROXYQ_SHUTDOWN_TIMEOUT": "20s"}, []string{"--http-timeout", "30s"}, exitUsage,
			[]string{"PROXYQ_SHUTDOWN_TIMEOUT must be at least --http-timeout+5s"}},
		{"limiter wait beyond the Service window", map[string]string{"PROXYQ_LIMITER_MAX_WAIT": "6s"}, nil, exitUsage,
			[]string{"PROXYQ_LIMITER_MAX_WAIT must be at most the per-Service window PROXYQ_SERVICE_WINDOW (5s)", "got 6s"}},
		{"limiter wait beyond a shorter Service window", map[string]string{"PROXYQ_LIMITER_MAX_WAIT": "3s", "PROXYQ_SERVICE_WINDOW": "2s"}, nil, exitUsage,
			[]string{"PROXYQ_LIMITER_MAX_WAIT must be at most the per-Service window PROXYQ_SERVICE_WINDOW (2s)"}},
		{"bad queues variable", map[string]string{"PROXYQ_QUEUES": "a=x"}, nil, exitUsage, []string{`PROXYQ_QUEUES="a=x"`}},
		{"bad queues flag", nil, []string{"--queues", "a=1,a=2"}, exitUsage, []string{`--queues="a=1,a=2"`, "listed twice"}},
		{"bad concurrency flag", nil, []string{"--concurrency", "0"}, exitUsage, []string{"--concurrency=0"}},
		{"bad log level variable", map[string]string{"PROXYQ_LOG_LEVEL": "loud"}, nil, exitUsage, []string{`PROXYQ_LOG_LEVEL="loud"`}},
		{"bad log level flag", nil, []string{"--log-level", "loud"}, exitUsage, []string{`--log-level="loud"`}},
		{"bad log format", map[string]string{"PROXYQ_LOG_FORMAT": "xml"}, nil, exitUsage, []string{`PROXYQ_LOG_FORMAT="xml"`}},
		{"bad admin address", map[string]string{"PROXYQ_ADMIN_ADDR": "9090"}, nil, exitUsage, []string{`PROXYQ_ADMIN_ADDR="9090"`}},
		{"bad admin flag", nil, []string{"--admin-addr", "localhost"}, exitUsage, []string{`--admin-addr="localhost"`}},
		{"bad redis url", map[string]string{"REDIS_URL": "http://x"}, nil, exitUsage, []string{`REDIS_URL="http://x"`}},
		{"positional argument", nil, []string{"now"}, exitUsage, []string{`unexpected argument "now"`}},
		{"redis down", nil, []string{"--admin-addr", "off"}, exitFailure, []string{"redis at redis://127.0.0.1:", "is unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := offlineEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			r := runMain(t, env, "", append([]string{"worker"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", r.code, tt.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
		})
	}
}

// The worker command in-process, so the race detector sees its wiring: it sends a message,
// serves its admin endpoints, and returns 0 when its context ends. Not parallel: the worker
// redirects the standard library's logger while it runs.
func TestWorkerInProcess(t *testing.T) {
	db := redistest.NewDB(t)
	srv := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(srv.Close)
	env := map[string]string{
		"REDIS_URL": db.URL(), "TWILIO_ACCOUNT_SID": testAccountSID, "TWILIO_AUTH_TOKEN": "x",
		"PROXYQ_API_BASE_URL": srv.URL, "PROXYQ_ADMIN_ADDR": "127.0.0.1:0",
	}
	stderr := &lockedBuffer{}
	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- m.Run(ctx, []string{"worker", "--concurrency", "4", "--queues", "default", "--log-level", "debug"})
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", stderr.String())
		}
	})

	var admin string
	eventually(t, 15*time.Second, "admin server listening", func() bool {
		select {
		case code := <-done:
			t.Fatalf("worker returned %d early", code)
		default:
		}
		if m := adminAddrPattern.FindStringSubmatch(stderr.String()); m != nil {
			admin = m[1]
			return true
		}
		return false
	})
	eventually(t, 15*time.Second, "/readyz 200", func() bool {
		status, _ := httpGet(t, "http://"+admin+"/readyz")
		return status == 200
	})
	r := runMain(t, env, "", "enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "in-process")
	if r.code != exitOK {
		t.Fatalf("enqueue: exit %d, stderr %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	eventually(t, 15*time.Second, "the message to complete", func() bool {
		info, err := insp.GetTaskInfo("default", id)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	if n := srv.Fake.CreatesForBody("in-process"); n != 1 {
		t.Errorf("created %d times, want once", n)
	}
	// Two dequeue loops by default: two asynq servers of this process share --concurrency.
	servers, err := insp.Servers()
	if err != nil {
		t.Fatal(err)
	}
	var shares []int
	for _, s := range servers {
		if s.PID == os.Getpid() {
			shares = append(shares, s.Concurrency)
		}
	}
	if !slices.Equal(shares, []int{2, 2}) {
		t.Errorf("asynq servers of this process have concurrency %v, want [2 2] (--concurrency 4, two dequeue loops)", shares)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("worker returned %d after its context ended, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not return within 30s of cancellation")
	}
	if !strings.Contains(stderr.String(), `"concurrency":4,"dequeue_loops":2`) {
		t.Errorf("--concurrency 4 not in effect; log:\n%s", stderr.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
	}{
		{[]string{"id"}, []string{"id"}, false},
		{[]string{"id", "--json"}, []string{"id"}, true},
		{[]string{"--json", "id"}, []string{"id"}, true},
		{[]string{"a", "--json", "b"}, []string{"a", "b"}, true},
		{[]string{"--", "--json"}, []string{"--json"}, false},
		{[]string{"a", "--", "-b", "--json"}, []string{"a", "-b", "--json"}, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		asJSON := fs.Bool("json", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.wantPos) || *asJSON != tt.wantJSON {
			t.Errorf("%q: %q json=%v err=%v; want %q json=%v", tt.args, pos, *asJSON, err, tt.wantPos, tt.wantJSON)
		}
	}
}
