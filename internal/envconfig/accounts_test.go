package envconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/accounts"
)

func TestServiceLimitsEveryVariable(t *testing.T) {
	t.Parallel()
	lim, err := ServiceLimits(envOf())
	if err != nil || lim.Off || lim.Rate != 0 {
		t.Fatalf("defaults: %+v, %v", lim, err)
	}
	if lim, err := ServiceLimits(envOf("PROXYQ_SERVICE_RATE", "off")); err != nil || !lim.Off {
		t.Fatalf("off: %+v, %v", lim, err)
	}
	lim, err = ServiceLimits(envOf("PROXYQ_SERVICE_RATE", "25", "PROXYQ_SERVICE_LIMITS", "KS0000000000000000000000000000000a=60"))
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
		if _, err := ServiceLimits(envOf(env[0], env[1])); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: err = %v, want one naming %s", env[0], env[1], err, want)
		}
	}
}

// With PROXYQ_ACCOUNTS_FILE, callbacks of each account are checked with that account's Auth
// Token; a file with API keys only cannot check any, and serve refuses to start.
func TestCallbackTokensFromAccountsFile(t *testing.T) {
	t.Parallel()
	const sub = "AC00000000000000000000000000000051"
	const key = "SK00000000000000000000000000000051"
	dir := t.TempDir()
	withToken := filepath.Join(dir, "with-token.yaml")
	keysOnly := filepath.Join(dir, "keys-only.yaml")
	if err := os.WriteFile(withToken, []byte("accounts:\n  - account_sid: "+sub+"\n    api_key: "+key+"\n    api_secret: s3cret\n    auth_token: sub-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysOnly, []byte("accounts:\n  - account_sid: "+sub+"\n    api_key: "+key+"\n    api_secret: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(path string) (string, bool, error) {
		reg, err := accounts.New(accounts.Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Callbacks(envOf("PROXYQ_PUBLIC_URL", "https://proxyq.example.com"), reg)
		if err != nil {
			return "", false, err
		}
		token, ok := cfg.Tokens.AuthToken(sub)
		return token, ok, nil
	}
	if token, ok, err := config(withToken); err != nil || !ok || token != "sub-token" {
		t.Errorf("accounts file with an auth_token: token %q, %v, %v; want the subaccount's", token, ok, err)
	}
	_, _, err := config(keysOnly)
	if err == nil || !strings.Contains(err.Error(), "PROXYQ_ACCOUNTS_FILE") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("accounts file with API keys only: %v; want an error naming PROXYQ_ACCOUNTS_FILE", err)
	}
}
