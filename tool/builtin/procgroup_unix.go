//go:build unix

package builtin

import (
	"os/exec"
	"syscall"
)

// killProcessGroupOnCancel starts cmd in a process group of its own and makes
// cancellation kill the whole group, so children it started die with it.
func killProcessGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
