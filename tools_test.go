package agentpg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

type cityInput struct {
	City string `json:"city" jsonschema:"description=City name,minLength=2"`
}

// weatherTool returns a typed tool that reports a fixed forecast and
// counts its calls.
func weatherTool(t *testing.T, calls *atomic.Int32) tool.Tool {
	t.Helper()
	weather, err := tool.NewFunc("weather", "Gives the weather of a city.",
		func(ctx context.Context, in cityInput) (string, error) {
			calls.Add(1)
			return "sunny in " + in.City, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return weather
}

// transferTool returns a typed tool that "moves money" to a city and
// counts its calls.
func transferTool(t *testing.T, calls *atomic.Int32) tool.Tool {
	t.Helper()
	transfer, err := tool.NewFunc("transfer", "Moves money.", func(_ context.Context, in cityInput) (string, error) {
		calls.Add(1)
		return "moved to " + in.City, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return transfer
}

// toolResults returns the tool_result blocks of the last message of the
// model's last request.
func toolResults(t *testing.T, model *agentpgtest.Server) []agentpgtest.ContentBlock {
	t.Helper()
	reqs := model.Requests()
	msgs := reqs[len(reqs)-1].Messages
	var results []agentpgtest.ContentBlock
	for _, b := range msgs[len(msgs)-1].Content {
		if b.Type == "tool_result" {
			results = append(results, b)
		}
	}
	return results
}

func resultText(b agentpgtest.ContentBlock) string {
	var blocks []struct{ Text string }
	if err := json.Unmarshal(b.Content, &blocks); err == nil && len(blocks) > 0 {
		return blocks[0].Text
	}
	var s string
	json.Unmarshal(b.Content, &s)
	return s
}

func TestToolTurn(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &calls)} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.TextBlock("Let me check."), agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"})),
		agentpgtest.Text("It is sunny in Paris."),
	)
	var events []string
	res, err := sess.RunWithOptions(ctx(t), "Weather in Paris?", agentpg.RunOptions{OnEvent: func(e agentpg.Event) {
		if e.Kind == agentpg.EventToolCall || e.Kind == agentpg.EventToolResult {
			events = append(events, string(e.Kind)+":"+e.ToolName+":"+e.Text)
		}
	}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Text != "It is sunny in Paris." || res.Iterations != 2 || calls.Load() != 1 {
		t.Fatalf("result %+v, %d calls", res, calls.Load())
	}
	if !slices.Equal(events, []string{"tool_call:weather:", "tool_result:weather:sunny in Paris"}) {
		t.Fatalf("events %q", events)
	}
	reqs := b.model.Requests()
	if !slices.Equal(reqs[0].ToolNames, []string{"weather"}) {
		t.Fatalf("tools offered: %q", reqs[0].ToolNames)
	}
	results := toolResults(t, b.model)
	if len(results) != 1 || results[0].ToolUseID != "toolu_1" || results[0].IsError || resultText(results[0]) != "sunny in Paris" {
		t.Fatalf("tool results sent: %+v", results)
	}

	roles, _ := conversation(t, sess)
	if !slices.Equal(roles, []string{"user", "assistant", "user", "assistant"}) {
		t.Fatalf("stored %q", roles)
	}
	ledger, err := sess.ToolCalls(ctx(t), res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != 1 || ledger[0].ToolUseID != "toolu_1" || ledger[0].Name != "weather" ||
		string(ledger[0].Input) != `{"city": "Paris"}` || ledger[0].Output != "sunny in Paris" || ledger[0].IsError ||
		ledger[0].FinishedAt.Before(ledger[0].StartedAt) {
		t.Fatalf("ledger %+v", ledger)
	}
	// The ledger is per session: another session of the tenant sees nothing.
	other := b.session(t, "acme", "user-2")
	if rows, err := other.ToolCalls(ctx(t), res.RunID); err != nil || len(rows) != 0 {
		t.Fatalf("another session reads the ledger: %v %v", rows, err)
	}
	// The next turn sends the whole tool exchange, pairs intact.
	if _, err := sess.Run(ctx(t), "thanks"); err != nil {
		t.Fatal(err)
	}
	if rejected := b.model.Rejected(); len(rejected) != 0 {
		t.Fatalf("rejected: %s", rejected[0].RejectReason)
	}
}

// The calls of one response run at once: each tool waits until all three
// have started, which only parallel execution allows.
func TestParallelToolCalls(t *testing.T) {
	t.Parallel()
	var started sync.WaitGroup
	started.Add(3)
	allStarted := make(chan struct{})
	go func() { started.Wait(); close(allStarted) }()
	slow, err := tool.NewFunc("slow", "Waits for its siblings.", func(ctx context.Context, in cityInput) (string, error) {
		started.Done()
		select {
		case <-allStarted:
			time.Sleep(200 * time.Millisecond)
			return "done " + in.City, nil
		case <-time.After(5 * time.Second):
			return "", errors.New("ran alone: calls are not parallel")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{slow} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(
			agentpgtest.ToolUse("toolu_a", "slow", map[string]any{"city": "Oslo"}),
			agentpgtest.ToolUse("toolu_b", "slow", map[string]any{"city": "Rome"}),
			agentpgtest.ToolUse("toolu_c", "slow", map[string]any{"city": "Lima"}),
		),
		agentpgtest.Text("all done"),
	)
	start := time.Now()
	if _, err := sess.Run(ctx(t), "go"); err != nil {
		t.Fatal(err)
	}
	t.Logf("three 200ms tools took %s in all", time.Since(start).Round(time.Millisecond))
	results := toolResults(t, b.model)
	var got []string
	for _, r := range results {
		got = append(got, r.ToolUseID+"="+resultText(r))
		if r.IsError {
			t.Errorf("%s failed: %s", r.ToolUseID, resultText(r))
		}
	}
	// Results come back in the order of the calls, in one user message.
	if !slices.Equal(got, []string{"toolu_a=done Oslo", "toolu_b=done Rome", "toolu_c=done Lima"}) {
		t.Fatalf("results %q", got)
	}
}

// Invalid input never reaches the tool: the model gets the violations as an
// error result and corrects itself.
func TestInvalidToolInputIsCorrectedByModel(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &calls)} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"town": "Paris", "city": 7})),
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_2", "weather", map[string]any{"city": "Paris"})),
		agentpgtest.Text("sunny"),
	)
	if _, err := sess.Run(ctx(t), "weather?"); err != nil {
		t.Fatal(err)
	}
	reqs := b.model.Requests()
	first := reqs[1].Messages[len(reqs[1].Messages)-1].Content[0]
	if !first.IsError || !strings.Contains(resultText(first), "/city") || !strings.Contains(resultText(first), "town") {
		t.Fatalf("first result: error %v, %q", first.IsError, resultText(first))
	}
	if calls.Load() != 1 {
		t.Fatalf("tool ran %d times, want once (for the valid input)", calls.Load())
	}
}

func TestToolFailuresBecomeErrorResults(t *testing.T) {
	t.Parallel()
	panicky, _ := tool.NewFunc("panicky", "Panics.", func(ctx context.Context, in cityInput) (string, error) {
		panic("boom")
	})
	sleepy, _ := tool.NewFunc("sleepy", "Sleeps past its timeout.", func(ctx context.Context, in cityInput) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, tool.WithTimeout(50*time.Millisecond))
	failing, _ := tool.NewFunc("failing", "Fails.", func(ctx context.Context, in cityInput) (string, error) {
		return "", errors.New("upstream unavailable")
	})
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{panicky, sleepy, failing} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(
			agentpgtest.ToolUse("toolu_p", "panicky", map[string]any{"city": "Oslo"}),
			agentpgtest.ToolUse("toolu_s", "sleepy", map[string]any{"city": "Oslo"}),
			agentpgtest.ToolUse("toolu_f", "failing", map[string]any{"city": "Oslo"}),
			agentpgtest.ToolUse("toolu_u", "unknown", map[string]any{}),
		),
		agentpgtest.Text("sorry, tools failed"),
	)
	res, err := sess.Run(ctx(t), "go")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"toolu_p": "panicked", "toolu_s": "timed out", "toolu_f": "upstream unavailable", "toolu_u": "unknown tool"}
	for _, r := range toolResults(t, b.model) {
		if !r.IsError || !strings.Contains(resultText(r), want[r.ToolUseID]) {
			t.Errorf("%s: error %v, %q; want an error containing %q", r.ToolUseID, r.IsError, resultText(r), want[r.ToolUseID])
		}
	}
	ledger, _ := sess.ToolCalls(ctx(t), res.RunID)
	if len(ledger) != 4 {
		t.Fatalf("ledger has %d rows", len(ledger))
	}
	for _, row := range ledger {
		if !row.IsError {
			t.Errorf("ledger row %s not marked as an error", row.ToolUseID)
		}
	}
}

func TestMaxIterations(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, &calls)}
		c.MaxIterations = 3
	})
	n := 0
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if req.LastUserText() == "stop" {
			return agentpgtest.Text("stopped")
		}
		n++
		return agentpgtest.Blocks(agentpgtest.ToolUse(fmt.Sprintf("toolu_%d", n), "weather", map[string]any{"city": "Paris"}))
	})
	sess := b.session(t, "acme", "user-1")
	_, err := sess.Run(ctx(t), "loop forever")
	if !errors.Is(err, agentpg.ErrMaxIterations) {
		t.Fatalf("err = %v, want ErrMaxIterations", err)
	}
	// The third answer's tool call is not run: no model call could read
	// its result.
	if len(b.model.Requests()) != 3 || calls.Load() != 2 {
		t.Fatalf("%d model calls, %d tool calls; want 3 and 2", len(b.model.Requests()), calls.Load())
	}
	// The failed run's tool exchange is kept for the record but not sent.
	if _, err := sess.Run(ctx(t), "stop"); err != nil {
		t.Fatal(err)
	}
	last := b.model.Requests()[3]
	if len(last.Messages) != 1 {
		t.Fatalf("the failed run leaked into the conversation: %d messages", len(last.Messages))
	}
	if got := runStatuses(t, sess); !slices.Equal(got, []string{"failed", "completed"}) {
		t.Fatalf("runs %q", got)
	}
}

// The guide's audit hook: OnToolCall reads the caller's context values and
// sees every call; an error from it stops the run.
func TestOnToolCallAudit(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &calls)} })
	type entry struct{ user, tenant, tool, input, output string }
	var audit []entry
	b.agent.OnToolCall(func(ctx context.Context, name string, input json.RawMessage, output string, err error) error {
		audit = append(audit, entry{ctx.Value("user_id").(string), ctx.Value("tenant_id").(string), name, string(input), output})
		if strings.Contains(string(input), "Atlantis") {
			return errors.New("audit refused")
		}
		return nil
	})
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"})),
		agentpgtest.Text("sunny"),
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_2", "weather", map[string]any{"city": "Atlantis"})),
	)
	callCtx := context.WithValue(context.WithValue(ctx(t), "user_id", "u-7"), "tenant_id", "acme") //nolint:staticcheck // the guide's sample uses string keys
	if _, err := sess.Run(callCtx, "Paris?"); err != nil {
		t.Fatal(err)
	}
	_, err := sess.Run(callCtx, "Atlantis?")
	if !errors.Is(err, agentpg.ErrHookRejected) || !strings.Contains(err.Error(), "audit refused") {
		t.Fatalf("err = %v", err)
	}
	want := []entry{
		{"u-7", "acme", "weather", `{"city":"Paris"}`, "sunny in Paris"},
		{"u-7", "acme", "weather", `{"city":"Atlantis"}`, "sunny in Atlantis"},
	}
	if !slices.Equal(audit, want) {
		t.Fatalf("audit %+v, want %+v", audit, want)
	}
}

func TestNestedAgents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	researcher, err := agentpg.New(agentpg.Config{
		DB: b.db, Client: b.cfg.Client, Model: "claude-haiku-4-5", SystemPrompt: "You research.", MaxAgentDepth: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	lead, err := agentpg.New(b.cfg, agentpg.WithTools(researcher.AsTool("researcher", "Researches a topic.")))
	if err != nil {
		t.Fatal(err)
	}
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if req.System == "You research." {
			return agentpgtest.Text("research on " + req.LastUserText())
		}
		if len(req.Messages) == 1 {
			return agentpgtest.Blocks(agentpgtest.ToolUse("toolu_r", "researcher", map[string]any{"task": "otters"}))
		}
		return agentpgtest.Text("summary of the research")
	})
	sess, err := lead.NewSession(ctx(t), "acme", "lead-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.Run(ctx(t), "Tell me about otters.")
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "summary of the research" {
		t.Fatalf("text %q", res.Text)
	}
	if got := resultText(toolResults(t, b.model)[0]); got != "research on otters" {
		t.Fatalf("the lead got %q from its researcher", got)
	}

	childrenPage, err := lead.ListSessions(ctx(t), "acme", agentpg.ListOptions{})
	children := childrenPage.Items
	if err != nil {
		t.Fatal(err)
	}
	var child *agentpg.Session
	for _, s := range children {
		if s.ParentID == sess.ID {
			child = s
		}
	}
	if child == nil || child.TenantID != "acme" {
		t.Fatalf("no child session under %s: %+v", sess.ID, children)
	}
	childRunsPage, err := child.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	childRuns := childRunsPage.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(childRuns) != 1 || childRuns[0].ParentRunID != res.RunID || childRuns[0].Model != "claude-haiku-4-5" ||
		childRuns[0].Usage.OutputTokens == 0 {
		t.Fatalf("child runs %+v", childRuns)
	}
}

func TestNestedAgentDepthLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.MaxAgentDepth = 2 })
	// An agent that offers itself as a tool would recurse forever.
	if err := b.agent.Executor().Registry().Register(b.agent.AsTool("self", "Delegates to itself.")); err != nil {
		t.Fatal(err)
	}
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		last := req.Messages[len(req.Messages)-1]
		if last.Content[0].Type == "tool_result" {
			return agentpgtest.Text("gave up: " + resultText(last.Content[0]))
		}
		return agentpgtest.Blocks(agentpgtest.ToolUse("toolu_self", "self", map[string]any{"task": "again"}))
	})
	sess := b.session(t, "acme", "root")
	res, err := sess.Run(ctx(t), "recurse")
	if err != nil {
		t.Fatal(err)
	}
	// Depth 0 calls depth 1, which calls depth 2, whose call is refused.
	if !strings.Contains(res.Text, "nested agents too deep") {
		t.Fatalf("text %q", res.Text)
	}
	allPage, _ := b.agent.ListSessions(ctx(t), "acme", agentpg.ListOptions{})
	all := allPage.Items
	if len(all) != 3 {
		t.Fatalf("%d sessions, want the root and two nested", len(all))
	}
	// Deleting the root deletes the nested sessions, which hold the task
	// texts the root passed down, with everything stored under them.
	if err := b.agent.DeleteSession(ctx(t), "acme", sess.ID); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"sessions", "runs", "messages", "tool_executions", "compaction_events", "message_archive"} {
		var n int
		if err := b.db.QueryRow(ctx(t), "SELECT count(*) FROM agentpg."+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows left in %s after deleting the root session", n, table)
		}
	}
}

// OnBeforeToolCall decides each valid call before it runs: a denied call
// never runs, the model is told why, and the run goes on.
func TestOnBeforeToolCallDenies(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &calls)} })
	sess := b.session(t, "acme", "user-1")
	var asked []agentpg.ToolCallRequest
	b.agent.OnBeforeToolCall(func(ctx context.Context, call agentpg.ToolCallRequest) error {
		asked = append(asked, call)
		if strings.Contains(string(call.Input), "Atlantis") {
			return errors.New("Atlantis is off limits")
		}
		return nil
	})
	var audited []error
	b.agent.OnToolCall(func(_ context.Context, _ string, _ json.RawMessage, _ string, err error) error {
		audited = append(audited, err)
		return nil
	})
	b.model.Push(
		agentpgtest.Blocks(
			agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Atlantis"}),
			agentpgtest.ToolUse("toolu_2", "weather", map[string]any{"city": "Paris"}),
			agentpgtest.ToolUse("toolu_3", "weather", map[string]any{"town": "invalid"}),
		),
		agentpgtest.Text("done"),
	)
	res, err := sess.Run(ctx(t), "weather?")
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("the tool ran %d times, want once (Paris)", calls.Load())
	}
	if len(asked) != 2 || asked[0].RunID != res.RunID || asked[0].TenantID != "acme" || asked[0].SessionID != sess.ID ||
		asked[0].ToolUseID != "toolu_1" || asked[1].Name != "weather" {
		t.Fatalf("the hook was asked %+v", asked)
	}
	results := toolResults(t, b.model)
	if !results[0].IsError || !strings.Contains(resultText(results[0]), "Atlantis is off limits") ||
		results[1].IsError || !results[2].IsError {
		t.Fatalf("results %+v", results)
	}
	if len(audited) != 3 || !errors.Is(audited[0], agentpg.ErrToolCallDenied) || audited[1] != nil {
		t.Fatalf("OnToolCall saw %v", audited)
	}
}
