//go:build !unix

package builtin

import "os/exec"

// killProcessGroupOnCancel keeps exec's default: cancellation kills the
// process itself. Process groups are a Unix feature.
func killProcessGroupOnCancel(*exec.Cmd) {}
