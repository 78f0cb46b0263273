package agentpgtest_test

import (
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// testAgentInOwnSchema is the body of a test of an agent whose tables are in
// a schema of its own: DBWithOptions gives it a database, dropped when the
// test ends, with AgentPG's migrations run in that schema.
func testAgentInOwnSchema(t *testing.T) {
	const schema = "myapp_agents"
	db := agentpgtest.DBWithOptions(t, agentpgtest.DBOptions{Schema: schema})
	model := agentpgtest.NewServer(t)
	model.Push(agentpgtest.Text("Nice to meet you, Ada."))

	agent, err := agentpg.New(agentpg.Config{
		DB:     db,
		Client: model.Client(),
		Model:  "claude-sonnet-5-5",
		Schema: schema,
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := agent.NewSession(t.Context(), "company-a", "user-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.Run(t.Context(), "Hi, I'm Ada.")
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "Nice to meet you, Ada." {
		t.Errorf("the agent answered %q", res.Text)
	}
}

// Tests of an agent configured with agentpg.Config.Schema use
// DBWithOptions with the same schema. (TestAgentInOwnSchema runs the test
// above.)
func ExampleDBWithOptions() {}
