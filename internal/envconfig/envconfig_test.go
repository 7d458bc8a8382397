package envconfig

import (
	"strings"
	"testing"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestErrorsNameTheVariable: whatever goes wrong, the message names the variable the operator
// sets, never a Go field name.
func TestErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		load func(getenv func(string) string) error
		env  []string
		want []string
		not  string
	}{
		{"malformed duration", func(g func(string) string) error { _, err := Worker(g); return err },
			[]string{"PROXYQ_HTTP_TIMEOUT", "soon"}, []string{`PROXYQ_HTTP_TIMEOUT="soon"`, "Go duration"}, "HTTPTimeout"},
		{"worker rule", func(g func(string) string) error { _, err := Worker(g); return err },
			[]string{"PROXYQ_CONCURRENCY", "100000"}, []string{"PROXYQ_CONCURRENCY"}, "Concurrency "},
		{"bad queues", func(g func(string) string) error { _, err := Worker(g); return err },
			[]string{"PROXYQ_QUEUES", "a=x"}, []string{`PROXYQ_QUEUES="a=x"`}, ""},
		{"client credentials", func(g func(string) string) error { _, err := Client(g); return err },
			nil, []string{"TWILIO_ACCOUNT_SID is required (or TWILIO_API_KEY with TWILIO_API_SECRET)"}, "AccountSID"},
		{"client SID shape", func(g func(string) string) error { _, err := Client(g); return err },
			[]string{"TWILIO_ACCOUNT_SID", "ACnope", "TWILIO_AUTH_TOKEN", "t"}, []string{"TWILIO_ACCOUNT_SID must match ^AC[0-9a-fA-F]{32}$"}, ""},
		{"retries", func(g func(string) string) error { _, err := EnqueueOptions(g); return err },
			[]string{"PROXYQ_MAX_RETRY", "-1"}, []string{`PROXYQ_MAX_RETRY="-1"`, "whole number"}, ""},
		{"replica wait", func(g func(string) string) error { _, err := EnqueuerOptions(g); return err },
			[]string{"PROXYQ_REDIS_WAIT_TIMEOUT", "5s"}, []string{"PROXYQ_REDIS_WAIT_TIMEOUT=5s: want 1ms to 2s"}, ""},
		{"log format", func(g func(string) string) error { _, err := Logger(g, "", nil); return err },
			[]string{"PROXYQ_LOG_FORMAT", "xml"}, []string{`PROXYQ_LOG_FORMAT="xml"`}, ""},
		{"redis url", func(g func(string) string) error { _, err := Redis(g); return err },
			[]string{"REDIS_URL", "redis://:secret@h:6379/x"}, []string{"REDIS_URL="}, "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.load(envOf(tt.env...))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.not != "" && strings.Contains(err.Error(), tt.not) {
				t.Errorf("error %q says %q", err, tt.not)
			}
		})
	}
}

func TestLogLevelFlagWins(t *testing.T) {
	_, err := Logger(envOf("PROXYQ_LOG_LEVEL", "info"), "loud", nil)
	if err == nil || !strings.Contains(err.Error(), `--log-level="loud"`) {
		t.Errorf("err = %v, want it to name --log-level", err)
	}
	log, err := Logger(envOf("PROXYQ_LOG_LEVEL", "nope"), "warn", nil)
	if err != nil || log.Core().Enabled(-1) {
		t.Errorf("flag warn over a bad variable: %v", err)
	}
}

func TestAPI(t *testing.T) {
	cfg, shutdown, err := API(envOf("PROXYQ_API_TOKENS", "tok-0123456789abcdef0123456789abcdef", "PROXYQ_QUEUES", "default=1,a=2"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if shutdown != 7 || strings.Join(cfg.Queues, ",") != "a,default" || len(cfg.Tokens) != 1 || len(cfg.EnqueueOptions) == 0 {
		t.Errorf("got %+v, shutdown %v", cfg, shutdown)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "no API bearer token: set PROXYQ_API_TOKENS"},
		{[]string{"PROXYQ_API_TOKENS", "tok-0123456789abcdef0123456789abcdef", "PROXYQ_SHUTDOWN_TIMEOUT", "later"}, `PROXYQ_SHUTDOWN_TIMEOUT="later"`},
		{[]string{"PROXYQ_API_TOKENS", "tok-0123456789abcdef0123456789abcdef", "PROXYQ_QUEUES", "=1"}, "PROXYQ_QUEUES: must be a non-empty name"},
	} {
		if _, _, err := API(envOf(tc.env...), 7); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		}
	}
}

func TestServiceLimits(t *testing.T) {
	if lim, err := ServiceLimits(envOf("PROXYQ_SERVICE_RATE", "OFF")); err != nil || !lim.Off {
		t.Errorf("off: %+v %v", lim, err)
	}
	_, err := ServiceLimits(envOf("PROXYQ_SERVICE_LIMITS", "KSx=1"))
	if err == nil || !strings.Contains(err.Error(), `PROXYQ_SERVICE_LIMITS="KSx=1"`) {
		t.Errorf("bad overrides: %v", err)
	}
}

// TestConversations: the Conversations client takes the Proxy client's credentials, edge,
// region and timeout, and its own base URL; a bad base URL is named by its variable.
func TestConversations(t *testing.T) {
	const sid = "AC0123456789abcdef0123456789abcdef"
	base := []string{"TWILIO_ACCOUNT_SID", sid, "TWILIO_AUTH_TOKEN", "tok", "PROXYQ_HTTP_TIMEOUT", "7s", "TWILIO_EDGE", "dublin", "TWILIO_REGION", "ie1"}
	proxy, err := Client(envOf(base...))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Conversations(envOf(base...), proxy)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AccountSID != sid || cfg.AuthToken != "tok" || cfg.HTTPTimeout.String() != "7s" || cfg.BaseURL != "" {
		t.Errorf("config %+v", cfg)
	}
	if got, want := cfg.Endpoint(), "https://conversations.dublin.ie1.twilio.com"; got != want {
		t.Errorf("endpoint %q, want %q", got, want)
	}
	env := append(base, "PROXYQ_CONVERSATIONS_BASE_URL", "http://127.0.0.1:9/conversations")
	if cfg, err = Conversations(envOf(env...), proxy); err != nil || cfg.Endpoint() != "http://127.0.0.1:9/conversations" {
		t.Errorf("base URL: %q %v", cfg.Endpoint(), err)
	}
	env = append(base, "PROXYQ_CONVERSATIONS_BASE_URL", "ftp://x")
	if _, err = Conversations(envOf(env...), proxy); err == nil || !strings.HasPrefix(err.Error(), "PROXYQ_CONVERSATIONS_BASE_URL ") {
		t.Errorf("bad base URL: %v", err)
	}
}

// TestConversationLimits: the per-conversation limit is read, checked, and named by its variables.
func TestConversationLimits(t *testing.T) {
	lim, err := ServiceLimits(envOf("PROXYQ_CONVERSATION_RATE", "10", "PROXYQ_CONVERSATION_WINDOW", "2s"))
	if err != nil || lim.ConversationRate != 10 || lim.ConversationWindow.String() != "2s" {
		t.Fatalf("%+v %v", lim, err)
	}
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{[]string{"PROXYQ_CONVERSATION_RATE", "fast"}, `PROXYQ_CONVERSATION_RATE="fast"`},
		{[]string{"PROXYQ_CONVERSATION_WINDOW", "10ms"}, "PROXYQ_CONVERSATION_WINDOW must be at least 100ms"},
		{[]string{"PROXYQ_CONVERSATION_RATE", "0.1", "PROXYQ_CONVERSATION_WINDOW", "1s"}, "PROXYQ_CONVERSATION_RATE × PROXYQ_CONVERSATION_WINDOW must allow"},
	} {
		if _, err := ServiceLimits(envOf(tt.env...)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.env, err, tt.want)
		}
	}
}
