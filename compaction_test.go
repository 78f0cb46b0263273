package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/tool"
)

type sizeInput struct {
	Bytes int `json:"bytes" jsonschema:"minimum=0,maximum=100000"`
}

// historyTools are the tools random histories call: one with outputs of
// any size, one that always fails.
func historyTools(t testing.TB) []tool.Tool {
	big, err := tool.NewFunc("big", "Returns that many bytes.", func(ctx context.Context, in sizeInput) (string, error) {
		return strings.Repeat("x", in.Bytes), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fail, err := tool.NewFunc("fail", "Always fails.", func(ctx context.Context, in sizeInput) (string, error) {
		return "", errors.New("tool failure")
	})
	if err != nil {
		t.Fatal(err)
	}
	return []tool.Tool{big, fail}
}

// randomResponder answers like a model would, at random: text, thinking
// then text, or one to three parallel tool calls (some invalid, some
// failing); after tool results it answers with text. Summary requests get a
// summary.
func randomResponder(rng *rand.Rand) func(agentpgtest.Request) agentpgtest.Reply {
	n := 0
	return func(req agentpgtest.Request) agentpgtest.Reply {
		n++
		if req.System == compaction.SummaryInstructions {
			return agentpgtest.Text(fmt.Sprintf("summary #%d of %d bytes", n, len(req.Body)))
		}
		last := req.Messages[len(req.Messages)-1]
		answer := strings.Repeat(fmt.Sprintf("answer %d. ", n), 1+rng.IntN(80))
		if last.Content[0].Type == "tool_result" {
			return agentpgtest.Text(answer)
		}
		switch rng.IntN(3) {
		case 0:
			return agentpgtest.Text(answer)
		case 1:
			return agentpgtest.Blocks(agentpgtest.Thinking("thinking "+answer, fmt.Sprintf("sig-%d", n)), agentpgtest.TextBlock(answer))
		}
		var calls []agentpgtest.Block
		if rng.IntN(2) == 0 {
			calls = append(calls, agentpgtest.Thinking("I will use tools", fmt.Sprintf("sig-%d", n)))
		}
		for i := range 1 + rng.IntN(3) {
			id := fmt.Sprintf("toolu_%d_%d", n, i)
			switch rng.IntN(4) {
			case 0:
				calls = append(calls, agentpgtest.ToolUse(id, "fail", map[string]any{"bytes": 1}))
			case 1:
				calls = append(calls, agentpgtest.ToolUse(id, "big", map[string]any{"bytes": -5})) // invalid
			default:
				calls = append(calls, agentpgtest.ToolUse(id, "big", map[string]any{"bytes": rng.IntN(6000)}))
			}
		}
		return agentpgtest.Blocks(calls...)
	}
}

// buildHistory runs turns random turns on a new session.
func buildHistory(t *testing.T, agent *agentpg.Agent, identifier string, turns int) *agentpg.Session {
	t.Helper()
	sess, err := agent.NewSession(ctx(t), "acme", identifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range turns {
		if _, err := sess.Run(ctx(t), fmt.Sprintf("request %d: %s", i, strings.Repeat("details ", i%7))); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	return sess
}

func messageIDs(t *testing.T, sess *agentpg.Session) []string {
	t.Helper()
	msgsPage, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	msgs := msgsPage.Items
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// Random histories compacted under every strategy and window size: the
// next request is accepted by the scripted server's validity check (so
// every tool_use/tool_result pair and every thinking block is intact), and
// archive + live = original, by id.
func TestCompactionProperties(t *testing.T) {
	t.Parallel()
	strategies := []compaction.Strategy{compaction.StrategyPrune, compaction.StrategySummarize, compaction.StrategyHybrid}
	windows := []int{1500, 3000, 6000}
	for _, strategy := range strategies {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			db := agentpgtest.DB(t)
			compacted := 0
			for _, window := range windows {
				for seed := range uint64(4) {
					model := agentpgtest.NewServer(t)
					model.SetResponder(randomResponder(rand.New(rand.NewPCG(seed, uint64(window)))))
					agent, err := agentpg.New(agentpg.Config{
						DB: db, Client: model.Client(), Model: "claude-sonnet-5-5", SystemPrompt: "Be brief.",
						Tools: historyTools(t), MaxTokens: 4096, Thinking: &agentpg.ThinkingConfig{BudgetTokens: 1024},
						ContextWindow: window,
						Compaction:    agentpg.CompactionConfig{Disabled: true, Strategy: strategy, ProtectTokens: window / 5},
					})
					if err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("w%d-s%d", window, seed)
					sess := buildHistory(t, agent, name, 16)
					before := messageIDs(t, sess)

					event, err := sess.Compact(ctx(t))
					if errors.Is(err, agentpg.ErrNothingToCompact) {
						t.Logf("%s: nothing to compact", name)
						continue
					}
					if err != nil {
						t.Fatalf("%s: Compact: %v", name, err)
					}
					compacted++
					live := messageIDs(t, sess)
					archivePage, err := sess.Archive(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
					archive := archivePage.Items
					if err != nil {
						t.Fatal(err)
					}
					union := slices.Clone(live)
					for _, m := range archive {
						if !slices.Contains(union, m.ID) {
							union = append(union, m.ID)
						}
					}
					slices.Sort(union)
					want := slices.Sorted(slices.Values(before))
					if !slices.Equal(union, want) {
						t.Fatalf("%s: archive + live has %d ids, the original %d", name, len(union), len(want))
					}
					if strategy == compaction.StrategyPrune && len(live) != len(before) {
						t.Fatalf("%s: pruning removed messages", name)
					}
					if event.TokensAfter >= event.TokensBefore {
						t.Fatalf("%s: %d tokens before, %d after", name, event.TokensBefore, event.TokensAfter)
					}
					// The next turn sends a valid conversation.
					if _, err := sess.Run(ctx(t), "and now?"); err != nil {
						t.Fatalf("%s: run after compaction: %v", name, err)
					}
					if rejected := model.Rejected(); len(rejected) > 0 {
						t.Fatalf("%s: the model rejected a request: %s", name, rejected[0].RejectReason)
					}
					if strategy != compaction.StrategyPrune && event.MessagesArchived > 0 {
						last := model.Requests()[len(model.Requests())-1]
						if !strings.Contains(last.System, "request 0: ") {
							t.Fatalf("%s: the first request is not recoverable from the summary: %q", name, last.System)
						}
					}
				}
			}
			// The generator makes histories worth compacting: a property
			// checked on nothing proves nothing.
			if total := len(windows) * 4; compacted < total*3/4 {
				t.Fatalf("only %d of %d histories compacted", compacted, total)
			}
		})
	}
}

// A long session compacts itself before its requests outgrow the window,
// and stays valid throughout.
func TestAutomaticCompactionBoundsRequests(t *testing.T) {
	t.Parallel()
	const window = 12000
	b := setup(t, func(c *agentpg.Config) {
		c.ContextWindow = window
		c.Tools = historyTools(t)
		c.MaxTokens = 4096
		c.Thinking = &agentpg.ThinkingConfig{BudgetTokens: 1024}
	})
	b.model.SetResponder(randomResponder(rand.New(rand.NewPCG(7, 7))))
	var events []*agentpg.CompactionEvent
	b.agent.OnAfterCompaction(func(ctx context.Context, e *agentpg.CompactionEvent) error {
		events = append(events, e)
		return nil
	})
	sess := buildHistory(t, b.agent, "long", 60)

	if rejected := b.model.Rejected(); len(rejected) > 0 {
		t.Fatalf("rejected: %s", rejected[0].RejectReason)
	}
	if len(events) == 0 {
		t.Fatal("60 turns in a small window never compacted")
	}
	for _, e := range events {
		if e.Trigger != "auto" || e.TokensAfter >= e.TokensBefore || e.SessionID != sess.ID {
			t.Fatalf("event %+v", e)
		}
	}
	// Past the first compaction no request came near the window.
	largest := 0
	for _, req := range b.model.Requests()[len(b.model.Requests())/2:] {
		if req.System == compaction.SummaryInstructions {
			continue
		}
		largest = max(largest, len(req.Body)/4)
	}
	if largest > window {
		t.Fatalf("a request of ~%d tokens in a %d-token window", largest, window)
	}
	stats, err := sess.CompactionStats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Compactions != len(events) || stats.ArchivedMessages == 0 || stats.LastCompactedAt.IsZero() ||
		stats.ContextWindow != window || stats.ContextTokens <= 0 || stats.ContextTokens > window {
		t.Fatalf("stats %+v after %d compactions", stats, len(events))
	}
	// A fresh load of the session reads the summary and the live tail only.
	again, err := b.agent.LoadSession(ctx(t), "acme", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Run(ctx(t), "still there?"); err != nil {
		t.Fatal(err)
	}
	last := b.model.Requests()[len(b.model.Requests())-1]
	if !strings.Contains(last.System, "request 0: ") || len(last.Messages) >= 2*60 {
		t.Fatalf("fresh load sent %d messages, system %q", len(last.Messages), last.System)
	}
}

// longAnswers answers every prompt with about 500 tokens, and summary
// requests with summary.
func longAnswers(summary agentpgtest.Reply) func(agentpgtest.Request) agentpgtest.Reply {
	return func(req agentpgtest.Request) agentpgtest.Reply {
		if req.System == compaction.SummaryInstructions {
			return summary
		}
		return agentpgtest.Text(strings.Repeat("a long answer. ", 135))
	}
}

func TestCompactionHooks(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.ContextWindow = 20000
		c.Compaction = agentpg.CompactionConfig{Disabled: true, Strategy: compaction.StrategySummarize}
	})
	b.model.SetResponder(longAnswers(agentpgtest.Text("the user asked many things")))
	sess := buildHistory(t, b.agent, "hooks", 24)
	errNotNow := errors.New("not during business hours")
	refuse := true
	var after []*agentpg.CompactionEvent
	b.agent.OnBeforeCompaction(func(ctx context.Context, e *agentpg.CompactionEvent) error {
		if e.Strategy != compaction.StrategySummarize || e.MessagesArchived == 0 || e.TokensBefore == 0 {
			t.Errorf("planned event %+v", e)
		}
		if refuse {
			return errNotNow
		}
		return nil
	})
	b.agent.OnAfterCompaction(func(ctx context.Context, e *agentpg.CompactionEvent) error {
		after = append(after, e)
		return nil
	})
	before := messageIDs(t, sess)
	if _, err := sess.Compact(ctx(t)); !errors.Is(err, errNotNow) || !errors.Is(err, agentpg.ErrHookRejected) {
		t.Fatalf("err = %v", err)
	}
	if got := messageIDs(t, sess); !slices.Equal(got, before) || len(after) != 0 {
		t.Fatalf("a cancelled compaction changed the session: %d messages, %d events", len(got), len(after))
	}
	refuse = false
	event, err := sess.Compact(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0] != event || event.Usage.OutputTokens == 0 || event.MessagesArchived == 0 || event.Trigger != "manual" {
		t.Fatalf("event %+v, after hooks %d", event, len(after))
	}
	stats, err := sess.CompactionStats(ctx(t))
	if err != nil || stats.Compactions != 1 || !stats.HasSummary || stats.ArchivedMessages != event.MessagesArchived {
		t.Fatalf("stats %+v, %v", stats, err)
	}
}

// A process killed during compaction (here, while the summary is being
// written by the model) leaves the session as it was, and usable.
func TestKilledDuringCompaction(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.ContextWindow = 20000
		c.Compaction.Disabled = true
	})
	b.model.SetResponder(longAnswers(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("never")}, Delay: time.Minute}))
	sess := buildHistory(t, b.agent, "crash", 24)
	before := messageIDs(t, sess)

	child := helperProcess(t, b, sess.ID, "compact")
	waitFor(t, func() bool {
		reqs := b.model.Requests()
		return reqs[len(reqs)-1].System == compaction.SummaryInstructions
	})
	child.kill(t)

	if got := messageIDs(t, sess); !slices.Equal(got, before) {
		t.Fatalf("the killed compaction changed the messages")
	}
	stats, err := sess.CompactionStats(ctx(t))
	if err != nil || stats.Compactions != 0 || stats.ArchivedMessages != 0 {
		t.Fatalf("stats %+v, %v", stats, err)
	}
	b.model.SetResponder(agentpgtest.Echo)
	if _, err := sess.Run(ctx(t), "are we fine?"); err != nil {
		t.Fatalf("run after the kill: %v", err)
	}
	if rejected := b.model.Rejected(); len(rejected) > 0 {
		t.Fatalf("rejected: %s", rejected[0].RejectReason)
	}
}

// Near the threshold an estimate is not good enough: the count_tokens
// endpoint decides. Far from it, the estimate stands alone.
func TestCountTokensNearThreshold(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		reported  int64 // the input tokens the first answer reports
		wantCount bool
	}{
		"near the threshold": {reported: 850, wantCount: true},
		"far below":          {reported: 100, wantCount: false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *agentpg.Config) { c.ContextWindow = 1000 })
			var compactions int
			b.agent.OnBeforeCompaction(func(context.Context, *agentpg.CompactionEvent) error {
				compactions++
				return nil
			})
			b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
				Usage: &agentpgtest.Usage{InputTokens: tc.reported, OutputTokens: 1}})
			sess := b.session(t, "acme", "user-1")
			for _, prompt := range []string{"one", "two"} {
				if _, err := sess.Run(ctx(t), prompt); err != nil {
					t.Fatal(err)
				}
			}
			counted := 0
			for _, req := range b.model.Requests() {
				if strings.HasSuffix(req.Path, "/count_tokens") {
					counted++
				}
			}
			if (counted > 0) != tc.wantCount {
				t.Fatalf("%d count_tokens requests", counted)
			}
			// The exact count (a few dozen tokens) shows no compaction is due.
			if compactions != 0 {
				t.Fatalf("%d compactions", compactions)
			}
		})
	}
}

func TestExtendedContextWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.ExtendedContext = true })
	sessions := map[string]*agentpg.Session{"claude-sonnet-5-5": b.session(t, "acme", "sonnet-5-5")}
	for _, model := range []string{"claude-sonnet-4-6", "claude-haiku-4-5"} {
		sess, err := b.agent.NewSession(ctx(t), "acme", model, &agentpg.SessionOptions{Model: model})
		if err != nil {
			t.Fatal(err)
		}
		sessions[model] = sess
	}
	for model, want := range map[string]struct {
		beta   bool // the 1M window is an option asked for with a beta header
		window int
	}{
		"claude-sonnet-5-5": {beta: false, window: agentpg.ExtendedContextWindow}, // Claude 5: 1M natively
		"claude-sonnet-4-6": {beta: true, window: agentpg.ExtendedContextWindow},
		"claude-haiku-4-5":  {beta: false, window: agentpg.DefaultContextWindow},
	} {
		sess := sessions[model]
		if _, err := sess.Run(ctx(t), "hello"); err != nil {
			t.Fatal(err)
		}
		reqs := b.model.Requests()
		if got := reqs[len(reqs)-1].Header.Get("Anthropic-Beta"); strings.Contains(got, "context-1m") != want.beta {
			t.Errorf("%s: beta header %q", model, got)
		}
		stats, err := sess.CompactionStats(ctx(t))
		if err != nil || stats.ContextWindow != want.window {
			t.Errorf("%s: window %+v, %v; want %d", model, stats, err, want.window)
		}
	}
}
