// Package redisproc runs private redis-server processes on free loopback ports, for the tests
// (through internal/redistest) and for `proxyq bench`, which must never flush a Redis someone
// else runs. A server started here dies with the process that started it, even by SIGKILL (on
// Linux), and keeps its data folder across Kill and Restart so tests can crash and revive it.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one private redis-server.
type Server struct {
	Addr string // 127.0.0.1:port
	Dir  string // data and log folder
	args []string
	cmd  *exec.Cmd
}

// Start starts redis-server with no persistence unless extra arguments ask for it (e.g.
// "--appendonly", "yes"), in a new temporary folder. It returns an error naming the way out when
// redis-server is not installed.
func Start(extra ...string) (*Server, error) {
	return start("redis-server", func(port int, dir string) ([]string, error) {
		// No diskless-sync delay: a replica started here is in sync at once, not after 5 s.
		return append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--repl-diskless-sync-delay", "0",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, extra...), nil
	})
}

// start runs program (redis-server or redis-sentinel) with the arguments args gives for a free
// port and a new temporary folder, and waits until it answers.
func start(program string, args func(port int, dir string) ([]string, error)) (*Server, error) {
	bin, err := exec.LookPath(program)
	if err != nil {
		return nil, fmt.Errorf("%s not found on PATH: install it (apt-get install -y %s)", program, program)
	}
	dir, err := os.MkdirTemp("", "proxyq-redis-")
	if err != nil {
		return nil, err
	}
	// A port found free can be taken before redis binds it: try a few.
	for try := 0; try < 5; try++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		a, err := args(port, dir)
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, args: append([]string{bin}, a...)}
		if err := s.Restart(); err == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%s did not become ready; see the log in %s", program, dir)
}

// Restart starts the server again on the same port and folder, after Kill.
func (s *Server) Restart() error {
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	if !waitReady(s.Addr, 10*time.Second) {
		s.Kill()
		return fmt.Errorf("redis-server on %s did not become ready; see %s", s.Addr, filepath.Join(s.Dir, "redis.log"))
	}
	return nil
}

// Kill stops the server with SIGKILL, as a crash would; its folder stays.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Close kills the server and removes its folder.
func (s *Server) Close() {
	s.Kill()
	_ = os.RemoveAll(s.Dir)
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
		// An error reply (NOAUTH from a server with a password) is an answer too.
		var reply redis.Error
		if err == nil || errors.As(err, &reply) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
