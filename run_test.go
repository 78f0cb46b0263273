package agentpg_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

func TestRunHappyPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Text("Hello, Ada."), agentpgtest.Text("You are Ada."))

	res, err := sess.Run(ctx(t), "Hi, I am Ada.")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Text != "Hello, Ada." || res.StopReason != "end_turn" || res.RunID == "" || res.Iterations != 1 {
		t.Fatalf("result = %+v", res)
	}
	if u := res.Usage; u.InputTokens+u.CacheCreationInputTokens+u.CacheReadInputTokens == 0 || u.OutputTokens == 0 {
		t.Fatalf("usage not recorded: %+v", res.Usage)
	}

	// A session loaded afresh continues the conversation from the database.
	again, err := b.agent.LoadSessionByIdentifier(ctx(t), "acme", "user-1")
	if err != nil {
		t.Fatalf("LoadSessionByIdentifier: %v", err)
	}
	if _, err := again.Run(ctx(t), "Who am I?"); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	reqs := b.model.Requests()
	if len(reqs) != 2 {
		t.Fatalf("model got %d requests, want 2", len(reqs))
	}
	second := reqs[1]
	var sent []string
	for _, m := range second.Messages {
		sent = append(sent, m.Role+":"+m.Content[0].Text)
	}
	want := []string{"user:Hi, I am Ada.", "assistant:Hello, Ada.", "user:Who am I?"}
	if !slices.Equal(sent, want) {
		t.Fatalf("second request sent %q, want %q", sent, want)
	}
	if second.System != "You are a test agent." || !second.Stream {
		t.Fatalf("system %q, stream %v", second.System, second.Stream)
	}
	if second.CacheBreakpoints != 2 {
		t.Fatalf("cache breakpoints = %d, want 2 (system prompt and conversation tail)", second.CacheBreakpoints)
	}

	roles, texts := conversation(t, sess)
	if !slices.Equal(roles, []string{"user", "assistant", "user", "assistant"}) || texts[3] != "You are Ada." {
		t.Fatalf("stored %q %q", roles, texts)
	}
	runsPage, err := sess.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	runs := runsPage.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Status != "completed" || runs[0].Usage != res.Usage || runs[0].FinishedAt.IsZero() {
		t.Fatalf("runs = %+v", runs)
	}
	// The second request repeats the first's prefix, which the server
	// reports as read from the prompt cache; the run records it.
	if runs[1].Usage.CacheReadInputTokens == 0 {
		t.Fatalf("cache read tokens not recorded: %+v", runs[1].Usage)
	}
}

func TestRunStreamsDeltas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	answer := strings.Repeat("streaming answers arrive in pieces. ", 8)
	b.model.Push(agentpgtest.Text(answer))

	var deltas []string
	res, err := sess.RunWithOptions(ctx(t), "Tell me something long.", agentpg.RunOptions{
		OnEvent: func(e agentpg.Event) {
			if e.Kind == agentpg.EventText {
				deltas = append(deltas, e.Text)
			}
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(deltas) < 2 {
		t.Fatalf("got %d text deltas, want several", len(deltas))
	}
	if got := strings.Join(deltas, ""); got != answer || res.Text != answer {
		t.Fatalf("deltas joined = %q, result %q, want %q", got, res.Text, answer)
	}
}

func TestRunThinkingBlocksRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.MaxTokens = 8000
		c.Thinking = &agentpg.ThinkingConfig{BudgetTokens: 2048}
	})
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.Thinking("Let me add 2 and 2.", "sig-abc123"), agentpgtest.TextBlock("4")),
		agentpgtest.Text("8"),
	)

	var thinking strings.Builder
	res, err := sess.RunWithOptions(ctx(t), "2+2?", agentpg.RunOptions{OnEvent: func(e agentpg.Event) {
		if e.Kind == agentpg.EventThinking {
			thinking.WriteString(e.Text)
		}
	}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Text != "4" || thinking.String() != "Let me add 2 and 2." {
		t.Fatalf("text %q, thinking %q", res.Text, thinking.String())
	}
	if _, err := sess.Run(ctx(t), "Double it."); err != nil {
		t.Fatalf("second Run: %v", err)
	}

	reqs := b.model.Requests()
	if !reqs[0].Thinking || reqs[0].ThinkingBudget != 2048 {
		t.Fatalf("thinking not requested: %+v", reqs[0])
	}
	sentBack := reqs[1].Messages[1].Content[0]
	if sentBack.Type != "thinking" || sentBack.Thinking != "Let me add 2 and 2." || sentBack.Signature != "sig-abc123" {
		t.Fatalf("thinking block sent back as %+v", sentBack)
	}
	msgsPage, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	msgs := msgsPage.Items
	if err != nil {
		t.Fatal(err)
	}
	stored := msgs[1].Content[0].OfThinking
	if stored == nil || stored.Signature != "sig-abc123" {
		t.Fatalf("stored thinking block = %+v", msgs[1].Content[0])
	}
}
