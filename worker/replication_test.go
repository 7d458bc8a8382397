package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/replwait"
)

// startReplicated starts a master and a replica of it (real redis-servers) and waits until the
// replica is in sync. It returns clients on both.
func startReplicated(t *testing.T) (master, replica *redis.Client, replicaProc *redistest.Process) {
	t.Helper()
	m := redistest.StartProcess(t)
	host, port, _ := strings.Cut(m.Addr, ":")
	r := redistest.StartProcess(t, "--replicaof", host, port)
	master = redis.NewClient(&redis.Options{Addr: m.Addr})
	replica = redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = master.Close(); _ = replica.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := replica.Info(context.Background(), "replication").Result()
		minfo, _ := master.Info(context.Background(), "replication").Result()
		// In sync on both sides: the master counts the replica for WAIT once it is online.
		if err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(minfo, "state=online") {
			return master, replica, r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never in sync: %v %s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A write made on one pooled connection is on the replica once Wait (on another connection)
// returns: the barrier makes WAIT cover it.
func TestReplicaWaitCoversWritesOfOtherConnections(t *testing.T) {
	master, replica, _ := startReplicated(t)
	ctx := context.Background()
	// A generous bound: a replica just in sync sometimes acknowledges only with its periodic
	// (1 s) ACK, and this test is about coverage, not latency.
	w := newReplicaWait(master, 1, 3*time.Second, nil)
	const rounds = 300
	var total time.Duration
	for i := range rounds {
		key := LedgerKey(testKP, "m"+string(rune('a'+i%26)))
		if err := master.HSet(ctx, key, "attempt", attemptInFlight, "n", i).Err(); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if err := w.Wait(ctx, key); err != nil {
			t.Fatal(err)
		}
		total += time.Since(began)
		got, err := replica.HGet(ctx, key, "n").Int()
		if err != nil || got != i {
			t.Fatalf("round %d: replica has n=%d (%v) right after Wait, want %d", i, got, err, i)
		}
	}
	t.Logf("Wait (SET barrier + WAIT 1, one round trip): %v per call on loopback", total/rounds)
	if ttl := master.PTTL(ctx, replwait.BarrierKey(LedgerKey(testKP, "ma"))).Val(); ttl <= 0 || ttl > replwait.BarrierTTL {
		t.Fatalf("barrier TTL %v, want (0, %v]", ttl, replwait.BarrierTTL)
	}
}

// A replica that is connected but stalled (SIGSTOP) has not acknowledged the mark: Wait says
// so. A bare WAIT on a pooled connection that last ran a command before the mark was written
// does not cover the mark, which is why Wait writes its barrier on the connection it waits on.
func TestReplicaWaitReportsAStalledReplica(t *testing.T) {
	master, _, replicaProc := startReplicated(t)
	ctx := context.Background()
	idle := master.Conn() // a pooled connection that wrote before the mark
	defer idle.Close()
	if err := idle.Set(ctx, "warm", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := idle.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT with the replica running = %d, %v", n, err)
	}
	if err := replicaProc.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = replicaProc.Resume() }()
	key := LedgerKey(testKP, "m1")
	if err := master.HSet(ctx, key, "attempt", attemptInFlight).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := idle.Wait(ctx, 1, 100*time.Millisecond).Result(); err == nil && n == 1 {
		t.Log("a bare WAIT on the idle connection answered 1 although the replica has not the mark: the barrier is needed")
	}
	w := newReplicaWait(master, 1, 200*time.Millisecond, nil)
	began := time.Now()
	err := w.Wait(ctx, key)
	if !errors.Is(err, ErrReplicasBehind) {
		t.Fatalf("Wait with the replica stalled = %v, want ErrReplicasBehind", err)
	}
	if took := time.Since(began); took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("Wait took %v, want about its 200ms timeout", took)
	}
	if err := replicaProc.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, key); err != nil {
		t.Fatalf("Wait after the replica resumed: %v", err)
	}
	if newReplicaWait(master, 0, time.Second, nil) != nil {
		t.Fatal("RedisWaitReplicas 0 must mean no wait")
	}
	var none *replicaWait
	if err := none.Wait(ctx, "k"); err != nil {
		t.Fatal(err)
	}
}

func TestBarrierKeySharesTheSlot(t *testing.T) {
	for key, want := range map[string]string{
		LedgerKey("KP1", "t1"): "proxyq:{KP1}:replicated",
		"plain":                "proxyq:{plain}:replicated",
		"a{}b":                 "proxyq:{a{}b}:replicated", // empty tag: Redis hashes the whole key
	} {
		if got := replwait.BarrierKey(key); got != want {
			t.Errorf("replwait.BarrierKey(%q) = %q, want %q", key, got, want)
		}
	}
}

// With RedisWaitReplicas set and no replica to acknowledge, the handler does not send: the
// ledger goes back to none and the retry is not a failed attempt. Once a replica follows, it sends.
func TestHandlerSendsOnlyOnceTheMarkIsReplicated(t *testing.T) {
	master, _, replicaProc := startReplicated(t)
	if err := replicaProc.Pause(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{ReconcileSettle: 300 * time.Millisecond, HTTPTimeout: 2 * time.Second,
		RedisWaitReplicas: 1, RedisWaitTimeout: 100 * time.Millisecond}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	api := &stubAPI{}
	h := NewHandler(cfg, api, NewLedger(master, cfg.LedgerTTL), nil, nil, nil)
	h.replicas = newReplicaWait(master, cfg.RedisWaitReplicas, cfg.RedisWaitTimeout, h.log)
	f := &handlerFixture{h: h, api: api}

	rl := wantRetry(t, f.run(t, "m1", testPayload("hi")), false)
	if !errors.Is(rl.Err, ErrReplicasBehind) {
		t.Fatalf("retry error %v, want ErrReplicasBehind", rl.Err)
	}
	if n := api.creates.Load(); n != 0 {
		t.Fatalf("%d creates with the mark unreplicated, want 0", n)
	}
	if e := f.entry(t, "m1"); e.Attempt != attemptNone || e.LeaseUntil.After(time.Now()) {
		t.Fatalf("ledger after an unreplicated mark = %+v, want none and released", e)
	}

	if err := replicaProc.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f.run(t, "m1", testPayload("hi"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never sent after the replica came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := api.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

func TestConfigRedisWait(t *testing.T) {
	for _, c := range []Config{
		{RedisWaitReplicas: -1},
		{RedisWaitReplicas: 1, RedisWaitTimeout: 3 * time.Second},
		{RedisWaitReplicas: 1, RedisWaitTimeout: time.Second, HTTPTimeout: time.Second},
	} {
		if err := c.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "RedisWait") {
			t.Errorf("Validate(%+v) = %v, want a RedisWait error", c, err)
		}
	}
	// Without a wait, its timeout does not constrain the shortest HTTP timeout.
	if err := (Config{HTTPTimeout: time.Second}).WithDefaults().Validate(); err != nil {
		t.Errorf("HTTPTimeout 1s without a replica wait: %v", err)
	}
	if d := (Config{}).WithDefaults(); d.RedisWaitReplicas != 0 || d.RedisWaitTimeout != DefaultRedisWaitTimeout {
		t.Errorf("defaults: %d %v", d.RedisWaitReplicas, d.RedisWaitTimeout)
	}
}
