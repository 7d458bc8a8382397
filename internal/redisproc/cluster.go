package redisproc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster on loopback ports: masters with replicas, each node a
// redis-server with its own folder and append-only file. Nodes die with the process that
// started them, as single servers do.
type Cluster struct {
	Nodes []*Server // in creation order; roles change with failovers (see Masters)
}

// ClusterNodeTimeout is the cluster-node-timeout of the test cluster: how long a master may be
// silent before its replica takes over. Short, so a killed master is replaced in seconds.
const ClusterNodeTimeout = 1500 * time.Millisecond

// StartCluster starts masters×(1+replicas) nodes, joins them with `redis-cli --cluster create`,
// and waits until every node says the cluster is ok and every replica is in sync.
func StartCluster(masters, replicas int) (*Cluster, error) {
	if masters < 3 {
		return nil, errors.New("a Redis Cluster needs at least 3 masters")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("redis-cli not found on PATH: install it (apt-get install -y redis-tools)")
	}
	c := &Cluster{}
	for range masters * (1 + replicas) {
		s, err := start("redis-server", func(port int, dir string) ([]string, error) {
			// The cluster bus listens on its own port (by default port+10000, which may not
			// exist or be free): pick one.
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
				"--appendonly", "yes", "--repl-diskless-sync-delay", "0", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
				// A replica that lost its master for a while may still be promoted: in a
				// test, availability after a kill matters more than the freshest replica.
				"--cluster-replica-validity-factor", "0"}, nil
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// URL returns the redis-cluster:// URL naming every node, as REDIS_URL would carry it.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// Close kills every node and removes their folders.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Close()
	}
}

// Running reports whether the node was started and not killed since.
func (s *Server) Running() bool { return s.cmd != nil }

func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
}

// Role returns "master" or "slave" as the node itself says (ROLE).
func (s *Server) Role(ctx context.Context) (string, error) {
	c := nodeClient(s.Addr)
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	role, _ := v[0].(string)
	return role, nil
}

// Masters returns the running nodes that are masters now.
func (c *Cluster) Masters(ctx context.Context) []*Server { return c.withRole(ctx, "master") }

// Replicas returns the running nodes that are replicas now.
func (c *Cluster) Replicas(ctx context.Context) []*Server { return c.withRole(ctx, "slave") }

func (c *Cluster) withRole(ctx context.Context, role string) []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if r, err := n.Role(ctx); err == nil && r == role {
			out = append(out, n)
		}
	}
	return out
}

// ReplicaOf returns a running replica of the given master, waiting up to 10 s for one (a
// node that just turned replica takes a moment to name its master).
func (c *Cluster) ReplicaOf(ctx context.Context, master *Server) (*Server, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := c.replicaOf(ctx, master); r != nil {
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no running replica of %s", master.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) replicaOf(ctx context.Context, master *Server) *Server {
	for _, n := range c.Replicas(ctx) {
		cl := nodeClient(n.Addr)
		info, err := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil {
			continue
		}
		host, port := infoField(info, "master_host"), infoField(info, "master_port")
		if host+":"+port == master.Addr && infoField(info, "master_link_status") == "up" {
			return n
		}
	}
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok with all slots served,
// knows every node, and every running replica's link to its master is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return waitHealthy(ctx, "cluster", c.unhealthy)
}

// waitHealthy asks unhealthy every 100ms until it answers "" (healthy), or ctx ends: then the
// error names what and its last reason.
func waitHealthy(ctx context.Context, what string, unhealthy func(context.Context) string) error {
	for {
		last := unhealthy(ctx)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unhealthy returns why the cluster is not healthy yet, or "".
func (c *Cluster) unhealthy(ctx context.Context) string {
	masters := 0
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := nodeClient(n.Addr)
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			cl.Close()
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		if infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_slots_ok") != "16384" ||
			infoField(info, "cluster_known_nodes") != strconv.Itoa(len(c.Nodes)) {
			cl.Close()
			return fmt.Sprintf("%s: state %s, slots ok %s, known nodes %s", n.Addr, infoField(info, "cluster_state"),
				infoField(info, "cluster_slots_ok"), infoField(info, "cluster_known_nodes"))
		}
		repl, err := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		switch infoField(repl, "role") {
		case "master":
			masters++
		case "slave":
			if infoField(repl, "master_link_status") != "up" {
				return n.Addr + ": replica not in sync with its master yet"
			}
		}
	}
	if masters == 0 {
		return "no master answers"
	}
	return ""
}

// Failover runs CLUSTER FAILOVER on replica (a coordinated switch: the master stops taking
// writes until the replica has them all) and waits until it is a master and the cluster is ok.
// A manual failover that times out (Redis gives it 5 s, e.g. while the master is still
// learning about its replica) is simply abandoned by Redis: it is asked for again.
func (c *Cluster) Failover(ctx context.Context, replica *Server) error {
	cl := nodeClient(replica.Addr)
	defer cl.Close()
	for {
		if role, err := replica.Role(ctx); err == nil && role == "master" {
			// The last request did go through; the old master then turns replica and syncs.
			if err := c.waitMaster(ctx, replica); err != nil {
				return err
			}
			return c.WaitHealthy(ctx)
		}
		if err := cl.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
			return fmt.Errorf("CLUSTER FAILOVER on %s: %w", replica.Addr, err)
		}
		try, cancel := context.WithTimeout(ctx, 8*time.Second)
		err := c.waitMaster(try, replica)
		cancel()
		if err == nil {
			return c.WaitHealthy(ctx)
		}
		if ctx.Err() != nil {
			return err
		}
	}
}

// KillMaster SIGKILLs master and waits until one of its replicas has taken over and the
// running nodes say the cluster is ok. It returns the promoted replica.
func (c *Cluster) KillMaster(ctx context.Context, master *Server) (*Server, error) {
	replica, err := c.ReplicaOf(ctx, master)
	if err != nil {
		return nil, err
	}
	master.Kill()
	return replica, c.waitMaster(ctx, replica)
}

func (c *Cluster) waitMaster(ctx context.Context, n *Server) error {
	for {
		if r, err := n.Role(ctx); err == nil && r == "master" && c.unhealthyIgnoringKnown(ctx) == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become a master of a healthy cluster: %s", n.Addr, c.unhealthyIgnoringKnown(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unhealthyIgnoringKnown is unhealthy for a cluster with a node down: state and slots only.
func (c *Cluster) unhealthyIgnoringKnown(ctx context.Context) string {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := nodeClient(n.Addr)
		info, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		if infoField(info, "cluster_state") != "ok" {
			return n.Addr + ": cluster_state " + infoField(info, "cluster_state")
		}
	}
	return ""
}

// infoField returns a field of an INFO or CLUSTER INFO answer.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
