package redact_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/redact"
	"github.com/agentpg/agentpg/tool"
)

type lookupInput struct {
	Name string `json:"name"`
}

// BlockPII installed on a real agent stops a prompt holding PII before
// the model sees it or a table keeps it, and stops a run whose tool
// returns PII before the result is sent.
func TestBlockPIIOnAgent(t *testing.T) {
	t.Parallel()
	lookup, err := tool.NewFunc("lookup", "Looks a customer up.", func(_ context.Context, in lookupInput) (string, error) {
		return in.Name + " can be reached at ada@example.com", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db := agentpgtest.DB(t)
	model := agentpgtest.NewServer(t)
	agent, err := agentpg.New(agentpg.Config{
		DB: db, Client: model.Client(), Model: "claude-sonnet-5-5",
		SystemPrompt: "You are a test agent.", Tools: []tool.Tool{lookup},
	})
	if err != nil {
		t.Fatal(err)
	}
	agent.OnBeforeMessage(redact.BlockPII())
	ctx := t.Context()
	sess, err := agent.NewSession(ctx, "acme", "user-1", nil)
	if err != nil {
		t.Fatal(err)
	}

	model.Push(agentpgtest.Text("Hello."))
	if _, err := sess.Run(ctx, "Hi, I run version 1.2.3.4 since 2026-12-01."); err != nil {
		t.Fatalf("a clean prompt: %v", err)
	}

	before := len(model.Requests())
	_, err = sess.Run(ctx, "My card is 4111 1111 1111 1111.")
	if !errors.Is(err, agentpg.ErrHookRejected) || !errors.Is(err, redact.ErrPIIDetected) {
		t.Fatalf("err = %v, want ErrHookRejected and ErrPIIDetected", err)
	}
	if strings.Contains(err.Error(), "4111") {
		t.Errorf("the error %q holds the card number", err)
	}
	if n := len(model.Requests()) - before; n != 0 {
		t.Errorf("the refused prompt reached the model in %d requests", n)
	}
	var stored int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM agentpg.messages WHERE content::text LIKE '%4111%'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Errorf("the refused prompt is stored %d times", stored)
	}

	// The tool's result holds an email address: the run stops before
	// sending it back to the model.
	model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "lookup", map[string]any{"name": "Ada"})))
	before = len(model.Requests())
	_, err = sess.Run(ctx, "How do I reach Ada?")
	var detected *redact.DetectedError
	if !errors.As(err, &detected) || !slices.Equal(detected.Kinds, []string{redact.KindEmail}) {
		t.Fatalf("err = %v, want a DetectedError for an email", err)
	}
	if n := len(model.Requests()) - before; n != 1 {
		t.Errorf("%d requests, want 1: the tool result must not be sent", n)
	}
}
