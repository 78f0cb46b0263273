package agentpgtest_test

import "testing"

// TestAgentInOwnSchema runs the example of DBWithOptions.
func TestAgentInOwnSchema(t *testing.T) {
	t.Parallel()
	testAgentInOwnSchema(t)
}
