//go:build chaos || cluster

package chaos

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fleet is a set of worker processes, one per slot, that the test kills and restarts. Every
// incarnation writes its own log file. Processes die with the test binary (pdeathsig) and are
// stopped when the test ends (t.Cleanup): SIGTERM, then SIGKILL after the shutdown timeout.
type fleet struct {
	t      *testing.T
	name   string   // "proxyq" or "naive": log file prefix
	argv   []string // program and arguments
	env    []string // the complete environment: nothing is inherited
	logDir string
	grace  time.Duration // how long a SIGTERMed worker may take

	mu         sync.Mutex
	procs      []*proc
	gens       []int
	kills      int
	unexpected []string // exits the test did not cause
}

// proc is one incarnation of a worker.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	state   *os.ProcessState
	ours    bool // the test signalled it (guarded by fleet.mu)
}

func newFleet(t *testing.T, name string, argv, env []string, logDir string, n int, grace time.Duration) *fleet {
	t.Helper()
	f := &fleet{t: t, name: name, argv: argv, env: env, logDir: logDir, grace: grace,
		procs: make([]*proc, n), gens: make([]int, n)}
	t.Cleanup(f.stopAll)
	for slot := range n {
		f.start(slot)
	}
	return f
}

// start starts a new incarnation in slot, which must be empty or exited.
func (f *fleet) start(slot int) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gens[slot]++
	logPath := filepath.Join(f.logDir, fmt.Sprintf("%s-w%d-%03d.log", f.name, slot, f.gens[slot]))
	logFile, err := os.Create(logPath)
	if err != nil {
		f.t.Fatalf("worker log: %v", err)
	}
	cmd := exec.Command(f.argv[0], f.argv[1:]...)
	cmd.Env = f.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		f.t.Fatalf("start %s worker %d: %v", f.name, slot, err)
	}
	p := &proc{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	f.procs[slot] = p
}

// kill SIGKILLs the worker in slot and waits until it is gone.
func (f *fleet) kill(slot int) {
	f.mu.Lock()
	p := f.procs[slot]
	p.ours = true
	f.kills++
	f.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// revive restarts workers that exited without the test's doing, and remembers why they exited.
// It returns how many it restarted.
func (f *fleet) revive() int {
	f.t.Helper()
	var dead []int
	f.mu.Lock()
	for slot, p := range f.procs {
		select {
		case <-p.exited:
			if !p.ours {
				f.unexpected = append(f.unexpected, fmt.Sprintf("worker %d (%s) exited by itself: %v; last log lines:\n%s",
					slot, filepath.Base(p.logPath), p.state, tail(p.logPath, 10)))
				dead = append(dead, slot)
			}
		default:
		}
	}
	f.mu.Unlock()
	for _, slot := range dead {
		f.start(slot)
	}
	return len(dead)
}

// stopAll sends SIGTERM to every running worker, waits up to the grace period for each to
// finish its in-flight messages, and SIGKILLs whatever is left.
func (f *fleet) stopAll() {
	f.mu.Lock()
	procs := append([]*proc(nil), f.procs...)
	for _, p := range procs {
		if p != nil {
			p.ours = true
		}
	}
	f.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(f.grace)
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.exited:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

func (f *fleet) killCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kills
}

func (f *fleet) unexpectedExits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unexpected...)
}

// logFiles returns every log file the fleet wrote, oldest incarnation first per slot.
func (f *fleet) logFiles() []string {
	files, _ := filepath.Glob(filepath.Join(f.logDir, f.name+"-w*.log"))
	return files
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	file, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer file.Close()
	var lines []string
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	out := ""
	for _, l := range lines {
		out += "    " + l + "\n"
	}
	return out
}
