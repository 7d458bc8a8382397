package sandbox

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestSandboxServiceLimitsAndAccounts(t *testing.T) {
	t.Parallel()
	const user, secret = "AC0000000000000000000000000000000a", "s3cret"
	f := testSettings()
	f.Limits.ServiceRate = 0.2 // one request per 5 s window
	f.Limits.Accounts = []string{user + "=" + secret}
	f.Limits.AccountConcurrency = []string{user + "=5"}
	fake, _, err := f.NewFake(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	create := func(u, s string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/Services/"+ks+"/Sessions/"+kc+"/Participants/"+kp+"/MessageInteractions",
			strings.NewReader(url.Values{"Body": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(u, s)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := create("AC0000000000000000000000000000000b", "other"); got != 401 {
		t.Errorf("unlisted account: %d, want 401", got)
	}
	if got := create(user, secret); got != 201 {
		t.Errorf("first create: %d, want 201", got)
	}
	if got := create(user, secret); got != 429 {
		t.Errorf("second create in the window: %d, want 429 (80621)", got)
	}
	for _, bad := range []Limits{
		{ServiceRate: -1}, {ServiceLimits: []string{"KSx=3"}}, {Accounts: []string{"nobody=" + secret}},
		{AccountConcurrency: []string{user + "=lots"}},
	} {
		g := testSettings()
		g.Limits = bad
		_, _, err := g.NewFake(zap.NewNop())
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}

// testSettings are the flags' defaults, as `proxyq sandbox` parses them with no arguments, on
// a free port.
func testSettings() Settings {
	s := Defaults()
	s.Addr = ":0"
	return s
}

// SIDs of one participant.
const (
	ks = "KS00000000000000000000000000000001"
	kc = "KC00000000000000000000000000000001"
	kp = "KP00000000000000000000000000000001"
)

func TestWriteBanner(t *testing.T) {
	t.Parallel()
	f := Defaults()
	var b strings.Builder
	f.WriteBanner(&b, "[::]:4010", "http://127.0.0.1:4010/twilio")
	for _, want := range []string{"listening on [::]:4010\n\n", "  PROXYQ_API_BASE_URL=http://127.0.0.1:4010/twilio\n",
		"credentials: any TWILIO_ACCOUNT_SID", "  created:     http://127.0.0.1:4010/twilio/_proxytest/interactions\n", "callbacks:   none (--callback-url)\n\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, b.String())
		}
	}
	f.Limits.Accounts = []string{"AC0000000000000000000000000000000a=s"}
	f.CallbackURL = "http://127.0.0.1:8080/cb?token=secret"
	b.Reset()
	f.WriteBanner(&b, "127.0.0.1:1", "http://127.0.0.1:1")
	if out := b.String(); !strings.Contains(out, "the 1 --account users given") || strings.Contains(out, "token=secret") ||
		!strings.Contains(out, "callbacks:   POST to http://127.0.0.1:8080/cb") {
		t.Errorf("banner with accounts and callbacks:\n%s", out)
	}
}
