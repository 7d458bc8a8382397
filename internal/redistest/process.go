package redistest

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redisproc"
)

// Process is a redis-server of one test's own, for tests that kill and restart Redis.
type Process struct {
	*redisproc.Server
}

// StartProcess starts a private redis-server with the given extra arguments (e.g.
// "--appendonly", "yes"); its data folder survives Kill and Restart. It is removed when the
// test ends. A missing redis-server fails the test with the way out.
func StartProcess(tb testing.TB, extra ...string) *Process {
	tb.Helper()
	s, err := redisproc.Start(extra...)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Close)
	return &Process{s}
}

// Restart starts the server again on the same port and data folder (after Kill).
func (p *Process) Restart(tb testing.TB) {
	tb.Helper()
	if err := p.Server.Restart(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
}

// Cluster is a private Redis Cluster of one test's own (see redisproc.Cluster).
type Cluster struct {
	*redisproc.Cluster
}

// StartCluster starts a Redis Cluster of three masters with one replica each on loopback
// ports, removed when the test ends. A missing redis-server or redis-cli fails the test with
// the way out.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := redisproc.StartCluster(3, 1)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(c.Close)
	return &Cluster{c}
}

// Client returns a cluster client on it, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// ConnOpt returns asynq's connection option for the cluster.
func (c *Cluster) ConnOpt() asynq.RedisClusterClientOpt {
	return asynq.RedisClusterClientOpt{Addrs: c.Addrs()}
}

// Sentinel is a private Sentinel set-up of one test's own (see redisproc.Sentinel).
type Sentinel struct {
	*redisproc.Sentinel
}

// StartSentinel starts one master, one replica and three sentinels on loopback ports,
// removed when the test ends.
func StartSentinel(tb testing.TB, o redisproc.SentinelOptions) *Sentinel {
	tb.Helper()
	s, err := redisproc.StartSentinel(o)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Close)
	return &Sentinel{s}
}

// ConnOpt returns asynq's connection option for database db of the sentinels' master.
func (s *Sentinel) ConnOpt(db int) asynq.RedisFailoverClientOpt {
	return asynq.RedisFailoverClientOpt{MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs(),
		SentinelPassword: s.SentinelPassword, Password: s.MasterPassword, DB: db}
}
