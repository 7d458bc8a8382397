//go:build unix

package redisproc

import (
	"errors"
	"syscall"
)

// Pause stops the server with SIGSTOP (its connections stay open, it answers nothing) until
// Resume: a server that is slow, not gone.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return errors.New("redisproc: server not running")
	}
	return s.cmd.Process.Signal(sig)
}
