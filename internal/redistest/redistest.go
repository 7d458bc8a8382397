// Package redistest gives integration tests a real Redis of their own.
//
// Start launches a private redis-server on a free loopback port (no persistence, killed when the
// test binary's tests finish), or, when REDIS_URL is set, hands out that server instead. Each call
// returns a distinct logical database number so tests in one package do not see each other's keys;
// the database is flushed before it is handed out. Tests never touch a Redis that someone else runs
// on the default port unless REDIS_URL says so, and then it must be a throwaway server: its
// databases are flushed.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// databases is how many logical databases the private server is started with.
const databases = 256

// Server is a Redis that tests may use.
type Server struct {
	Addr string // host:port
	// URL is the base redis:// URL (without a database number) when REDIS_URL was not set.
	URL string

	mu     sync.Mutex
	nextDB int
	cmd    *exec.Cmd
	dir    string
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Start returns the package-wide test Redis, starting it on first use. It fails the test when
// redis-server is not installed and REDIS_URL is not set, naming both ways out.
func Start(tb testing.TB) *Server {
	tb.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		tb.Fatalf("redistest: %v", sharedErr)
	}
	return shared
}

// DB is one logical database reserved for one test.
type DB struct {
	Addr string
	DB   int
	// Password is empty for the private server.
	Password string
}

// URL returns the redis:// URL of this database, as REDIS_URL would carry it.
func (d DB) URL() string {
	if d.Password != "" {
		return fmt.Sprintf("redis://:%s@%s/%d", d.Password, d.Addr, d.DB)
	}
	return fmt.Sprintf("redis://%s/%d", d.Addr, d.DB)
}

// ConnOpt returns asynq's connection option for this database.
func (d DB) ConnOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: d.Addr, DB: d.DB, Password: d.Password}
}

// Client returns a go-redis client on this database, closed when the test ends.
func (d DB) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: d.Addr, DB: d.DB, Password: d.Password})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// NewDB reserves a fresh, flushed logical database for the calling test.
func NewDB(tb testing.TB) DB {
	tb.Helper()
	s := Start(tb)
	s.mu.Lock()
	n := s.nextDB
	s.nextDB++
	s.mu.Unlock()
	var db DB
	if s.cmd == nil {
		// REDIS_URL given: it must point at a throwaway server. Tests take databases counting
		// up from the URL's own, modulo Redis's default 16, and flush each one they take.
		opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
		if err != nil {
			tb.Fatalf("redistest: REDIS_URL: %v", err)
		}
		db = DB{Addr: opt.Addr, DB: (opt.DB + n) % 16, Password: opt.Password}
	} else {
		if n >= databases {
			tb.Fatalf("redistest: more than %d databases requested in one test binary", databases)
		}
		db = DB{Addr: s.Addr, DB: n}
	}
	c := redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB, Password: db.Password})
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		tb.Fatalf("redistest: flush db %d: %v", db.DB, err)
	}
	return db
}

func start() (*Server, error) {
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL %q: %w", u, err)
		}
		return &Server{Addr: opt.Addr}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH: install it (apt-get install -y redis-server) or set REDIS_URL")
	}
	dir, err := os.MkdirTemp("", "proxyq-redistest-")
	if err != nil {
		return nil, err
	}
	for try := 0; try < 5; try++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin,
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--databases", strconv.Itoa(databases),
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitReady(addr, 5*time.Second) {
			s := &Server{Addr: addr, URL: "redis://" + addr, cmd: cmd, dir: dir}
			return s, nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return nil, fmt.Errorf("redis-server did not become ready; see %s/redis.log", dir)
}

// Stop kills the private server. TestMain calls it after m.Run; without it the server is killed
// with the process group anyway when the test binary exits (it is started as our child).
func Stop() {
	if shared != nil && shared.cmd != nil {
		_ = shared.cmd.Process.Kill()
		_ = shared.cmd.Wait()
		_ = os.RemoveAll(shared.dir)
	}
}

// Main is a TestMain body for packages that use this helper: it runs the tests and stops the server.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(addr string, within time.Duration) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
