package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// TestFleetServiceLimits is the proof of the per-Service limits and of many accounts: three
// workers (each its own asynq server, Redis client, accounts registry and limiters, as three
// processes would have) send as fast as they can against a fake that enforces Twilio's
// per-Service limit (30/s over 5 s, 429/80621) and per-account concurrency caps (20429):
//
//   - account 1 (TWILIO_*, cap 8): Services A and B at the default 30/s, Service C with a
//     raised limit of 60/s configured on both sides;
//   - account 2 (accounts file, API key, cap 12): Service D; its key is rotated mid-run (the
//     file is rewritten, then the old key revoked at the fake);
//   - one message for an account nobody has credentials for.
//
// Under the race detector the fleet is several times slower, so only correctness is judged
// then (429s, duplicates, failures, the archived reason); the rates are logged.
//
// Expected: zero 429s of either kind, every Service at ≥ 0.9 of its own limit (over the whole
// run, and over two whole windows after the first), no failed or duplicated send, and
// the unknown account's message archived with a clear reason.
func TestFleetServiceLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 20s")
	}
	const (
		ac1, tok1   = "AC00000000000000000000000000000001", "token-one"
		ac2         = "AC00000000000000000000000000000002"
		skOld, sOld = "SK0000000000000000000000000000000a", "old-secret"
		skNew, sNew = "SK0000000000000000000000000000000b", "new-secret"
		acUnknown   = "AC0000000000000000000000000000000f"
		ksA         = "KS0000000000000000000000000000000a"
		ksB         = "KS0000000000000000000000000000000b"
		ksC         = "KS0000000000000000000000000000000c"
		ksD         = "KS0000000000000000000000000000000d"
		kc          = "KC00000000000000000000000000000001"
		kp          = "KP00000000000000000000000000000001"
		run         = 17 * time.Second
	)
	creds := map[string]string{ac1: tok1, skOld: sOld, skNew: sNew}
	srv := proxytest.NewServer(proxytest.Config{
		Credentials:        creds,
		Latency:            20 * time.Millisecond,
		ServiceLimits:      proxytest.ServiceLimits{Rate: 30, Services: map[string]float64{ksC: 60}},
		AccountConcurrency: map[string]int{ac1: 8, skOld: 12, skNew: 12},
	})
	defer srv.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "accounts.yaml")
	writeAccounts := func(key, secret string) {
		data := fmt.Sprintf("accounts:\n  - account_sid: %s\n    api_key: %s\n    api_secret: %s\n    limits:\n      max_in_flight: 12\n", ac2, key, secret)
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil { // atomic, as a Secret volume update is
			t.Fatal(err)
		}
	}
	writeAccounts(skOld, sOld)

	db := redistest.NewDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var workers []*Worker
	for i := range 3 {
		clientCfg := proxyclient.Config{BaseURL: srv.URL, HTTPTimeout: 5 * time.Second}
		def := clientCfg
		def.AccountSID, def.AuthToken = ac1, tok1
		api, err := proxyclient.New(def)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := accounts.New(accounts.Options{Path: file, Client: clientCfg})
		if err != nil {
			t.Fatal(err)
		}
		go reg.Watch(ctx, 100*time.Millisecond)
		w, err := New(Config{
			Concurrency: 20, Queues: map[string]int{tasks.DefaultQueue: 1}, HTTPTimeout: 5 * time.Second,
			MaxInFlight: 8, DelayedCheckInterval: 100 * time.Millisecond,
			ServiceLimits: ServiceLimits{Services: map[string]float64{ksC: 60}},
		}, Deps{Redis: db.ConnOpt(), API: api, Accounts: FromRegistry(reg), Logger: zap.NewNop().Named(fmt.Sprint("w", i))})
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}

	enq := tasks.NewEnqueuer(db.ConnOpt())
	defer enq.Close()
	var msgs []tasks.Message
	add := func(ks, account string, n int) {
		for i := range n {
			msgs = append(msgs, tasks.Message{Payload: tasks.Payload{ServiceSID: ks, SessionSID: kc, ParticipantSID: kp,
				Body: fmt.Sprintf("%s-%d", ks[len(ks)-1:], i), AccountSID: account}})
		}
	}
	// More than each Service can take in the run: about 4 windows of 150 (300 for C).
	add(ksA, "", 650)
	add(ksB, ac1, 650)
	add(ksC, "", 1250)
	add(ksD, ac2, 650)
	add(ksA, acUnknown, 1)
	for i := 0; i < len(msgs); i += 500 {
		if _, err := enq.EnqueueBatch(ctx, msgs[i:min(i+500, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	for _, w := range workers {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		time.Sleep(6 * time.Second)
		writeAccounts(skNew, sNew) // rotation: the new key goes into the file…
		time.Sleep(2 * time.Second)
		srv.Fake.SetCredentials(map[string]string{ac1: tok1, skNew: sNew}) // …then the old one is revoked
	}()
	time.Sleep(run)
	<-rotated
	elapsed := time.Since(start)
	for _, w := range workers {
		w.Shutdown()
	}

	stats := srv.Fake.Stats()
	if stats.TooManyRequests != 0 {
		t.Errorf("429s: %d (%d account concurrency, per Service %v), want 0", stats.TooManyRequests, stats.ConcurrencyRejections, srv.Fake.ServiceRateLimited())
	}
	created := srv.Fake.Created()
	byService := map[string][]time.Time{}
	bodies := map[string]int{}
	byKey := map[string]int{}
	for _, in := range created {
		byService[in.Service] = append(byService[in.Service], in.CreatedAt)
		bodies[in.Service+in.Body]++
		byKey[in.Account]++
	}
	for b, n := range bodies {
		if n > 1 {
			t.Errorf("message %s created %d times", b, n)
		}
	}
	// The run is measured in whole windows (5 s + the 0.25 s margin) from the start, so
	// that where the run's end falls in a window does not count: three windows, and the last
	// two alone (after the first, which a quiet Service may fill at once).
	const window = 5250 * time.Millisecond
	for _, s := range []struct {
		ks    string
		limit float64
	}{{ksA, 30}, {ksB, 30}, {ksC, 60}, {ksD, 30}} {
		count := func(from, to time.Time) float64 {
			n := 0
			for _, c := range byService[s.ks] {
				if !c.Before(from) && c.Before(to) {
					n++
				}
			}
			return float64(n) / to.Sub(from).Seconds()
		}
		if os.Getenv("FLEET_HIST") != "" {
			hist := make([]int, 20)
			for _, c := range byService[s.ks] {
				if i := int(c.Sub(start) / time.Second); i >= 0 && i < 20 {
					hist[i]++
				}
			}
			t.Logf("Service %s per second: %v", s.ks[len(s.ks)-1:], hist)
		}
		whole := count(start, start.Add(3*window))
		steady := count(start.Add(window), start.Add(3*window))
		t.Logf("Service %s: %d created in %v; over three windows %.1f/s = %.2f of its limit %.0f/s; windows 2–3 %.1f/s = %.2f",
			s.ks[len(s.ks)-1:], len(byService[s.ks]), elapsed.Round(time.Millisecond), whole, whole/s.limit, s.limit, steady, steady/s.limit)
		if (whole < 0.9*s.limit || steady < 0.9*s.limit) && !raceEnabled {
			t.Errorf("Service %s ran at %.1f/s (windows 2–3: %.1f/s), want ≥ 0.9 × %.0f", s.ks, whole, steady, s.limit)
		}
	}
	t.Logf("account 2 creates: old key %d, new key %d; fake stats %+v", byKey[skOld], byKey[skNew], stats)
	if byKey[skNew] == 0 || (byKey[skOld] == 0 && !raceEnabled) {
		t.Errorf("rotation: creates with the old key %d, the new key %d; want both", byKey[skOld], byKey[skNew])
	}

	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	archived, err := insp.ListArchivedTasks(tasks.DefaultQueue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(archived) != 1 {
		for _, a := range archived {
			t.Logf("archived: %s", a.LastErr)
		}
		t.Fatalf("%d archived, want only the unknown account's message (no failed send)", len(archived))
	}
	if a := archived[0]; !strings.Contains(a.LastErr, acUnknown) || !strings.Contains(a.LastErr, "no credentials") {
		t.Errorf("archived for %q, want the unknown account named with \"no credentials\"", a.LastErr)
	}
}
