package redact_test

import (
	"testing"

	"github.com/agentpg/agentpg/agentpgtest"
)

// TestMain drops the template databases agentpgtest made once the last
// test process using them ends.
func TestMain(m *testing.M) { agentpgtest.Main(m) }
