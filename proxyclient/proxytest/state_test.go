package proxytest_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

func TestCountersAndReset(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	first := mustCreate(t, srv, kp, "same")
	mustCreate(t, srv, kp2, "same")
	mustCreate(t, srv, kp, "other")
	resp, b := mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp), "", nil) // no auth
	wantError(t, resp, b, http.StatusUnauthorized, 20003)

	created := srv.Fake.Created()
	if len(created) != 3 || created[0].SID != first.SID || created[1].Participant != kp2 || created[2].Body != "other" {
		t.Errorf("Created() = %+v, want three records oldest first", created)
	}
	created[0].Body = "mutated" // a copy: the Fake's records are unaffected
	if got := srv.Fake.CreatesForBody("same"); got != 2 {
		t.Errorf(`CreatesForBody("same") = %d, want 2`, got)
	}
	if got := srv.Fake.Created()[0].Body; got != "same" {
		t.Errorf("Created() returned shared records: %q", got)
	}
	s := srv.Fake.Stats()
	if s.Requests != 4 || s.Creates != 3 || s.TooManyRequests != 0 || len(s.Faults) != len(proxytest.Faults()) {
		t.Errorf("Stats() = %+v", s)
	}
	if got := srv.Fake.MaxConcurrencySeen(acct); got < 1 {
		t.Errorf("MaxConcurrencySeen = %d, want at least 1", got)
	}

	_ = srv.Fake.Inject(proxytest.Fault503, 3)
	_ = srv.Fake.SetFaultRates(map[proxytest.Fault]float64{proxytest.Fault429: 1})
	srv.Fake.CloseSession(kc)
	srv.Fake.MarkParticipantUnknown(kp2)
	srv.Fake.SetLatency(time.Hour)
	srv.Fake.Reset()

	if s := srv.Fake.Stats(); s.Requests != 0 || s.Creates != 0 || len(srv.Fake.Created()) != 0 ||
		srv.Fake.CreatesForBody("same") != 0 || srv.Fake.MaxConcurrencySeen(acct) != 0 || srv.Fake.Pending() != 0 {
		t.Errorf("after Reset: Stats %+v, Created %d, Pending %d", s, len(srv.Fake.Created()), srv.Fake.Pending())
	}
	// Faults, marks and latency are gone too.
	mustCreate(t, srv, kp2, "after reset")
}

func TestToolEndpoints(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	r := mustCreate(t, srv, kp, "one")
	resp, b := create(t, srv, kp2, url.Values{"Body": {"two"}, "MediaUrl": {"https://a.example/x.png"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	_ = srv.Fake.Inject(proxytest.Fault429, 1)
	create(t, srv, kp, url.Values{"Body": {"three"}})
	requestsBefore := srv.Fake.Stats().Requests

	// No credentials needed: it is a test tool.
	resp, b = mustDo(t, srv, http.MethodGet, srv.URL+"/_proxytest/interactions", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("interactions: %d %s", resp.StatusCode, b)
	}
	type record struct {
		SID         string    `json:"sid"`
		Account     string    `json:"account"`
		AccountSID  string    `json:"account_sid"`
		Service     string    `json:"service_sid"`
		Session     string    `json:"session_sid"`
		Participant string    `json:"participant_sid"`
		Body        string    `json:"body"`
		MediaURLs   []string  `json:"media_urls"`
		Outbound    string    `json:"outbound_resource_sid"`
		CreatedAt   time.Time `json:"created_at"`
	}
	recs := decode[[]record](t, b)
	if len(recs) != 2 || recs[0].SID != r.SID || recs[0].Body != "one" || recs[0].Account != acct ||
		recs[0].Outbound != r.OutboundResourceSID || recs[1].Participant != kp2 || len(recs[1].MediaURLs) != 1 ||
		recs[1].CreatedAt.IsZero() {
		t.Errorf("interactions = %s", b)
	}

	resp, b = mustDo(t, srv, http.MethodGet, srv.URL+"/_proxytest/stats", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stats: %d %s", resp.StatusCode, b)
	}
	type statsJSON struct {
		Requests        int            `json:"requests"`
		Creates         int            `json:"creates"`
		TooManyRequests int            `json:"too_many_requests"`
		Faults          map[string]int `json:"faults"`
	}
	stats := decode[statsJSON](t, b)
	if stats.Requests != 3 || stats.Creates != 2 || stats.TooManyRequests != 1 || stats.Faults["429"] != 1 ||
		len(stats.Faults) != 9 {
		t.Errorf("stats = %s", b)
	}

	for _, tc := range []struct {
		method, path string
		status, code int
	}{
		{http.MethodPost, "/_proxytest/interactions", 405, 20004},
		{http.MethodGet, "/_proxytest/nothing", 404, 20404},
	} {
		var form url.Values
		if tc.method == http.MethodPost {
			form = url.Values{}
		}
		resp, b := mustDo(t, srv, tc.method, srv.URL+tc.path, "", form)
		wantError(t, resp, b, tc.status, tc.code)
	}
	if got := srv.Fake.Stats().Requests; got != requestsBefore {
		t.Errorf("tool requests counted as API requests: %d, want %d", got, requestsBefore)
	}
}

func TestLogger(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	srv := newServer(t, proxytest.Config{Logger: zap.New(core)})
	const body = "the secret message"
	_ = srv.Fake.Inject(proxytest.Fault500AfterCreate, 1)
	create(t, srv, kp, url.Values{"Body": {body}, "MediaUrl": {"https://media.example/private.jpg"}})
	mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp), "", nil)

	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d log lines, want one per request (2)", len(entries))
	}
	first := entries[0].ContextMap()
	if first["method"] != "POST" || first["status"] != int64(500) || first["fault"] != "500-after-create" ||
		first["path"] != messagesPath(ks, kc, kp) || first["account"] != acct {
		t.Errorf("log fields %v", first)
	}
	if entries[1].ContextMap()["status"] != int64(401) {
		t.Errorf("second line %v, want status 401", entries[1].ContextMap())
	}
	for _, e := range entries {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, secretText := range []string{body, "media.example", secret} {
			if strings.Contains(line, secretText) {
				t.Errorf("log line contains %q: %s", secretText, line)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   proxytest.Config
		field string // "" means valid
	}{
		{"zero value", proxytest.Config{}, ""},
		{"all set", proxytest.Config{CreateStatus: 200, Credentials: map[string]string{acct: "x"}, HangLimit: time.Second,
			Latency: time.Millisecond, ListOrder: proxytest.ListShuffled, MaxConcurrentPerAccount: 3, Seed: 1}, ""},
		{"create status 202", proxytest.Config{CreateStatus: 202}, "CreateStatus"},
		{"empty secret", proxytest.Config{Credentials: map[string]string{acct: ""}}, "Credentials"},
		{"empty user", proxytest.Config{Credentials: map[string]string{"": "x"}}, "Credentials"},
		{"negative hang limit", proxytest.Config{HangLimit: -1}, "HangLimit"},
		{"negative latency", proxytest.Config{Latency: -1}, "Latency"},
		{"unknown order", proxytest.Config{ListOrder: "random"}, "ListOrder"},
		{"negative concurrency", proxytest.Config{MaxConcurrentPerAccount: -1}, "MaxConcurrentPerAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var ce *proxytest.ConfigError
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
				t.Errorf("Validate() = %v, want a ConfigError on %s", err, tc.field)
			case tc.field != "" && !strings.Contains(err.Error(), "Config."+tc.field):
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
	d := proxytest.Config{}.WithDefaults()
	if d.CreateStatus != 201 || d.HangLimit != 2*time.Minute || d.ListOrder != proxytest.ListOldestFirst || d.Now == nil {
		t.Errorf("WithDefaults() = %+v", d)
	}
	func() {
		defer func() {
			var ce *proxytest.ConfigError
			if err, _ := recover().(error); !errors.As(err, &ce) {
				t.Errorf("New with an invalid config: recovered %v, want a *ConfigError panic", err)
			}
		}()
		proxytest.New(proxytest.Config{CreateStatus: 500})
	}()
}
