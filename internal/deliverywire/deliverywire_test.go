package deliverywire_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/internal/deliverywire"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/worker"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// Issue 20 item 5: a delivery fetch (poll or error fetch) of a subaccount's message counts
// against that subaccount's limits — the key its sends use — not the default account's; and a
// 429 on it slows the subaccount only.
func TestDeliveryFetchesUseTheirAccountsLimits(t *testing.T) {
	t.Parallel()
	const sub = "AC00000000000000000000000000000052"
	const def = "AC00000000000000000000000000000053"
	path := filepath.Join(t.TempDir(), "accounts.yaml")
	if err := os.WriteFile(path, []byte("accounts:\n  - account_sid: "+sub+"\n    auth_token: sub-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := accounts.New(accounts.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.NewDB(t).Client(t)
	lim, err := worker.NewAccountLimiter(rdb, worker.AccountLimits{MaxInFlight: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fetches := &deliverywire.Limiter{Accounts: reg}
	fetches.Set(lim, def)
	ctx := context.Background()

	release, err := fetches.Acquire(ctx, sub, 0)
	if err != nil {
		t.Fatalf("the subaccount's first fetch: %v", err)
	}
	if _, err := fetches.Acquire(ctx, sub, 0); err == nil {
		t.Fatal("a second fetch of the subaccount got a slot: its cap of 1 is not applied to its fetches")
	}
	send, err := lim.Acquire(ctx, def, "send", 0)
	if err != nil {
		t.Fatalf("the default account's send is refused while a subaccount's fetch is in flight: %v", err)
	}
	send.Release(false)

	release(true) // Twilio answered the subaccount's fetch 429
	// The limiter's adaptive factor of an account ("proxyq:{acct:<key>}:adaptive", field factor,
	// per mille) is written by a 429 only.
	factor := func(account string) string {
		v, _ := rdb.HGet(ctx, "proxyq:{acct:"+account+"}:adaptive", "factor").Result()
		return v
	}
	if f := factor(def); f != "" {
		t.Errorf("the default account's factor is %s after a subaccount's 429; want it untouched", f)
	}
	if f := factor(sub); f == "" || f == "1000" {
		t.Errorf("the subaccount's factor is %q after its 429; want it lowered", f)
	}
}
