package main

import (
	"strings"
	"testing"

	"github.com/agentpg/agentpg"
)

// TestDefaultModel checks that demo and chat name a current model, and
// that chat's runs use it unless ANTHROPIC_MODEL says otherwise.
func TestDefaultModel(t *testing.T) {
	t.Parallel()
	const want = "claude-sonnet-5-5"
	for _, cmd := range []string{"demo", "chat"} {
		res := agentpgCLI(t, cmd, "--help")
		wantCode(t, res, 0)
		wantContains(t, cmd+" --help", res.stdout, want)
		if strings.Contains(res.stdout, "claude-sonnet-4") {
			t.Errorf("%s --help names a model past its end of life:\n%s", cmd, res.stdout)
		}
	}

	schema := migrated(t)
	for model, env := range map[string]map[string]string{
		want:               nil,
		"claude-haiku-4-5": {"ANTHROPIC_MODEL": "claude-haiku-4-5"},
	} {
		res := invocation{stdin: "hello\n", env: env}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", model)
		wantCode(t, res, 0)
		agent, _ := testAgent(t, schema)
		session, err := agent.LoadSessionByIdentifier(t.Context(), "acme", model)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := session.Runs(t.Context(), agentpg.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs.Items) != 1 || runs.Items[0].Model != model {
			t.Errorf("runs %+v, want one of model %s", runs.Items, model)
		}
	}
}
