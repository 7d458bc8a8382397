package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnqueueRefusesAnUnknownAccount(t *testing.T) {
	t.Parallel()
	const known, unknown = "AC0000000000000000000000000000000a", "AC0000000000000000000000000000000b"
	file := filepath.Join(t.TempDir(), "accounts.yaml")
	if err := os.WriteFile(file, []byte("accounts:\n  - account_sid: "+known+"\n    auth_token: sekrit-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := with(offlineEnv(t), "PROXYQ_ACCOUNTS_FILE", file)
	// Flag mode: the unknown account is refused before Redis is touched (Redis is down here).
	r := runMain(t, env, "", "enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "hi", "--account", unknown)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--account") || !strings.Contains(r.stderr, "no credentials in PROXYQ_ACCOUNTS_FILE") {
		t.Fatalf("exit %d, stderr %q; want exit %d naming --account", r.code, r.stderr, exitUsage)
	}
	// File mode: the line is named; a known account and the default one pass validation.
	input := strings.Join([]string{
		jsonLine(`,"body":"a","account_sid":"` + known + `"`),
		jsonLine(`,"body":"b","account_sid":"` + unknown + `"`),
		jsonLine(`,"body":"c","account_sid":"` + testAccountSID + `"`),
		jsonLine(`,"body":"d","account_sid":"ACnope"`),
	}, "\n")
	r = runMain(t, env, input, "enqueue", "--file", "-")
	if r.code != exitUsage || !strings.Contains(r.stderr, "line 2: account_sid: has no credentials") ||
		!strings.Contains(r.stderr, "line 4: account_sid: must match") || strings.Contains(r.stderr, "line 1:") || strings.Contains(r.stderr, "line 3:") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "sekrit") {
		t.Fatal("a secret reached stderr")
	}
	// A broken accounts file is a configuration error naming the variable, not the secret.
	if err := os.WriteFile(file, []byte("accounts:\n  - account_sid: nope\n    auth_token: sekrit-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runMain(t, env, "", "enqueue", "--service", ks, "--session", kc, "--participant", kp, "--body", "hi")
	if r.code != exitUsage || !strings.Contains(r.stderr, "PROXYQ_ACCOUNTS_FILE") || strings.Contains(r.stderr, "sekrit") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestServiceLimitsFromEnv(t *testing.T) {
	t.Parallel()
	m := func(kv ...string) *Main {
		env := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return &Main{Getenv: func(k string) string { return env[k] }}
	}
	lim, err := m().serviceLimitsFromEnv()
	if err != nil || lim.Off || lim.Rate != 0 {
		t.Fatalf("defaults: %+v, %v", lim, err)
	}
	if lim, err := m("PROXYQ_SERVICE_RATE", "off").serviceLimitsFromEnv(); err != nil || !lim.Off {
		t.Fatalf("off: %+v, %v", lim, err)
	}
	lim, err = m("PROXYQ_SERVICE_RATE", "25", "PROXYQ_SERVICE_LIMITS", "KS0000000000000000000000000000000a=60").serviceLimitsFromEnv()
	if err != nil || lim.Rate != 25 || lim.Services["KS0000000000000000000000000000000a"] != 60 {
		t.Fatalf("set: %+v, %v", lim, err)
	}
	for env, want := range map[[2]string]string{
		{"PROXYQ_SERVICE_RATE", "fast"}:       "PROXYQ_SERVICE_RATE",
		{"PROXYQ_SERVICE_LIMITS", "KSx=3"}:    "PROXYQ_SERVICE_LIMITS",
		{"PROXYQ_SERVICE_WINDOW", "10ms"}:     "PROXYQ_SERVICE_WINDOW",
		{"PROXYQ_SERVICE_BURST", "1000000"}:   "PROXYQ_SERVICE_BURST",
		{"PROXYQ_SERVICE_MAX_WAIT", "banana"}: "PROXYQ_SERVICE_MAX_WAIT",
	} {
		if _, err := m(env[0], env[1]).serviceLimitsFromEnv(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: err = %v, want one naming %s", env[0], env[1], err, want)
		}
	}
}
