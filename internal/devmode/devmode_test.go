package devmode

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/dashboard"
)

func TestFailureMarksPermanentFailures(t *testing.T) {
	got := map[string]int{}
	for i := 0; i < 60; i++ {
		got[Failure(i)]++
	}
	// Every 12th from the 6th (5 in 60) and every 20th from the 10th but for 29, which is
	// already an unknown participant (2 in 60).
	if got["unknown participant"] != 5 || got["closed session"] != 2 || got[""] != 53 {
		t.Errorf("failures in 60 messages: %v", got)
	}
}

func TestDefaults(t *testing.T) {
	live, fake := Defaults(true), Defaults(false)
	if live["PROXYQ_LOG_LEVEL"] != "error" || fake["PROXYQ_LOG_LEVEL"] != "error" {
		t.Errorf("log level default missing: live %v fake %v", live, fake)
	}
	if _, ok := live["PROXYQ_BACKOFF_BASE"]; ok {
		t.Error("live mode gets the fake's eager backoff")
	}
	if fake["PROXYQ_RECONCILE_SETTLE"] != "2s" {
		t.Errorf("fake defaults: %v", fake)
	}
}

// The README demo's size; from about 1,000 messages the line is wider than 80 columns.
func TestProgressLineFitsOneTerminalLine(t *testing.T) {
	for _, tc := range []struct {
		c    counts
		n    int
		want string
	}{
		{counts{}, 50, "[................] 0/50"},
		{counts{completed: 20, archived: 5, retry: 3}, 50, "[########........] 25/50  sent 20  retrying 3  archived 5"},
		{counts{completed: 50}, 50, "[################] 50/50"},
	} {
		line := progressLine(tc.c, tc.n, 90*time.Second)
		if !strings.Contains(line, tc.want) || len(line) >= 80 {
			t.Errorf("progressLine(%+v, %d) = %q (%d columns), want it to contain %q and fit in 80", tc.c, tc.n, line, len(line), tc.want)
		}
	}
}

func TestTerminalKeepsLogLinesOutOfTheProgressLine(t *testing.T) {
	var nilTerm *Terminal
	nilTerm.Progress("x") // no-ops on nil
	nilTerm.Clear()

	var out bytes.Buffer
	term := &Terminal{Out: &out}
	log := term.LogWriter(&out)
	term.Progress("[##..] 1/2")
	_, _ = log.Write([]byte("a log line\n"))
	term.Clear()
	want := "\r\033[K[##..] 1/2" + "\r\033[K" + "a log line\n" + "[##..] 1/2" + "\n"
	if out.String() != want {
		t.Errorf("screen = %q, want %q", out.String(), want)
	}
}

func TestBannerSaysWhatIsRunning(t *testing.T) {
	for _, tc := range []struct {
		b    Banner
		want []string
		not  []string
	}{
		{Banner{BaseURL: "http://127.0.0.1:8080", Redis: "r", Fake: true, User: "admin", Password: "pw", Generated: true, UnusedTwilio: true},
			[]string{"a fake Twilio Proxy API", "user admin, password pw  (generated", "Fake API    http://127.0.0.1:8080/twilio", "credentials are set but unused"},
			[]string{"LIVE"}},
		{Banner{BaseURL: "http://h:1", Redis: "r"},
			[]string{"the LIVE Twilio Proxy API", "bearer token from PROXYQ_DASHBOARD_TOKEN", "LIVE: messages you enqueue are sent"},
			[]string{"Fake API"}},
	} {
		var out bytes.Buffer
		tc.b.Print(&out)
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("banner lacks %q:\n%s", w, out.String())
			}
		}
		for _, w := range tc.not {
			if strings.Contains(out.String(), w) {
				t.Errorf("banner has %q:\n%s", w, out.String())
			}
		}
	}
}

func TestGetenvPutsDefaultsUnderTheEnvironment(t *testing.T) {
	env := map[string]string{"PROXYQ_CONCURRENCY": "3", "PROXYQ_LOG_LEVEL": "  ", "REDIS_URL": "redis://x"}
	get := Getenv(func(k string) string { return env[k] }, false)
	for k, want := range map[string]string{"PROXYQ_CONCURRENCY": "3", "PROXYQ_LOG_LEVEL": "error",
		"PROXYQ_HTTP_TIMEOUT": "5s", "REDIS_URL": "redis://x", "PROXYQ_QUEUES": ""} {
		if got := get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if got := Getenv(func(string) string { return "" }, true)("PROXYQ_HTTP_TIMEOUT"); got != "" {
		t.Errorf("live: PROXYQ_HTTP_TIMEOUT = %q; want the worker's own default", got)
	}
}

func TestDashboardLoginOnlyWhenNoneIsSet(t *testing.T) {
	var cfg dashboard.Config
	if !DashboardLogin(&cfg) || cfg.User != DefaultDashboardUser || len(cfg.Password) != 16 {
		t.Errorf("generated: %q, a password of %d characters", cfg.User, len(cfg.Password))
	}
	for _, set := range []dashboard.Config{{Token: "t"}, {User: "u", Password: "p"}, {Password: "p"}} {
		cfg := set
		if DashboardLogin(&cfg) || cfg != set {
			t.Errorf("%+v was replaced by %+v", set, cfg)
		}
	}
}
