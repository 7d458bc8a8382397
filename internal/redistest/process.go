package redistest

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Process is a redis-server of one test's own, for tests that kill and restart Redis.
type Process struct {
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// StartProcess starts a private redis-server on a free loopback port with the given extra
// arguments (e.g. "--appendonly", "yes"), its data in a temporary folder that survives
// restarts. It is killed when the test ends. The test is skipped by nothing: a missing
// redis-server fails it with the way out.
func StartProcess(tb testing.TB, extra ...string) *Process {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redistest: redis-server not found on PATH: install it (apt-get install -y redis-server)")
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	p := &Process{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:  dir,
		args: append([]string{bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, extra...),
	}
	p.Restart(tb)
	tb.Cleanup(p.Kill)
	return p
}

// Restart starts the server again on the same port and data folder (after Kill).
func (p *Process) Restart(tb testing.TB) {
	tb.Helper()
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("redistest: start redis-server: %v", err)
	}
	if !waitReady(p.Addr, 10*time.Second) {
		tb.Fatalf("redistest: redis-server on %s did not become ready; see %s", p.Addr, filepath.Join(p.dir, "redis.log"))
	}
}

// Kill stops the server with SIGKILL, as a crash would.
func (p *Process) Kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}
