package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill a child (redis-server, a benchmark worker) when the
// benchmark dies, even by SIGKILL, so an interrupted run leaves nothing behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
