package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

func TestSandboxServiceLimitsAndAccounts(t *testing.T) {
	t.Parallel()
	const user, secret = "AC0000000000000000000000000000000a", "s3cret"
	f := defaultSandboxFlags()
	f.limits.serviceRate = 0.2 // one request per 5 s window
	f.limits.accounts = repeated{user + "=" + secret}
	f.limits.accountConcurrency = repeated{user + "=5"}
	fake, _, err := newSandboxFake(f, zap.NewNop())
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
	for _, bad := range []sandboxLimitFlags{
		{serviceRate: -1}, {serviceLimits: repeated{"KSx=3"}}, {accounts: repeated{"nobody=" + secret}},
		{accountConcurrency: repeated{user + "=lots"}},
	} {
		g := defaultSandboxFlags()
		g.limits = bad
		_, _, err := newSandboxFake(g, zap.NewNop())
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}

// defaultSandboxFlags are the flags' defaults, as `proxyq sandbox` parses them with no arguments.
func defaultSandboxFlags() sandboxFlags {
	return sandboxFlags{addr: ":0", listOrder: "oldest-first", callbackDelay: proxytest.DefaultCallbackDelay,
		callbackAttempts: proxytest.DefaultCallbackAttempts, callbackTimeout: proxytest.DefaultCallbackTimeout,
		errorCodes: "30003,30005,30006,30007", advanceStatus: true}
}
