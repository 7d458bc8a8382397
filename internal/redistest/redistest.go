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
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redisproc"
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
	proc   *redisproc.Server // nil when REDIS_URL is used
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
	if s.proc == nil {
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
	proc, err := redisproc.Start("--appendonly", "no", "--databases", strconv.Itoa(databases))
	if err != nil {
		return nil, fmt.Errorf("%w, or set REDIS_URL", err)
	}
	return &Server{Addr: proc.Addr, URL: "redis://" + proc.Addr, proc: proc}, nil
}

// Stop kills the private server. Main calls it after the tests; without it the server still
// dies with the test binary.
func Stop() {
	if shared != nil && shared.proc != nil {
		shared.proc.Close()
	}
}

// Main is a TestMain body for packages that use this helper: it runs the tests and stops the server.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}
