package redisproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions shape a Sentinel set-up. Zero values: no passwords.
type SentinelOptions struct {
	MasterName       string // default "mymaster"
	MasterPassword   string // requirepass (and masterauth) of the master and its replica
	SentinelPassword string // requirepass of the sentinels themselves
}

// Sentinel is a private Redis with Sentinel: one master, one replica (both with append-only
// files) and three sentinels with quorum 2, timed so that a failover takes a few seconds.
type Sentinel struct {
	SentinelOptions
	Servers   []*Server // [0] started as master, [1] as its replica; roles change with failovers
	Sentinels []*Server
}

// Sentinel timings: a master silent for DownAfter is down; a failover is retried after
// failoverTimeout.
const (
	SentinelDownAfter = time.Second
	failoverTimeout   = 5 * time.Second
)

// StartSentinel starts the master, the replica and three sentinels, and waits until the
// replica is in sync and every sentinel knows the replica and the two other sentinels.
func StartSentinel(o SentinelOptions) (*Sentinel, error) {
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	s := &Sentinel{SentinelOptions: o}
	auth := func() []string {
		if o.MasterPassword == "" {
			return nil
		}
		return []string{"--requirepass", o.MasterPassword, "--masterauth", o.MasterPassword}
	}
	master, err := Start(append([]string{"--appendonly", "yes"}, auth()...)...)
	if err != nil {
		return nil, err
	}
	s.Servers = append(s.Servers, master)
	host, port, _ := strings.Cut(master.Addr, ":")
	replica, err := Start(append([]string{"--appendonly", "yes", "--replicaof", host, port}, auth()...)...)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Servers = append(s.Servers, replica)

	program := "redis-sentinel"
	if _, err := exec.LookPath(program); err != nil {
		return nil, errors.New("redis-sentinel not found on PATH: install it (apt-get install -y redis-sentinel)")
	}
	for range 3 {
		sen, err := start(program, func(p int, dir string) ([]string, error) {
			conf := []string{
				"port " + strconv.Itoa(p), "bind 127.0.0.1", "dir " + dir, "logfile " + filepath.Join(dir, "redis.log"),
				fmt.Sprintf("sentinel monitor %s %s %s 2", o.MasterName, host, port),
				fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.MasterName, SentinelDownAfter.Milliseconds()),
				fmt.Sprintf("sentinel failover-timeout %s %d", o.MasterName, failoverTimeout.Milliseconds()),
				fmt.Sprintf("sentinel parallel-syncs %s 1", o.MasterName),
			}
			if o.MasterPassword != "" {
				conf = append(conf, fmt.Sprintf("sentinel auth-pass %s %s", o.MasterName, o.MasterPassword))
			}
			if o.SentinelPassword != "" {
				// The sentinels talk to each other with the same password.
				conf = append(conf, "requirepass "+o.SentinelPassword, "sentinel sentinel-pass "+o.SentinelPassword)
			}
			// The sentinel rewrites its file: it must be writable and its own.
			path := filepath.Join(dir, "sentinel.conf")
			if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
				return nil, err
			}
			return []string{path}, nil
		})
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitHealthy(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close kills every process and removes their folders.
func (s *Sentinel) Close() {
	for _, n := range append(append([]*Server{}, s.Sentinels...), s.Servers...) {
		n.Close()
	}
}

// SentinelAddrs returns the sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr
	}
	return out
}

// URL returns the redis-sentinel:// URL of database db, with both passwords, as REDIS_URL
// would carry it.
func (s *Sentinel) URL(db int) string {
	u := "redis-sentinel://"
	if s.SentinelPassword != "" {
		u += ":" + s.SentinelPassword + "@"
	}
	u += strings.Join(s.SentinelAddrs(), ",") + "/" + strconv.Itoa(db) + "?master=" + s.MasterName
	if s.MasterPassword != "" {
		u += "&password=" + s.MasterPassword
	}
	return u
}

func (s *Sentinel) sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, Password: s.SentinelPassword, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
}

// MasterAddr returns the master's address as the first answering sentinel says.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var err error
	for _, n := range s.Sentinels {
		if !n.Running() {
			continue
		}
		c := s.sentinelClient(n.Addr)
		var hp []string
		hp, err = c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
	}
	return "", fmt.Errorf("no sentinel names the master: %v", err)
}

// Master returns the server the sentinels name as master.
func (s *Sentinel) Master(ctx context.Context) (*Server, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range s.Servers {
		if n.Addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the sentinels name %s, not one of ours", addr)
}

// WaitHealthy waits until every sentinel names the same running master, which says it is a
// master with a replica in sync, and knows the replica and the two other sentinels.
func (s *Sentinel) WaitHealthy(ctx context.Context) error {
	return waitHealthy(ctx, "sentinel set-up", s.unhealthy)
}

func (s *Sentinel) unhealthy(ctx context.Context) string {
	masterAddr := ""
	for _, n := range s.Sentinels {
		c := s.sentinelClient(n.Addr)
		m, err := c.Master(ctx, s.MasterName).Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("sentinel %s: %v", n.Addr, err)
		}
		addr := m["ip"] + ":" + m["port"]
		if masterAddr != "" && addr != masterAddr {
			return "the sentinels disagree on the master"
		}
		masterAddr = addr
		if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" || strings.Contains(m["flags"], "down") {
			return fmt.Sprintf("sentinel %s: flags %s, %s other sentinels, %s replicas", n.Addr, m["flags"], m["num-other-sentinels"], m["num-slaves"])
		}
	}
	for _, n := range s.Servers {
		if !n.Running() {
			return n.Addr + " is not running"
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr, Password: s.MasterPassword, MaxRetries: -1})
		repl, err := c.Info(ctx, "replication").Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		role := infoField(repl, "role")
		switch {
		case n.Addr == masterAddr && role != "master":
			return n.Addr + " is named master but is a " + role
		case n.Addr != masterAddr && (role != "slave" || infoField(repl, "master_link_status") != "up"):
			return n.Addr + ": replica not in sync yet"
		}
	}
	return ""
}

// Failover asks a sentinel for SENTINEL FAILOVER and waits until the other server is master.
func (s *Sentinel) Failover(ctx context.Context) (*Server, error) {
	old, err := s.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	c := s.sentinelClient(s.Sentinels[0].Addr)
	err = c.Failover(ctx, s.MasterName).Err()
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	return s.waitNewMaster(ctx, old)
}

// KillMaster SIGKILLs the master and waits until the sentinels have promoted the replica. The
// killed server stays down until Restart (then the sentinels make it a replica).
func (s *Sentinel) KillMaster(ctx context.Context) (killed, promoted *Server, err error) {
	m, err := s.Master(ctx)
	if err != nil {
		return nil, nil, err
	}
	m.Kill()
	promoted, err = s.waitNewMaster(ctx, m.Addr)
	return m, promoted, err
}

func (s *Sentinel) waitNewMaster(ctx context.Context, old string) (*Server, error) {
	for {
		if addr, err := s.MasterAddr(ctx); err == nil && addr != old {
			for _, n := range s.Servers {
				if n.Addr != addr {
					continue
				}
				c := redis.NewClient(&redis.Options{Addr: addr, Password: s.MasterPassword, MaxRetries: -1})
				role, err := c.Do(ctx, "ROLE").Slice()
				c.Close()
				if err == nil && role[0] == "master" {
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the sentinels did not promote a new master in time (old %s)", old)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
