package accounts_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/proxyclient"
)

const (
	ac1 = "AC0000000000000000000000000000000a"
	ac2 = "AC0000000000000000000000000000000b"
	sk1 = "SK0000000000000000000000000000000a"
	ks  = "KS0000000000000000000000000000000a"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadYAMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "accounts.yaml")
	write(t, yamlPath, `
accounts:
  - account_sid: `+ac1+`
    api_key: `+sk1+`
    api_secret: "key-secret-1"
    auth_token: "token-1"
    limits:
      max_in_flight: 20
      rate: 50
      services:
        `+ks+`: 60
  - account_sid: `+ac2+`
    auth_token: token-2
`)
	jsonPath := filepath.Join(dir, "accounts.json")
	write(t, jsonPath, `{"accounts":[{"account_sid":"`+ac1+`","api_key":"`+sk1+`","api_secret":"key-secret-1","auth_token":"token-1",
"limits":{"max_in_flight":20,"rate":50,"services":{"`+ks+`":60}}},{"account_sid":"`+ac2+`","auth_token":"token-2"}]}`)
	for _, path := range []string{yamlPath, jsonPath} {
		r, err := accounts.New(accounts.Options{Path: path, DefaultAccountSID: "AC0000000000000000000000000000000d", DefaultAuthToken: "dtok"})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := r.Accounts(); len(got) != 2 || got[0] != ac1 || got[1] != ac2 {
			t.Fatalf("Accounts = %v", got)
		}
		c, ok := r.Client(ac1)
		if !ok || c.AccountKey() != ac1 {
			t.Fatalf("Client(ac1) = %v, %v", c, ok)
		}
		if tok, ok := r.AuthToken(ac2); !ok || tok != "token-2" {
			t.Errorf("AuthToken(ac2) = %q, %v", tok, ok)
		}
		if tok, ok := r.AuthToken("AC0000000000000000000000000000000d"); !ok || tok != "dtok" {
			t.Errorf("AuthToken(default) = %q, %v", tok, ok)
		}
		if _, ok := r.AuthToken("AC0000000000000000000000000000000e"); ok {
			t.Error("AuthToken of an unknown account")
		}
		if l, ok := r.Limits(ac1); !ok || l.MaxInFlight != 20 || l.Rate != 50 {
			t.Errorf("Limits(ac1) = %+v, %v", l, ok)
		}
		if _, ok := r.Limits(ac2); ok {
			t.Error("ac2 has no limits of its own")
		}
		if rate, ok := r.ServiceRate(ac1, ks); !ok || rate != 60 {
			t.Errorf("ServiceRate = %v, %v", rate, ok)
		}
	}
}

func TestBadFilesNameTheProblemNotTheSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	cases := map[string]string{
		"accounts:\n  - account_sid: ACnope\n    auth_token: s3cr3t-value\n":                                                       "account_sid must match",
		"accounts:\n  - account_sid: " + ac1 + "\n":                                                                                "give api_key and api_secret",
		"accounts:\n  - account_sid: " + ac1 + "\n    api_key: " + sk1 + "\n":                                                      "api_secret is required",
		"accounts:\n  - account_sid: " + ac1 + "\n    auth_token: s3cr3t-value\n    colour: red\n":                                 "unknown field",
		"accounts:\n  - account_sid: " + ac1 + "\n    auth_token: s3cr3t-value\n  - account_sid: " + ac1 + "\n    auth_token: x\n": "listed twice",
		"accounts:\n  - account_sid: " + ac1 + "\n    auth_token: s3cr3t-value\n    limits: {services: {KSbad: 3}}\n":              "services",
		"accounts: [\n  s3cr3t-value: {\n":                                                                                         "not valid JSON or YAML",
	}
	for data, want := range cases {
		write(t, path, data)
		_, err := accounts.New(accounts.Options{Path: path})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %q: err = %v, want %q", data, err, want)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, "accounts:\n  - account_sid: "+ac1+"\n    auth_token: old-token\n  - account_sid: "+ac2+"\n    auth_token: t2\n")
	core, logs := observer.New(zap.InfoLevel)
	r, err := accounts.New(accounts.Options{Path: path, Logger: zap.New(core), Client: proxyclient.Config{BaseURL: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	before1, _ := r.Client(ac1)
	before2, _ := r.Client(ac2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)

	// A bad file is refused as a whole: the accounts in force stay.
	write(t, path, "accounts:\n  - account_sid: nope\n")
	time.Sleep(150 * time.Millisecond)
	if c, ok := r.Client(ac1); !ok || c != before1 {
		t.Fatal("a bad file replaced the accounts in force")
	}

	write(t, path, "accounts:\n  - account_sid: "+ac1+"\n    auth_token: new-token\n  - account_sid: "+ac2+"\n    auth_token: t2\n")
	deadline := time.Now().Add(3 * time.Second)
	for {
		if tok, _ := r.AuthToken(ac1); tok == "new-token" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rotation not picked up by Watch")
		}
		time.Sleep(10 * time.Millisecond)
	}
	after1, _ := r.Client(ac1)
	after2, _ := r.Client(ac2)
	if after1 == before1 {
		t.Error("rotated account kept its old client")
	}
	if after2 != before2 {
		t.Error("an unchanged account got a new client (its connection pool would be lost)")
	}
	// The old client still works for a request that started with it: it is just no longer handed out.
	if before1.AccountKey() != ac1 {
		t.Error("old client broken")
	}
	// Removal by explicit Reload (what SIGHUP does).
	write(t, path, "accounts:\n  - account_sid: "+ac2+"\n    auth_token: t2\n")
	if changed, err := r.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if r.Has(ac1) {
		t.Error("removed account still known")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "token") || strings.Contains(f.String, "t2") {
				t.Errorf("log %q field %s = %q looks like a secret", e.Message, f.Key, f.String)
			}
		}
	}
}
