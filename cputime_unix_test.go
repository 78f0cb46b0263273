//go:build unix

package agentpg_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time, user and system, this process has used:
// the client's side of a turn (AgentPG, pgx, the SDK, and the scripted
// model server in the same process), not PostgreSQL's.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
