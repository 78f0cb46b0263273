//go:build !unix

package builtin

import "os/exec"

// runTree runs the command newCmd returns with exec's default: when its
// context is done, the process itself is killed, but not its children.
func runTree(newCmd func() *exec.Cmd) error {
	return newCmd().Run()
}
