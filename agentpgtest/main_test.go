package agentpgtest_test

import (
	"testing"

	"github.com/agentpg/agentpg/agentpgtest"
)

// TestMain drops the templates of agentpgtest.DB when the tests end, unless
// another test process still uses them.
func TestMain(m *testing.M) { agentpgtest.Main(m) }
