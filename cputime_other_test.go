//go:build !unix

package agentpg_test

import "time"

// processCPU is not measured off Unix: benchmarks report 0.
func processCPU() time.Duration { return 0 }
