//go:build unix && !linux

package builtin

import (
	"os/exec"
	"syscall"
)

// runTree runs the command newCmd returns in a process group of its own and,
// when its context is done, kills the whole group, so children it started
// die with it. Unlike on Linux (see proctree_linux.go), a process that
// leaves the group, with setsid(2) or setpgid(2), is not found, and nothing
// is killed when the command exits by itself.
func runTree(newCmd func() *exec.Cmd) error {
	cmd := newCmd()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return cmd.Run()
}
