package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/accounts"
)

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
		env := map[string]string{"PROXYQ_PUBLIC_URL": "https://proxyq.example.com"}
		m := &Main{Getenv: func(k string) string { return env[k] }}
		reg, err := accounts.New(accounts.Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := m.callbackConfigFromEnv(reg)
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
