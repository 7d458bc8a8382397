//go:build chaos || cluster

package chaos

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill a worker when the test binary dies, even by SIGKILL, so
// an interrupted chaos run leaves no worker behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
