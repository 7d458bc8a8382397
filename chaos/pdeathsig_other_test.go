//go:build (chaos || cluster) && !linux

package chaos

import "os/exec"

// dieWithParent does nothing outside Linux: there, only t.Cleanup stops the workers.
func dieWithParent(*exec.Cmd) {}
