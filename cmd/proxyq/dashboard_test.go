package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

var dashboardURLLine = regexp.MustCompile(`proxyq dashboard: (http://127\.0\.0\.1:\d+)(/\S*)`)

// TestDashboardCommand serves a read-only dashboard under /ops over a test Redis holding one
// message, and checks health, auth, redaction, read-only mode and the redirect from "/".
func TestDashboardCommand(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	enq := tasks.NewEnqueuer(db.ConnOpt())
	defer enq.Close()
	if _, err := enq.Enqueue(context.Background(), tasks.Payload{ServiceSID: sbService, SessionSID: sbSession,
		ParticipantSID: sbKnown, Body: "Jane's door code Zq74821"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": db.URL(), "PROXYQ_DASHBOARD_USER": "ops", "PROXYQ_DASHBOARD_PASSWORD": "pass word 1"}
	p := startInProcess(t, env, "dashboard", "--addr", "127.0.0.1:0", "--read-only", "--root-path", "/ops")
	m := p.waitOutput(t, dashboardURLLine, 10*time.Second)
	host, root := m[1], m[2]
	if root != "/ops/" {
		t.Fatalf("printed root %q, want /ops/", root)
	}
	creds := basicAuth("ops", "pass word 1")
	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
		wantBody           string
	}{
		{"healthz without credentials", "GET", "/healthz", nil, 200, "ok"},
		{"readyz without credentials", "GET", "/readyz", nil, 200, "ready"},
		{"UI without credentials", "GET", "/ops/", nil, 401, ""},
		{"API without credentials", "GET", "/ops/queues/api/queues", nil, 401, ""},
		{"API with wrong password", "GET", "/ops/queues/api/queues", basicAuth("ops", "pass word 2"), 401, ""},
		{"API with credentials", "GET", "/ops/queues/api/queues", creds, 200, `"queue":"default"`},
		{"UI with credentials", "GET", "/ops/", creds, 200, "<html"},
		{"payload redacted", "GET", "/ops/queues/api/queues/default/pending_tasks", creds, 200, "[redacted: 24 chars]"},
		{"read-only", "POST", "/ops/queues/api/queues/default:pause", creds, 405, "read-only"},
		{"root redirects", "GET", "/", nil, 302, ""},
		{"root path without slash redirects", "GET", "/ops", nil, 302, ""},
	}
	for _, tt := range tests {
		r := request(t, tt.method, host+tt.path, tt.header)
		if r.status != tt.want || !strings.Contains(r.body, tt.wantBody) {
			t.Errorf("%s: %s %s = %d %q, want %d containing %q", tt.name, tt.method, tt.path, r.status, tail(r.body, 200), tt.want, tt.wantBody)
		}
		if strings.Contains(r.body, "Zq74821") {
			t.Errorf("%s: message body visible", tt.name)
		}
		if tt.want == 302 && r.header.Get("Location") != "/ops/" {
			t.Errorf("%s: Location %q, want /ops/", tt.name, r.header.Get("Location"))
		}
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	if strings.Contains(p.stderr.String(), "pass word 1") {
		t.Errorf("the password was logged")
	}
}

func TestDashboardCommandNoAuthFlag(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	p := startInProcess(t, map[string]string{"REDIS_URL": db.URL()}, "dashboard", "--addr", "127.0.0.1:0", "--insecure-no-auth", "--show-message-content")
	m := p.waitOutput(t, dashboardURLLine, 10*time.Second)
	if r := request(t, "GET", m[1]+"/queues/api/queues", nil); r.status != 200 {
		t.Errorf("GET /queues/api/queues without credentials under --insecure-no-auth = %d, want 200", r.status)
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(p.stderr.String(), "authentication is OFF") {
		t.Errorf("no warning about running without authentication:\n%s", p.stderr.String())
	}
}

func TestDashboardCommandConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no credentials", nil, nil, "set PROXYQ_DASHBOARD_USER and PROXYQ_DASHBOARD_PASSWORD, or PROXYQ_DASHBOARD_TOKEN, or pass --insecure-no-auth"},
		{"user without password", map[string]string{"PROXYQ_DASHBOARD_USER": "ops"}, nil, "PROXYQ_DASHBOARD_PASSWORD is required when PROXYQ_DASHBOARD_USER is set"},
		{"password without user", map[string]string{"PROXYQ_DASHBOARD_PASSWORD": "x"}, nil, "PROXYQ_DASHBOARD_USER is required"},
		{"colon in user", map[string]string{"PROXYQ_DASHBOARD_USER": "a:b", "PROXYQ_DASHBOARD_PASSWORD": "x"}, nil, "PROXYQ_DASHBOARD_USER must not contain"},
		{"bad root path", map[string]string{"PROXYQ_DASHBOARD_TOKEN": "t"}, []string{"--root-path", "ops"}, "--root-path must start with"},
		{"bad REDIS_URL", map[string]string{"PROXYQ_DASHBOARD_TOKEN": "t", "REDIS_URL": "mysql://x"}, nil, "REDIS_URL"},
		{"bad addr", map[string]string{"PROXYQ_DASHBOARD_TOKEN": "t"}, []string{"--addr", "8080"}, "--addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return tt.env[k] }}
			args := append([]string{"dashboard", "--addr", "127.0.0.1:0"}, tt.args...)
			if code := m.Run(context.Background(), args); code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.want)
			}
		})
	}
}
