package main

import (
	"regexp"
	"testing"
)

// TestDemo runs the demo, then finds its session with the sessions
// commands, and only in its tenant.
func TestDemo(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)

	res := agentpgCLI(t, "demo", "--schema", schema, "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "stderr", res.stderr, "ANTHROPIC_API_KEY is not set: using the built-in scripted model (answers are canned).")
	wantContains(t, "stdout", res.stdout,
		`Migrated schema "`+schema+`"`,
		"you: What is my name?\nagent: Your name is Ada", // answered by the reloaded session
		"The session holds 6 stored messages.",
		"Runs (3):",
		"completed",
		"end_turn",
	)
	m := regexp.MustCompile(`Created session (demo-[a-z0-9]+) \(id ([0-9a-f-]{36})\) of tenant "acme"`).FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("the demo does not name its session:\n%s", res.stdout)
	}
	identifier, id := m[1], m[2]
	wantContains(t, "stdout", res.stdout, "agentpg sessions show --schema "+schema+" --tenant acme --identifier "+identifier)

	res = agentpgCLI(t, "sessions", "list", "--schema", schema, "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "sessions list", res.stdout, identifier, id)

	for _, args := range [][]string{{"--identifier", identifier}, {"--id", id}} {
		res = agentpgCLI(t, append([]string{"sessions", "show", "--schema", schema, "--tenant", "acme"}, args...)...)
		wantCode(t, res, 0)
		wantContains(t, "sessions show", res.stdout,
			identifier, id, "acme",
			"Messages (6):",
			"  #1 user, ",
			"\n    Hi! My name is Ada. Please remember it.\n",
			"  #6 assistant, ",
			"\n    Your name is Ada",
			"Runs (3):",
		)
	}

	// Another tenant sees nothing of it.
	res = agentpgCLI(t, "sessions", "list", "--schema", schema, "--tenant", "other")
	wantCode(t, res, 0)
	wantContains(t, "sessions list", res.stdout, `Tenant "other" has no sessions.`)
	for _, args := range [][]string{{"--identifier", identifier}, {"--id", id}} {
		res = agentpgCLI(t, append([]string{"sessions", "show", "--schema", schema, "--tenant", "other"}, args...)...)
		wantCode(t, res, 1)
		wantContains(t, "sessions show", res.stderr, `tenant "other" has no session`)
	}
}
