//go:build cluster

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redisproc"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/testbin"
	"github.com/proxyq/proxyq/tasks"
)

// The chaos scenario on a Redis Cluster and on Sentinel, with Redis failing over under it:
// worker processes SIGKILLed as in TestChaos, the Fake's ambiguous faults, producers enqueuing
// while it happens, and every few seconds either a coordinated failover (CLUSTER FAILOVER on a
// replica; SENTINEL FAILOVER) or a SIGKILLed master (restarted a second after its replica took
// over, when it rejoins as a replica). The workers wait for one replica before each send
// (PROXYQ_REDIS_WAIT_REPLICAS=1) and the producer after each enqueue (tasks.WaitForReplicas),
// retrying with the same idempotency key when that fails. Run with `make test-redis-ha`; the -chaos.* flags apply.

// haDefaults are the HA runs' defaults for the flags the command line did not set: smaller than
// TestChaos's (the HA runs are about Redis, and run twice), enqueues spread over the failovers.
var haDefaults = map[string]string{
	"chaos.messages": "400", "chaos.kills": "8", "chaos.naive": "false", "chaos.enqueue-over": "20s",
}

// haRounds is how many Redis disruptions a run gets, one every haEvery, alternating a
// coordinated failover and a killed master.
const (
	haRounds = 6
	haEvery  = 4 * time.Second
)

func setHADefaults(t *testing.T) {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range haDefaults {
		if !set[name] {
			if err := flag.Set(name, v); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// haCounts is what a disruption schedule did.
type haCounts struct {
	failovers, masterKills atomic.Int32
	worst                  atomic.Int64 // longest time to a new master, ns
}

func (c *haCounts) took(d time.Duration) {
	for {
		old := c.worst.Load()
		if int64(d) <= old || c.worst.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func TestClusterChaos(t *testing.T) {
	setHADefaults(t)
	bin := testbin.Proxyq(t)
	c := redistest.StartCluster(t)
	st := store{url: c.URL(), opt: c.ConnOpt(), client: func(t *testing.T) redis.UniversalClient { return c.Client(t) },
		enqueuer: []tasks.EnqueuerOption{tasks.WaitForReplicas(1, 500*time.Millisecond)}}
	var counts haCounts
	during := func(stop <-chan struct{}) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		rng := rand.New(rand.NewPCG(uint64(*flagSeed), 0xC1))
		for round := range haRounds {
			select {
			case <-stop:
				return
			case <-time.After(haEvery):
			}
			masters := c.Masters(ctx)
			if len(masters) == 0 {
				t.Errorf("round %d: no master answers", round)
				return
			}
			m := masters[rng.IntN(len(masters))]
			began := time.Now()
			if round%2 == 0 {
				r, err := c.ReplicaOf(ctx, m)
				if err == nil {
					err = c.Failover(ctx, r)
				}
				if err != nil {
					t.Errorf("round %d: CLUSTER FAILOVER: %v", round, err)
					return
				}
				counts.failovers.Add(1)
				counts.took(time.Since(began))
				t.Logf("redis: CLUSTER FAILOVER, %s took over from %s in %s", r.Addr, m.Addr, time.Since(began).Round(time.Millisecond))
				continue
			}
			promoted, err := c.KillMaster(ctx, m)
			if err != nil {
				t.Errorf("round %d: kill master: %v", round, err)
				return
			}
			counts.masterKills.Add(1)
			counts.took(time.Since(began))
			t.Logf("redis: SIGKILL of master %s, %s took over in %s", m.Addr, promoted.Addr, time.Since(began).Round(time.Millisecond))
			time.Sleep(time.Second)
			if err := m.Restart(); err != nil {
				t.Errorf("round %d: restart %s: %v", round, m.Addr, err)
				return
			}
			if err := c.WaitHealthy(ctx); err != nil {
				t.Errorf("round %d: %v", round, err)
				return
			}
		}
	}
	r := runScenarioOn(t, "proxyq-cluster", st, []string{bin, "worker"}, []string{"PROXYQ_REDIS_WAIT_REPLICAS=1"}, during)
	reportHA(t, r, &counts, "CLUSTER FAILOVER")
}

func TestSentinelChaos(t *testing.T) {
	setHADefaults(t)
	bin := testbin.Proxyq(t)
	s := redistest.StartSentinel(t, redisproc.SentinelOptions{MasterPassword: "chaos-master-pw", SentinelPassword: "chaos-sentinel-pw"})
	const db = 3 // not 0: the URL's database number must reach every client
	st := store{url: s.URL(db), opt: s.ConnOpt(db), client: func(t *testing.T) redis.UniversalClient {
		c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs(),
			SentinelPassword: s.SentinelPassword, Password: s.MasterPassword, DB: db})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}, enqueuer: []tasks.EnqueuerOption{tasks.WaitForReplicas(1, 500*time.Millisecond)}}
	var counts haCounts
	during := func(stop <-chan struct{}) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for round := range haRounds {
			select {
			case <-stop:
				return
			case <-time.After(haEvery):
			}
			began := time.Now()
			if round%2 == 0 {
				promoted, err := s.Failover(ctx)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				counts.failovers.Add(1)
				counts.took(time.Since(began))
				t.Logf("redis: SENTINEL FAILOVER, %s is master after %s", promoted.Addr, time.Since(began).Round(time.Millisecond))
			} else {
				killed, promoted, err := s.KillMaster(ctx)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				counts.masterKills.Add(1)
				counts.took(time.Since(began))
				t.Logf("redis: SIGKILL of master %s, %s is master after %s", killed.Addr, promoted.Addr, time.Since(began).Round(time.Millisecond))
				time.Sleep(time.Second)
				if err := killed.Restart(); err != nil {
					t.Errorf("round %d: restart %s: %v", round, killed.Addr, err)
					return
				}
			}
			if err := s.WaitHealthy(ctx); err != nil {
				t.Errorf("round %d: %v", round, err)
				return
			}
		}
	}
	r := runScenarioOn(t, "proxyq-sentinel", st, []string{bin, "worker"}, []string{"PROXYQ_REDIS_WAIT_REPLICAS=1"}, during)
	// The data went to the database the URL names.
	if n, err := st.client(t).Exists(context.Background(), "asynq:{default}:t:chaos-00000").Result(); err != nil || n != 1 {
		t.Errorf("task chaos-00000 not in database %d: %d %v", db, n, err)
	}
	reportHA(t, r, &counts, "SENTINEL FAILOVER")
}

// reportHA fails the test for any broken guarantee and prints the run's table with the Redis
// disruptions and how often the replica wait held a send back.
func reportHA(t *testing.T, r *runResult, counts *haCounts, failoverKind string) {
	t.Helper()
	checkOurs(t, r)
	held := 0
	for _, path := range r.logs {
		held += countLines(path, "in-flight mark is not known to be replicated")
	}
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "%ss\t%d\n", failoverKind, counts.failovers.Load())
	fmt.Fprintf(w, "master SIGKILLs\t%d\n", counts.masterKills.Load())
	fmt.Fprintf(w, "longest failover (to a new master)\t%s\n", time.Duration(counts.worst.Load()).Round(time.Millisecond))
	fmt.Fprintf(w, "sends held back by the replica wait\t%d\n", held)
	_ = w.Flush()
	t.Logf("\n%s\nRedis:\n%s", table(r), b.String())
	if counts.failovers.Load() == 0 || counts.masterKills.Load() == 0 {
		t.Errorf("the run ended before Redis was disrupted both ways (%d failovers, %d master kills): raise -chaos.messages",
			counts.failovers.Load(), counts.masterKills.Load())
	}
}

func countLines(path, needle string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(needle)) {
			n++
		}
	}
	return n
}
