package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

const (
	sbService = "KS0123456789abcdef0123456789abcdef"
	sbSession = "KC0123456789abcdef0123456789abcdef"
	sbClosed  = "KC0123456789abcdef0123456789abc000"
	sbKnown   = "KP0123456789abcdef0123456789abc001"
	sbUnknown = "KP0123456789abcdef0123456789abc404"
)

var sandboxBaseLine = regexp.MustCompile(`PROXYQ_API_BASE_URL=(http://127\.0\.0\.1:\d+\S*)`)

func sandboxClient(t *testing.T, base string) *proxyclient.Client {
	t.Helper()
	c, err := proxyclient.New(proxyclient.Config{AccountSID: "AC0123456789abcdef0123456789abcdef", AuthToken: "x", BaseURL: base, HTTPTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSandboxServes starts the sandbox with knobs set by flags and checks that the fake answers
// as they say, lists what it created, logs each request, and stops cleanly.
func TestSandboxServes(t *testing.T) {
	t.Parallel()
	p := startInProcess(t, map[string]string{}, "sandbox", "--addr", "127.0.0.1:0", "--prefix", "/twilio",
		"--unknown-participant", sbUnknown, "--closed-session", sbClosed, "--latency", "5ms", "--seed", "7")
	base := p.waitOutput(t, sandboxBaseLine, 10*time.Second)[1]
	if !strings.HasSuffix(base, "/twilio") {
		t.Fatalf("base URL %q does not end with the prefix", base)
	}
	c := sandboxClient(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	mi, err := c.CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: sbService, SessionSID: sbSession, ParticipantSID: sbKnown, Body: "sandbox hello"})
	if err != nil || !strings.HasPrefix(mi.SID, "KI") {
		t.Fatalf("create for a known participant: %v, %v", mi, err)
	}
	tests := []struct {
		name             string
		session, kp      string
		wantStatus, code int
	}{
		{"unknown participant", sbSession, sbUnknown, 404, 20404},
		{"closed session", sbClosed, sbKnown, 400, 80607},
	}
	for _, tt := range tests {
		_, err := c.CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: sbService, SessionSID: tt.session, ParticipantSID: tt.kp, Body: "x"})
		var apiErr *proxyclient.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.wantStatus || apiErr.Code != tt.code {
			t.Errorf("%s: err %v, want HTTP %d code %d", tt.name, err, tt.wantStatus, tt.code)
		}
	}

	r := request(t, "GET", base+"/_proxytest/interactions", nil)
	var created []proxytest.Interaction
	if r.status != 200 || json.Unmarshal([]byte(r.body), &created) != nil {
		t.Fatalf("GET /_proxytest/interactions = %d %s", r.status, r.body)
	}
	if len(created) != 1 || created[0].SID != mi.SID || created[0].Body != "sandbox hello" {
		t.Errorf("created = %+v, want the one interaction %s", created, mi.SID)
	}
	root := strings.TrimSuffix(base, "/twilio")
	if r := request(t, "GET", root+"/healthz", nil); r.status != 200 {
		t.Errorf("GET /healthz = %d", r.status)
	}
	if r := request(t, "POST", base+"/_proxytest/interactions", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /_proxytest/interactions = %d, want 405 (read-only)", r.status)
	}

	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	logs := p.stderr.String()
	if n := strings.Count(logs, `"msg":"proxytest request"`); n < 4 {
		t.Errorf("%d request log lines, want one per request (at least 4):\n%s", n, logs)
	}
	if strings.Contains(logs, "sandbox hello") {
		t.Errorf("a message body was logged")
	}
}

// TestSandboxFaultRates: with --rate-503 1 every create fails before anything is created.
func TestSandboxFaultRates(t *testing.T) {
	t.Parallel()
	p := startInProcess(t, map[string]string{}, "sandbox", "--addr", "127.0.0.1:0", "--rate-503", "1")
	base := p.waitOutput(t, sandboxBaseLine, 10*time.Second)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := sandboxClient(t, base).CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: sbService, SessionSID: sbSession, ParticipantSID: sbKnown, Body: "x"})
	var apiErr *proxyclient.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || proxyclient.Classify(err) != proxyclient.ClassRetryable {
		t.Fatalf("create = %v, want a retryable 503", err)
	}
	var stats proxytest.Stats
	r := request(t, "GET", base+"/_proxytest/stats", nil)
	if err := json.Unmarshal([]byte(r.body), &stats); err != nil || stats.Creates != 0 || stats.Faults[proxytest.Fault503] != 1 {
		t.Errorf("stats = %+v (%v), want 0 creates and one 503", stats, err)
	}
}

func TestSandboxFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // "" means valid
	}{
		{"defaults", nil, ""},
		{"every knob", []string{"--latency", "10ms", "--max-concurrent", "3", "--rate-429", "0.1", "--rate-503", "0.1",
			"--rate-500-after-create", "0.1", "--rate-reset-after-create", "0.1", "--rate-hang-after-create", "0.1",
			"--fault-rate", "502-after-create=0.05", "--fault-rate", "429-retry-after=0.05",
			"--unknown-participant", sbUnknown, "--unknown-participant", sbKnown, "--closed-session", sbClosed,
			"--seed", "42", "--prefix", "twilio/", "--list-order", "shuffled"}, ""},
		{"rate above 1", []string{"--rate-429", "1.5"}, "--rate-429=1.5"},
		{"negative rate", []string{"--rate-503", "-0.1"}, "--rate-503=-0.1"},
		{"rates sum above 1", []string{"--rate-429", "0.6", "--rate-503", "0.6"}, "at most 1"},
		{"unknown fault name", []string{"--fault-rate", "teapot=0.1"}, `--fault-rate="teapot=0.1"`},
		{"fault rate without value", []string{"--fault-rate", "503"}, `--fault-rate="503"`},
		{"bad participant", []string{"--unknown-participant", "+15551234567"}, "--unknown-participant"},
		{"bad session", []string{"--closed-session", "KP0123456789abcdef0123456789abcdef"}, "--closed-session"},
		{"negative latency", []string{"--latency", "-1s"}, "--latency"},
		{"negative concurrency", []string{"--max-concurrent", "-1"}, "--max-concurrent"},
		{"bad list order", []string{"--list-order", "random"}, "--list-order"},
		{"bad prefix", []string{"--prefix", "/a b"}, "--prefix"},
		{"dot prefix", []string{"--prefix", "/../x"}, "--prefix"},
		{"bad addr", []string{"--addr", "4010"}, "--addr"},
		{"not a number", []string{"--rate-429", "lots"}, "invalid value"},
		{"every callback knob", []string{"--callback-url", "http://127.0.0.1:9/cb?x=1", "--callback-signing-url", "https://hooks.example.com/cb?x=1",
			"--callback-auth-token", "tok", "--callback-auth-token", "AC0123456789abcdef0123456789abcdef=tok2",
			"--callback-delay", "10ms", "--undelivered", "0.2", "--failed", "0.1", "--error-codes", "30003, 30008",
			"--callback-duplicates", "0.5", "--callback-out-of-order", "0.5", "--callback-before-answer",
			"--callback-attempts", "5", "--callback-timeout", "2s", "--advance-status=false"}, ""},
		{"relative callback URL", []string{"--callback-url", "localhost:8080/cb"}, "--callback-url must be an absolute http or https URL"},
		{"signing URL alone", []string{"--callback-signing-url", "https://x/cb"}, "--callback-signing-url needs --callback-url"},
		{"undelivered above 1", []string{"--undelivered", "2"}, "--undelivered must be a fraction"},
		{"undelivered and failed above 1", []string{"--undelivered", "0.7", "--failed", "0.7"}, "want at most 1 together"},
		{"negative duplicates", []string{"--callback-duplicates", "-1"}, "--callback-duplicates"},
		{"out of order above 1", []string{"--callback-out-of-order", "1.1"}, "--callback-out-of-order"},
		{"bad error code", []string{"--error-codes", "30003,unreachable"}, "--error-codes"},
		{"no error code", []string{"--error-codes", " , "}, "--error-codes is empty"},
		{"zero delay", []string{"--callback-delay", "0s"}, "--callback-delay"},
		{"zero attempts", []string{"--callback-attempts", "0"}, "--callback-attempts"},
		{"token for a bad account", []string{"--callback-auth-token", "SK0123456789abcdef0123456789abcdef=secret-value"}, "--callback-auth-token: want TOKEN or AC…=TOKEN"},
		{"two default tokens", []string{"--callback-auth-token", "a", "--callback-auth-token", "b"}, "--callback-auth-token: give one token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.want == "" {
				cancel() // valid flags: the sandbox starts, sees the cancelled context and stops
			} else {
				defer cancel()
			}
			code := m.Run(ctx, append([]string{"sandbox", "--addr", "127.0.0.1:0"}, tt.args...))
			if tt.want == "" {
				if code != exitOK || !strings.Contains(stdout.String(), "PROXYQ_API_BASE_URL=") {
					t.Fatalf("exit %d, stdout %q, stderr %q; want a start and a clean stop", code, stdout.String(), stderr.String())
				}
				return
			}
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "secret-value") {
				t.Errorf("a token was echoed: %q", stderr.String())
			}
		})
	}
}

// TestSandboxCallbacks runs the sandbox with callback flags against a receiver that checks the
// signature itself, then reads the delivery error through the Messaging route.
func TestSandboxCallbacks(t *testing.T) {
	t.Parallel()
	const token = "sandbox-callback-token"
	type got struct {
		form  url.Values
		valid bool
	}
	var (
		mu       sync.Mutex
		received []got
		rcvURL   string
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		// Independent check: URL, then each name and value, names sorted; HMAC-SHA1, base64.
		s := rcvURL
		for _, k := range slices.Sorted(maps.Keys(r.PostForm)) {
			s += k + r.PostForm.Get(k)
		}
		h := hmac.New(sha1.New, []byte(token))
		h.Write([]byte(s))
		ok := hmac.Equal([]byte(base64.StdEncoding.EncodeToString(h.Sum(nil))), []byte(r.Header.Get("X-Twilio-Signature")))
		mu.Lock()
		received = append(received, got{r.PostForm, ok})
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	rcvURL = rcv.URL + "/v1/twilio/proxy/callbacks"

	p := startInProcess(t, map[string]string{"PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN": token}, "sandbox", "--addr", "127.0.0.1:0",
		"--callback-url", rcvURL, "--callback-delay", "20ms", "--undelivered", "1", "--error-codes", "30006",
		"--callback-duplicates", "1", "--callback-before-answer")
	base := p.waitOutput(t, sandboxBaseLine, 10*time.Second)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sandboxClient(t, base)
	mi, err := c.CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: sbService, SessionSID: sbSession, ParticipantSID: sbKnown, Body: "callback body"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	early := len(received)
	mu.Unlock()
	if early == 0 {
		t.Errorf("no callback before the create was answered (--callback-before-answer)")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	var statuses []string
	for _, g := range received {
		if !g.valid || g.form.Get("interactionSid") != mi.SID {
			t.Errorf("callback %v: signature valid %v", g.form.Get("outboundResourceStatus"), g.valid)
		}
		statuses = append(statuses, g.form.Get("outboundResourceStatus"))
	}
	mu.Unlock()
	if want := []string{"queued", "queued", "sent", "sent", "undelivered", "undelivered"}; !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	m, err := c.FetchMessage(ctx, mi.AccountSID, mi.OutboundResourceSID)
	if err != nil || m.Status != "undelivered" || m.ErrorCode != 30006 || m.ErrorMessage == "" {
		t.Errorf("FetchMessage = %+v, %v", m, err)
	}
	r := request(t, "GET", base+"/_proxytest/callbacks", nil)
	var tool struct {
		Stats proxytest.CallbackStats `json:"stats"`
	}
	if err := json.Unmarshal([]byte(r.body), &tool); err != nil || tool.Stats.Delivered != 6 || tool.Stats.Duplicates != 3 {
		t.Errorf("/_proxytest/callbacks stats %+v (%v)", tool.Stats, err)
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	out := p.stdout.String() + p.stderr.String()
	if strings.Contains(out, token) || strings.Contains(out, "callback body") {
		t.Errorf("the token or a body was printed or logged")
	}
	if !strings.Contains(p.stdout.String(), "callbacks:   POST to "+rcvURL) {
		t.Errorf("stdout does not announce the callbacks:\n%s", p.stdout.String())
	}
}

var sandboxConvLine = regexp.MustCompile(`PROXYQ_CONVERSATIONS_BASE_URL=(http://127\.0\.0\.1:\d+/conversations)`)

// TestSandboxServesConversations: the sandbox serves the fake Conversations API beside the Proxy
// one, at the base URL its banner prints (whatever --prefix), with the same fault flags.
func TestSandboxServesConversations(t *testing.T) {
	t.Parallel()
	p := startInProcess(t, map[string]string{}, "sandbox", "--addr", "127.0.0.1:0", "--prefix", "/twilio", "--rate-503", "1")
	base := p.waitOutput(t, sandboxConvLine, 10*time.Second)[1]
	c, err := conversations.New(conversations.Config{AccountSID: "AC0123456789abcdef0123456789abcdef", AuthToken: "x", BaseURL: base, HTTPTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conv := conversations.Conversation{ConversationSID: "CH0123456789abcdef0123456789abcdef"}
	_, err = c.CreateMessage(ctx, conversations.CreateParams{Conversation: conv, Author: "a", Body: "sandbox hello"})
	var apiErr *proxyclient.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("create with --rate-503 1: %v, want a 503", err)
	}
	page, err := c.ListMessages(ctx, conv, conversations.ListOptions{})
	if err != nil || len(page.Messages) != 0 {
		t.Fatalf("list: %+v, %v; want no message (a 503 creates nothing)", page, err)
	}
}
