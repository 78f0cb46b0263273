package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
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

// TestChatFailedTurn checks that a failed turn is told once, that chat goes
// on with the next line, and that it then exits with status 1.
func TestChatFailedTurn(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	res := invocation{stdin: "hello\n\xff\xfe\nbye\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 1)
	wantContains(t, "stderr", res.stderr,
		"agentpg: invalid argument: prompt is not valid UTF-8\n",
		"agentpg: 1 of 3 turns failed\n")
	if strings.Contains(res.stderr, "agentpg: agentpg:") {
		t.Errorf("stderr doubles the prefix:\n%s", res.stderr)
	}
	wantContains(t, "stdout", res.stdout, `received "hello"`, `received "bye"`)

	// So does /quit after a failed turn.
	res = invocation{stdin: "\xff\n/quit\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 1)
	wantContains(t, "stderr", res.stderr, "agentpg: 1 of 1 turn failed\n")

	res = agentpgCLI(t, "chat", "--help")
	wantContains(t, "chat --help", strings.Join(strings.Fields(res.stdout), " "), "exit status is 0 when every turn succeeded")
}

// TestChatLongLine checks that a line over the limit of a prompt is
// refused, and chat goes on with the next.
func TestChatLongLine(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	long := strings.Repeat("x", agentpg.DefaultMaxPromptBytes)
	stdin := "hello\n" + long + "y\n" + long + "\nbye\n"
	res := invocation{stdin: stdin}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 1)
	wantContains(t, "stderr", res.stderr,
		"agentpg: line of 1048577 bytes is over the limit of 1 MiB; not sent\n",
		"agentpg: 1 of 4 turns failed\n")
	wantContains(t, "stdout", res.stdout, `received "hello"`, `received "xxxxxxxx`, `received "bye"`)
}

// TestChatWaitsForLease checks that chat says why it waits when a process
// that stopped left the session held.
func TestChatWaitsForLease(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	res := invocation{stdin: "hello\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 0)
	// The lease of a run whose process died, with 2s left.
	conn, err := pgx.Connect(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), "UPDATE "+pgx.Identifier{schema, "sessions"}.Sanitize()+
		" SET lease_token = lease_token + 1, lease_run_id = gen_random_uuid(), lease_expires_at = now() + interval '2 seconds'")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	res = invocation{stdin: "again\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 0)
	wantContains(t, "stderr", res.stderr, "Session s1 is held by another run: waiting for it to end; a run whose process stopped holds it at most 1m0s (the lease TTL).")
	wantContains(t, "stdout", res.stdout, `received "again"`)
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("chat ran after %v, before the lease expired", waited)
	}
}

// TestChatAfterTools continues in chat a session whose run called tools,
// which chat cannot run: the conversation sent holds tool_use and
// tool_result blocks, which the Messages API accepts only with tools.
func TestChatAfterTools(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	toolSession(t, schema)

	res := invocation{stdin: "My name is Ada\nWhat is my name?\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "tools")
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, "Continuing session tools", "agent: Nice to meet you, Ada!", "agent: Your name is Ada")
	wantContains(t, "stderr", res.stderr, "This session used tools that chat cannot run (get_weather): they are offered to the model as unavailable.")

	res = agentpgCLI(t, "sessions", "show", "--schema", schema, "--tenant", "acme", "--identifier", "tools")
	wantCode(t, res, 0)
	wantContains(t, "sessions show", res.stdout, "Messages (8):", "Runs (3):")
	if strings.Contains(res.stdout, "failed") {
		t.Errorf("a run failed:\n%s", res.stdout)
	}
}

// TestUnavailableTool checks what the model gets if it calls a tool chat
// offers as unavailable.
func TestUnavailableTool(t *testing.T) {
	t.Parallel()
	tl := unavailableTool("get_weather")
	if tl.Name() != "get_weather" || !strings.Contains(tl.Description(), "Not available") {
		t.Errorf("tool %s: %s", tl.Name(), tl.Description())
	}
	out, err := tl.Execute(t.Context(), json.RawMessage(`{"city":"Paris"}`))
	if err == nil || out != "" || !strings.Contains(err.Error(), "get_weather is not available in agentpg chat") {
		t.Errorf("Execute = %q, %v", out, err)
	}
}
