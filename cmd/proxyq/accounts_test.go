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
