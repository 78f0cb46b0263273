package agentpg_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// rawTool is a tool whose output and input are whatever the test says.
type rawTool struct {
	output string
	err    error
	calls  atomic.Int32
}

func (t *rawTool) Name() string        { return "raw" }
func (t *rawTool) Description() string { return "Returns raw bytes." }
func (t *rawTool) InputSchema() tool.ToolSchema {
	return tool.ToolSchema{Type: "object", Properties: map[string]tool.PropertyDef{"filter": {Type: "string"}}}
}
func (t *rawTool) Execute(context.Context, json.RawMessage) (string, error) {
	t.calls.Add(1)
	return t.output, t.err
}

// Text PostgreSQL refuses (NUL, invalid UTF-8) from a tool's output or
// error, the model's answer or a tool input is made storable: the run
// completes, the ledger row is written, and the model is told what was
// replaced.
func TestUnstorableTextIsMadeStorable(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		tool   *rawTool
		input  string
		answer string
	}{
		"NUL in output":          {tool: &rawTool{output: "bin\x00ary"}},
		"invalid UTF-8 output":   {tool: &rawTool{output: "caf\xe9 latin-1"}},
		"NUL in error":           {tool: &rawTool{err: errors.New("bad\x00error")}},
		"invalid UTF-8 in error": {tool: &rawTool{err: errors.New("bad \xff error")}},
		"NUL in tool input":      {tool: &rawTool{output: "ok"}, input: `{"filter":"a\u0000b"}`},
		"NUL in the answer":      {tool: &rawTool{output: "ok"}, answer: "the answer\x00with NUL"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := tc.tool
			b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{raw} })
			input := tc.input
			if input == "" {
				input = `{"filter":"x"}`
			}
			answer := tc.answer
			if answer == "" {
				answer = "done"
			}
			b.model.Push(
				agentpgtest.Blocks(agentpgtest.Block{Type: "tool_use", ID: "toolu_1", Name: "raw", Input: json.RawMessage(input)}),
				agentpgtest.Text(answer),
			)
			sess := b.session(t, "acme", "user-1")
			res, err := sess.Run(ctx(t), "go")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if raw.calls.Load() != 1 {
				t.Fatalf("tool ran %d times", raw.calls.Load())
			}
			ledger, err := sess.ToolCalls(ctx(t), res.RunID)
			if err != nil || len(ledger) != 1 {
				t.Fatalf("ledger %+v, %v", ledger, err)
			}
			sent := resultText(toolResults(t, b.model)[0])
			if tc.tool.output != "ok" {
				if !strings.Contains(sent, "replaced by U+FFFD") || ledger[0].Output != sent {
					t.Fatalf("the model was sent %q, the ledger has %q", sent, ledger[0].Output)
				}
			}
			_, texts := conversation(t, sess)
			for _, s := range append(texts, ledger[0].Output, string(ledger[0].Input)) {
				if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
					t.Fatalf("stored %q", s)
				}
			}
			// The session goes on.
			b.model.Push(agentpgtest.Text("again"))
			if _, err := sess.Run(ctx(t), "next"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// OnBeforeMessage is the first to see a prompt: near the compaction
// threshold a refused prompt reaches neither count_tokens nor a table.
func TestRefusedPromptLeavesNoTrace(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.ContextWindow = 1000 })
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
		Usage: &agentpgtest.Usage{InputTokens: 850, OutputTokens: 1}})
	sess := b.session(t, "acme", "user-1")
	if _, err := sess.Run(ctx(t), "one"); err != nil {
		t.Fatal(err)
	}
	b.agent.OnBeforeMessage(func(_ context.Context, messages []any) error {
		if strings.Contains(messages[len(messages)-1].(agentpg.Message).Text(), "4111") {
			return errors.New("PII detected - request blocked")
		}
		return nil
	})
	before := len(b.model.Requests())
	_, err := sess.Run(ctx(t), "my card is 4111 1111 1111 1111")
	if !errors.Is(err, agentpg.ErrHookRejected) {
		t.Fatalf("err = %v, want ErrHookRejected", err)
	}
	for _, req := range b.model.Requests()[before:] {
		t.Errorf("the refused prompt reached %s", req.Path)
	}
	var stored int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.messages WHERE content::text LIKE '%4111%'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Fatalf("the refused prompt is stored %d times", stored)
	}
	// A prompt the hook accepts is counted (near the threshold) and sent.
	if _, err := sess.Run(ctx(t), "two"); err != nil {
		t.Fatal(err)
	}
	if n := len(b.model.Requests()) - before; n != 2 {
		t.Fatalf("%d requests for an accepted prompt near the threshold, want count_tokens and messages", n)
	}
}

// A tool input that is not valid JSON (cut, or nested past the decoder's
// limit) never runs the tool, even when {} would pass its schema; the
// ledger records what the model sent.
func TestMalformedToolInputNeverRuns(t *testing.T) {
	t.Parallel()
	for name, input := range map[string]string{
		"cut":         `{"filter": "a`,
		"not JSON":    `filter=a`,
		"too deep":    `{"filter":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
		"trailing":    `{"filter":"a"} {}`,
		"empty input": ` `,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := &rawTool{output: "ran"}
			b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{raw} })
			b.model.Push(
				agentpgtest.Blocks(agentpgtest.Block{Type: "tool_use", ID: "toolu_1", Name: "raw", Input: json.RawMessage(input)}),
				agentpgtest.Text("understood"),
			)
			sess := b.session(t, "acme", "user-1")
			res, err := sess.Run(ctx(t), "go")
			if err != nil {
				t.Fatal(err)
			}
			if raw.calls.Load() != 0 {
				t.Fatal("the tool ran with a malformed input")
			}
			result := toolResults(t, b.model)[0]
			if !result.IsError || !strings.Contains(resultText(result), "JSON") {
				t.Fatalf("the model was told %q (error %v)", resultText(result), result.IsError)
			}
			ledger, err := sess.ToolCalls(ctx(t), res.RunID)
			if err != nil || len(ledger) != 1 {
				t.Fatalf("ledger %+v, %v", ledger, err)
			}
			var recorded string
			if err := json.Unmarshal(ledger[0].Input, &recorded); err != nil || recorded != input {
				t.Fatalf("the ledger recorded %.80s, not the model's input", ledger[0].Input)
			}
		})
	}
}

// A panic in a hook or in OnEvent fails the run with the reason and
// releases the session at once.
func TestPanickingCallbackReleasesSession(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		register func(*agentpg.Agent)
		opts     agentpg.RunOptions
	}{
		"OnBeforeMessage": {register: func(a *agentpg.Agent) {
			a.OnBeforeMessage(func(context.Context, []any) error { panic("before boom") })
		}},
		"OnAfterMessage": {register: func(a *agentpg.Agent) {
			a.OnAfterMessage(func(context.Context, any) error { panic("after boom") })
		}},
		"OnEvent": {opts: agentpg.RunOptions{OnEvent: func(agentpg.Event) { panic("event boom") }}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sess := b.session(t, "acme", "user-1")
			a := b.another(t)
			if tc.register != nil {
				tc.register(a)
			}
			panicky, err := a.LoadSession(ctx(t), "acme", sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, err = panicky.RunWithOptions(ctx(t), "hello", tc.opts)
			if !errors.Is(err, agentpg.ErrCallbackPanic) || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("err = %v, want ErrCallbackPanic with the value", err)
			}
			runs := runStatuses(t, sess)
			if len(runs) != 1 || runs[0] != "failed" {
				t.Fatalf("runs %q", runs)
			}
			if _, err := sess.RunWithOptions(ctx(t), "again", agentpg.RunOptions{NoWait: true}); err != nil {
				t.Fatalf("the session stayed locked: %v", err)
			}
		})
	}
}

// Strings PostgreSQL would refuse, or that would overflow an index, are
// refused at the boundary with ErrInvalidArgument.
func TestBadStringsAreInvalidArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	long := strings.Repeat("t", agentpg.MaxTenantIDBytes+1)
	for name, call := range map[string]func() error{
		"NUL in prompt": func() error { _, err := sess.Run(ctx(t), "hi\x00there"); return err },
		"invalid UTF-8 prompt": func() error {
			_, err := sess.Run(ctx(t), "hi \xff")
			return err
		},
		"NUL in tenant": func() error { _, err := b.agent.NewSession(ctx(t), "ac\x00me", "u", nil); return err },
		"invalid UTF-8 tenant": func() error {
			_, err := b.agent.NewSession(ctx(t), "ac\xffme", "u", nil)
			return err
		},
		"10,000-byte tenant": func() error {
			_, err := b.agent.NewSession(ctx(t), strings.Repeat("t", 10000), "u", nil)
			return err
		},
		"tenant over the limit": func() error { _, err := b.agent.LoadSessionByIdentifier(ctx(t), long, "u"); return err },
		"control character in identifier": func() error {
			_, err := b.agent.NewSession(ctx(t), "acme", "user\x1b[2J", nil)
			return err
		},
		"NUL in identifier": func() error { _, err := b.agent.LoadSessionByIdentifier(ctx(t), "acme", "u\x00"); return err },
		"invalid UTF-8 identifier": func() error {
			_, err := b.agent.NewSession(ctx(t), "acme", "u\xc3", nil)
			return err
		},
		"huge identifier": func() error {
			_, err := b.agent.NewSession(ctx(t), "acme", strings.Repeat("i", agentpg.MaxIdentifierBytes+1), nil)
			return err
		},
		"NUL in metadata": func() error {
			_, err := b.agent.NewSession(ctx(t), "acme", "m1", &agentpg.SessionOptions{Metadata: map[string]any{"k": "v\x00"}})
			return err
		},
		"NUL in a metadata key": func() error {
			_, err := b.agent.NewSession(ctx(t), "acme", "m2", &agentpg.SessionOptions{Metadata: map[string]any{"k\x00": 1}})
			return err
		},
		"huge metadata": func() error {
			big := map[string]any{"k": strings.Repeat("x", agentpg.MaxMetadataBytes)}
			_, err := b.agent.NewSession(ctx(t), "acme", "m3", &agentpg.SessionOptions{Metadata: big})
			return err
		},
		"tenant in ListSessions": func() error {
			_, err := b.agent.ListSessions(ctx(t), "a\x00", agentpg.ListOptions{})
			return err
		},
		"tenant in DeleteSession": func() error { return b.agent.DeleteSession(ctx(t), long, sess.ID) },
	} {
		err := call()
		if !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
		} else if strings.Contains(err.Error(), "SQLSTATE") {
			t.Errorf("%s: a raw PostgreSQL error: %v", name, err)
		}
	}
}

// A failed model call's tokens are counted on the run, and a refusal is
// stored with its failed run. Retries are off, so that the cut stream
// fails its run: TestRetryBudgetSpent counts the tokens of retried calls.
func TestFailedRunsRecordWhatTheyCost(t *testing.T) {
	t.Parallel()
	b := setup(t, noRetries)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("a long answer cut short")},
		Usage: &agentpgtest.Usage{InputTokens: 1500, OutputTokens: 3}, CutAfter: 4})
	if _, err := sess.Run(ctx(t), "cut"); !errors.Is(err, agentpg.ErrIncompleteResponse) {
		t.Fatalf("err = %v, want ErrIncompleteResponse", err)
	}
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("I can't help with that.")}, StopReason: "refusal"})
	if _, err := sess.Run(ctx(t), "refuse"); !errors.Is(err, agentpg.ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	runsPage, err := sess.Runs(ctx(t), agentpg.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cut, refused := runsPage.Items[0], runsPage.Items[1]
	if cut.Status != "failed" || cut.Usage.InputTokens != 1500 || cut.Iterations != 1 {
		t.Fatalf("the cut run records %+v", cut)
	}
	if refused.Status != "failed" || refused.Usage.OutputTokens == 0 {
		t.Fatalf("the refused run records %+v", refused)
	}
	roles, texts := conversation(t, sess)
	want := []string{"cut", "refuse", "I can't help with that."}
	if strings.Join(texts, "|") != strings.Join(want, "|") || roles[2] != "assistant" {
		t.Fatalf("stored %q %q, want %q", roles, texts, want)
	}
	// Neither failed run is in the conversation.
	b.model.Push(agentpgtest.Text("fine"))
	if _, err := sess.Run(ctx(t), "next"); err != nil {
		t.Fatal(err)
	}
	if last := b.model.Requests()[len(b.model.Requests())-1]; len(last.Messages) != 1 {
		t.Fatalf("failed runs leaked into the conversation: %d messages sent", len(last.Messages))
	}
}
