package store_test

import (
	"testing"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// TestMain drops the template databases agentpgtest made once the last
// test process using them ends.
func TestMain(m *testing.M) { agentpgtest.Main(m) }

// testJob is the River job the tests' enqueued runs get: no Worker runs
// its kind.
var testJob = store.RunJob{Kind: "test", Queue: "test", MaxAttempts: 1, Priority: 1}
