package main

import (
	"strings"
	"testing"
)

func TestChat(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	chat := func(stdin string) result {
		return invocation{stdin: stdin}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	}

	res := chat("hello\n/history\n/quit\nnot read\n")
	wantCode(t, res, 0)
	wantContains(t, "stderr", res.stderr, "ANTHROPIC_API_KEY is not set")
	wantContains(t, "stdout", res.stdout,
		"Created session s1",
		`agent: I am a scripted model, so all I can say is that I received "hello" after 0 earlier messages.`,
		"Messages (2):",
		"  #1 user, ",
		"\n    hello\n",
		"  #2 assistant, ",
		"\n    I am a scripted model",
	)
	if strings.Contains(res.stdout, "not read") {
		t.Errorf("chat went on after /quit:\n%s", res.stdout)
	}

	// The session goes on in another process, up to the end of the input.
	res = chat("My name is Grace\n\n/what\nWhat is my name?\n/history")
	wantCode(t, res, 0)
	wantContains(t, "stderr", res.stderr, "unknown command /what")
	wantContains(t, "stdout", res.stdout,
		"Continuing session s1",
		"agent: Nice to meet you, Grace!",
		"agent: Your name is Grace",
		"Messages (6):",
		"\n    hello\n",
		"  #5 user, ",
		"\n    What is my name?\n",
	)

	res = agentpgCLI(t, "sessions", "show", "--schema", schema, "--tenant", "acme", "--identifier", "s1")
	wantCode(t, res, 0)
	wantContains(t, "sessions show", res.stdout, "Messages (6):", "Runs (3):")
}

func TestChatNewSession(t *testing.T) {
	t.Parallel()
	schema := migrated(t)

	res := invocation{stdin: "hi\n"}.run(t, "chat", "--schema", schema)
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, "Created session chat-", `of tenant "default"`, `received "hi"`)

	res = agentpgCLI(t, "sessions", "list", "--schema", schema, "--tenant", "default")
	wantCode(t, res, 0)
	wantContains(t, "sessions list", res.stdout, "chat-")
}

func TestChatNeedsMigrate(t *testing.T) {
	t.Parallel()
	res := invocation{stdin: "hi\n"}.run(t, "chat", "--schema", testSchema(t))
	wantCode(t, res, 1)
	wantContains(t, "stderr", res.stderr, "does not exist", `has "agentpg migrate" run for this schema?`)
}
