package redistest

import (
	"testing"

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
