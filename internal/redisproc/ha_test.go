//go:build cluster

package redisproc

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The harness itself: a cluster that fails over both ways and heals, and a Sentinel set-up
// with passwords that fails over both ways. Run with `make test-redis-ha`.
func TestClusterHarness(t *testing.T) {
	began := time.Now()
	c, err := StartCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("cluster of %d nodes healthy after %s", len(c.Nodes), time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if m := c.Masters(ctx); len(m) != 3 {
		t.Fatalf("%d masters, want 3", len(m))
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cl.Close()
	for i := range 100 {
		if err := cl.Set(ctx, "k"+string(rune('a'+i%26))+string(rune('0'+i/26)), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Eval(ctx, "return redis.call('SET', KEYS[1], 1)", []string{"{x}a"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Eval(ctx, "return 1", []string{"a", "b"}).Err(); err == nil {
		t.Fatal("a script over keys in two slots ran: the cluster does not check slots")
	}

	m := c.Masters(ctx)[0]
	r, err := c.ReplicaOf(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if err := c.Failover(ctx, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("CLUSTER FAILOVER: %s took over from %s in %s", r.Addr, m.Addr, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	promoted, err := c.KillMaster(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL of master %s: %s took over in %s", r.Addr, promoted.Addr, time.Since(began).Round(time.Millisecond))
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if role, _ := r.Role(ctx); role != "slave" {
		t.Fatalf("the revived node is a %s, want a replica", role)
	}
	if n, err := cl.Get(ctx, "ka0").Int(); err != nil || n != 0 {
		t.Fatalf("after failovers: %v %v", n, err)
	}
}

func TestSentinelHarness(t *testing.T) {
	began := time.Now()
	s, err := StartSentinel(SentinelOptions{MasterPassword: "master-pw", SentinelPassword: "sentinel-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("sentinel set-up healthy after %s: %s", time.Since(began).Round(time.Millisecond), s.URL(3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began = time.Now()
	promoted, err := s.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SENTINEL FAILOVER: %s is master after %s", promoted.Addr, time.Since(began).Round(time.Millisecond))
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	killed, promoted, err := s.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL of master %s: %s is master after %s", killed.Addr, promoted.Addr, time.Since(began).Round(time.Millisecond))
	if err := killed.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}
