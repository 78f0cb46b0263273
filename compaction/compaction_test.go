package compaction_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/compaction"
)

// Helpers to write histories tersely.

var text = anthropic.NewTextBlock

func call(id string) anthropic.ContentBlockParamUnion {
	return anthropic.NewToolUseBlock(id, map[string]any{"q": "x"}, "search")
}

func result(id string, bytes int) anthropic.ContentBlockParamUnion {
	return anthropic.NewToolResultBlock(id, strings.Repeat("x", bytes), false)
}

func user(blocks ...anthropic.ContentBlockParamUnion) compaction.Message {
	return compaction.Message{Role: "user", Content: blocks}
}

func assistant(blocks ...anthropic.ContentBlockParamUnion) compaction.Message {
	return compaction.Message{Role: "assistant", Content: blocks}
}

// sized sets the known token count of m.
func sized(tokens int, m compaction.Message) compaction.Message {
	m.Tokens = tokens
	return m
}

// conversation numbers msgs m0, m1, ... in order.
func conversation(msgs ...compaction.Message) []compaction.Message {
	for i := range msgs {
		msgs[i].ID = fmt.Sprintf("m%d", i)
		msgs[i].Seq = int64(i)
	}
	return msgs
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func idsOf(msgs []compaction.Message) string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return strings.Join(ids, " ")
}

func TestOptionsWithDefaults(t *testing.T) {
	got := compaction.Options{ContextWindow: 200_000}.WithDefaults()
	want := compaction.Options{
		Strategy:      compaction.StrategyHybrid,
		ContextWindow: 200_000,
		Threshold:     0.85,
		Target:        0.5,
		ProtectTokens: 40_000,
		MinPruneBytes: 1024,
	}
	if got != want {
		t.Errorf("WithDefaults() = %+v, want %+v", got, want)
	}
	if got := (compaction.Options{ContextWindow: 50_000}).WithDefaults().ProtectTokens; got != 25_000 {
		t.Errorf("ProtectTokens = %d, want 25000, capped at Target*ContextWindow", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	valid := compaction.Options{ContextWindow: 1000}
	if err := valid.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", valid, err)
	}
	for _, o := range []compaction.Options{
		{},
		{ContextWindow: -1},
		{ContextWindow: 1000, Strategy: "truncate"},
		{ContextWindow: 1000, Threshold: 1.5},
		{ContextWindow: 1000, Threshold: -0.5},
		{ContextWindow: 1000, Target: 0.9},
		{ContextWindow: 1000, Target: -0.1},
		{ContextWindow: 1000, ProtectTokens: -1},
		{ContextWindow: 1000, MinPruneBytes: 100},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
		if _, err := compaction.PlanCompaction(nil, o); err == nil {
			t.Errorf("PlanCompaction with %+v: no error", o)
		}
	}
}

func TestNeedsCompaction(t *testing.T) {
	o := compaction.Options{ContextWindow: 1000}
	for tokens, want := range map[int]bool{0: false, 849: false, 850: true, 2000: true} {
		if got := compaction.NeedsCompaction(tokens, o); got != want {
			t.Errorf("NeedsCompaction(%d) = %t, want %t", tokens, got, want)
		}
	}
	if compaction.NeedsCompaction(5000, compaction.Options{}) {
		t.Error("NeedsCompaction with invalid options = true")
	}
}

func TestEstimateTokens(t *testing.T) {
	image := anthropic.NewImageBlockBase64("image/png", strings.Repeat("A", 100_000))
	imageResult := result("t1", 4000)
	imageResult.OfToolResult.Content = append(imageResult.OfToolResult.Content, anthropic.ToolResultBlockParamContentUnion{
		OfImage: image.OfImage,
	})
	for _, tt := range []struct {
		name    string
		content []anthropic.ContentBlockParamUnion
		want    int
	}{
		{"nothing", nil, 0},
		{"text", []anthropic.ContentBlockParamUnion{text(strings.Repeat("a", 400))}, 100},
		{"rounded up", []anthropic.ContentBlockParamUnion{text(strings.Repeat("a", 401))}, 101},
		{"at least 1 per block", []anthropic.ContentBlockParamUnion{text(""), text("a")}, 2},
		{"thinking and signature", []anthropic.ContentBlockParamUnion{anthropic.NewThinkingBlock("sig1", "abcd")}, 2},
		{"redacted thinking", []anthropic.ContentBlockParamUnion{anthropic.NewRedactedThinkingBlock("12345678")}, 2},
		{"tool call", []anthropic.ContentBlockParamUnion{call("t1")}, 4}, // search + {"q":"x"}
		{"tool result", []anthropic.ContentBlockParamUnion{result("t1", 4000)}, 1000},
		{"image", []anthropic.ContentBlockParamUnion{image}, compaction.ImageTokens},
		{"image in a tool result", []anthropic.ContentBlockParamUnion{imageResult}, 1000 + compaction.ImageTokens},
	} {
		if got := compaction.EstimateTokens(tt.content); got != tt.want {
			t.Errorf("%s: EstimateTokens = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSize(t *testing.T) {
	msgs := []compaction.Message{
		user(text(strings.Repeat("a", 400))),
		sized(7, assistant(text(strings.Repeat("a", 400)))),
	}
	if got := compaction.Size(msgs); got != 107 {
		t.Errorf("Size = %d, want 107: 100 estimated, 7 known", got)
	}
}

func TestPlanCompactionInvalidHistory(t *testing.T) {
	for _, tt := range []struct {
		name    string
		history []compaction.Message
	}{
		{"first message from the assistant", conversation(assistant(text("hi")))},
		{"two user messages in a row", conversation(user(text("a")), user(text("b")))},
		{"unknown role", conversation(user(text("a")), compaction.Message{Role: "system"})},
		{"unanswered tool call", conversation(user(text("a")), assistant(call("t1")), user(text("b")))},
		{"partly answered tool calls", conversation(user(text("a")), assistant(call("t1"), call("t2")), user(result("t2", 1)))},
		{"unanswered tool call at the end", conversation(user(text("a")), assistant(call("t1")))},
		{"orphan tool result", conversation(user(text("a")), assistant(text("b")), user(result("t1", 1)))},
		{"tool result in the first message", conversation(user(result("t1", 1)))},
		{"tool result answering an older message", conversation(
			user(text("a")), assistant(call("t1")), user(result("t1", 1)), assistant(text("b")), user(result("t1", 1)))},
		{"tool call answered too late", conversation(
			user(text("a")), assistant(call("t1")), user(text("b")), assistant(text("c")), user(result("t1", 1)))},
		{"duplicate tool result", conversation(user(text("a")), assistant(call("t1")), user(result("t1", 1), result("t1", 1)))},
	} {
		_, err := compaction.PlanCompaction(tt.history, compaction.Options{ContextWindow: 1000})
		if !errors.Is(err, compaction.ErrInvalidHistory) {
			t.Errorf("%s: error %v, want ErrInvalidHistory", tt.name, err)
		}
	}
}

func TestPlanCompactionNothingToCompact(t *testing.T) {
	// A turn with a long tool loop, which has no fresh user turn to cut at.
	loop := conversation(
		user(text("q")),
		assistant(call("t1")), user(result("t1", 8000)),
		assistant(call("t2")), user(result("t2", 8000)),
		assistant(text("done")),
	)
	for _, tt := range []struct {
		name    string
		history []compaction.Message
		o       compaction.Options
	}{
		{"empty history", nil, compaction.Options{ContextWindow: 1000}},
		{"everything protected", loop, compaction.Options{ContextWindow: 200_000}},
		{"no fresh turn to cut at", loop, compaction.Options{
			Strategy: compaction.StrategySummarize, ContextWindow: 1000, ProtectTokens: 1,
		}},
		{"small tool outputs", conversation(
			user(text("q")), assistant(call("t1")), user(result("t1", 1000)),
			assistant(text("a")), user(text("q2")), assistant(text("a2")),
		), compaction.Options{Strategy: compaction.StrategyPrune, ContextWindow: 1000, ProtectTokens: 1}},
		{"prefix smaller than a summary", conversation(
			sized(compaction.SummaryBudget/2, user(text("q"))), sized(compaction.SummaryBudget/2, assistant(text("a"))),
			sized(5000, user(text("q2"))), sized(5000, assistant(text("a2"))),
		), compaction.Options{Strategy: compaction.StrategySummarize, ContextWindow: 10_000, ProtectTokens: 1}},
	} {
		plan, err := compaction.PlanCompaction(tt.history, tt.o)
		if !errors.Is(err, compaction.ErrNothingToCompact) {
			t.Errorf("%s: error %v, want ErrNothingToCompact", tt.name, err)
		}
		if len(plan.Pruned) > 0 || len(plan.Summarize) > 0 || !reflect.DeepEqual(plan.Keep, tt.history) ||
			plan.TokensAfter != plan.TokensBefore || plan.TokensBefore != compaction.Size(tt.history) {
			t.Errorf("%s: plan %+v does not keep the history as it is", tt.name, plan)
		}
	}
}

func TestPlanCompactionPrunes(t *testing.T) {
	thinking := anthropic.NewThinkingBlock("c2lnbmF0dXJl", "Let me search.")
	failed := anthropic.NewToolResultBlock("t1", strings.Repeat("x", 5000), true)
	history := conversation(
		user(text("q1")),
		assistant(thinking, call("t1"), call("t2")),
		user(failed, result("t2", 10)),
		assistant(text("a1")),
		sized(100, user(text("q2"))),
		sized(100, assistant(text("a2"), call("t3"))),
		user(result("t3", 5000)), // protected
		assistant(text("a3")),
	)
	original := encode(history)

	plan, err := compaction.PlanCompaction(history, compaction.Options{
		Strategy: compaction.StrategyPrune, ContextWindow: 100_000, ProtectTokens: 150,
	})
	if err != nil {
		t.Fatal(err)
	}
	if encode(history) != original {
		t.Error("PlanCompaction modified the history")
	}
	if got := idsOf(plan.Pruned); got != "m2" {
		t.Fatalf("Pruned = %s, want m2", got)
	}
	if len(plan.Summarize) != 0 || idsOf(plan.Keep) != idsOf(history) {
		t.Errorf("Summarize = [%s], Keep = [%s], want all kept", idsOf(plan.Summarize), idsOf(plan.Keep))
	}
	pruned := plan.Pruned[0]
	if !reflect.DeepEqual(plan.Keep[2], pruned) {
		t.Error("Keep does not hold the pruned version")
	}
	want := anthropic.NewToolResultBlock("t1", "[tool output pruned by compaction: 5000 bytes]", true)
	if got := pruned.Content[0]; encode(got) != encode(want) {
		t.Errorf("pruned result = %s, want %s", encode(got), encode(want))
	}
	if encode(pruned.Content[1]) != encode(history[2].Content[1]) {
		t.Error("a small tool result was pruned")
	}
	if wantAfter := plan.TokensBefore - 1250 + 12; plan.TokensAfter != wantAfter {
		t.Errorf("TokensAfter = %d, want %d", plan.TokensAfter, wantAfter)
	}
}

func TestPlanCompactionScalesKnownTokens(t *testing.T) {
	history := conversation(
		user(text("q1")),
		assistant(call("t1")),
		sized(2000, user(result("t1", 4000))), // estimated 1000
		assistant(text("a1")),
		user(text("q2")),
	)
	plan, err := compaction.PlanCompaction(history, compaction.Options{
		Strategy: compaction.StrategyPrune, ContextWindow: 100_000, ProtectTokens: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The placeholder is estimated at 12 tokens: 2000 * 12/1000.
	if got := plan.Pruned[0].Tokens; got != 24 {
		t.Errorf("Tokens of the pruned message = %d, want 24", got)
	}
}

func TestPlanCompactionSummarizes(t *testing.T) {
	// Five turns of 3000 tokens; the protected span is the last turn.
	var msgs []compaction.Message
	for range 5 {
		msgs = append(msgs, sized(1000, user(text("q"))), sized(2000, assistant(text("a"))))
	}
	history := conversation(msgs...)
	for _, tt := range []struct {
		name   string
		target float64
		cut    int
	}{
		// Cutting after 3 turns leaves 6000 + 2000 for the summary.
		{"shortest prefix reaching the target", 0.45, 6},
		{"longest prefix if none reaches the target", 0.1, 8},
	} {
		plan, err := compaction.PlanCompaction(history, compaction.Options{
			Strategy: compaction.StrategySummarize, ContextWindow: 20_000, Target: tt.target, ProtectTokens: 3000,
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got, want := idsOf(plan.Summarize), idsOf(history[:tt.cut]); got != want {
			t.Errorf("%s: Summarize = [%s], want [%s]", tt.name, got, want)
		}
		if got, want := idsOf(plan.Keep), idsOf(history[tt.cut:]); got != want {
			t.Errorf("%s: Keep = [%s], want [%s]", tt.name, got, want)
		}
		if want := 15_000 - 3000*tt.cut/2 + compaction.SummaryBudget; plan.TokensAfter != want {
			t.Errorf("%s: TokensAfter = %d, want %d", tt.name, plan.TokensAfter, want)
		}
	}
}

func TestPlanCompactionCutsOnlyBeforeFreshTurns(t *testing.T) {
	history := conversation(
		user(text("q1")),
		assistant(call("t1")), sized(5000, user(result("t1", 10))),
		assistant(call("t2")), sized(5000, user(result("t2", 10))),
		assistant(text("a1")),
		user(text("q2")),
		assistant(text("a2")),
	)
	plan, err := compaction.PlanCompaction(history, compaction.Options{
		Strategy: compaction.StrategySummarize, ContextWindow: 100_000, ProtectTokens: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The tool results are no places to cut; the whole first turn goes.
	if got := idsOf(plan.Keep); got != "m6 m7" {
		t.Errorf("Keep = [%s], want [m6 m7]", got)
	}
}

func TestPlanCompactionProtectsWholeTurn(t *testing.T) {
	history := conversation(
		sized(3000, user(text("q1"))),
		sized(3000, assistant(text("a1"))),
		user(text("q2")),
		assistant(call("t1")), user(result("t1", 8000)),
		assistant(call("t2")), sized(50, user(result("t2", 10))),
		sized(10, assistant(text("a2"))),
	)
	// 60 tokens reach into the tool loop of the last turn, which is then
	// protected from its prompt on: its large result stays.
	plan, err := compaction.PlanCompaction(history, compaction.Options{
		Strategy: compaction.StrategyPrune, ContextWindow: 100_000, ProtectTokens: 60,
	})
	if !errors.Is(err, compaction.ErrNothingToCompact) {
		t.Errorf("error %v, plan %+v, want ErrNothingToCompact", err, plan)
	}
}

func TestPlanCompactionHybrid(t *testing.T) {
	// Two turns with a large tool output each, then a small one.
	history := conversation(
		sized(3000, user(text("q1"))), assistant(call("t1")), user(result("t1", 8000)), sized(3000, assistant(text("a1"))),
		sized(3000, user(text("q2"))), assistant(call("t2")), user(result("t2", 8000)), sized(3000, assistant(text("a2"))),
		sized(500, user(text("q3"))), sized(500, assistant(text("a3"))),
	)
	o := compaction.Options{ContextWindow: 20_000, ProtectTokens: 1000}
	for _, tt := range []struct {
		name                    string
		target                  float64
		summarize, pruned, keep string
	}{
		// Pruned, the history is about 13000 tokens.
		{"pruning suffices", 0.7, "", "m2 m6", "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9"},
		{"pruning and summarizing", 0.5, "m0 m1 m2 m3", "m6", "m4 m5 m6 m7 m8 m9"},
	} {
		o.Target = tt.target
		plan, err := compaction.PlanCompaction(history, o)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := idsOf(plan.Summarize); got != tt.summarize {
			t.Errorf("%s: Summarize = [%s], want [%s]", tt.name, got, tt.summarize)
		}
		if got := idsOf(plan.Pruned); got != tt.pruned {
			t.Errorf("%s: Pruned = [%s], want [%s]", tt.name, got, tt.pruned)
		}
		if got := idsOf(plan.Keep); got != tt.keep {
			t.Errorf("%s: Keep = [%s], want [%s]", tt.name, got, tt.keep)
		}
		if plan.TokensAfter >= int(tt.target*20_000) {
			t.Errorf("%s: TokensAfter = %d, not under the target", tt.name, plan.TokensAfter)
		}
	}
}

func TestTranscript(t *testing.T) {
	failed := anthropic.NewToolResultBlock("t2", "permission denied", true)
	msgs := conversation(
		user(text("Read both files."), anthropic.NewImageBlockBase64("image/png", "iVBORw0KGgo=")),
		assistant(anthropic.NewThinkingBlock("sig", "secret thoughts"), anthropic.NewRedactedThinkingBlock("opaque"),
			call("t1"), call("t2")),
		user(result("t1", 100), failed),
		assistant(text("One file is unreadable.")),
	)
	want := `user: Read both files.

user: [image]

assistant: [tool call t1 search] {"q":"x"}

assistant: [tool call t2 search] {"q":"x"}

user: [tool result t1] xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…

user: [tool error t2] permission denied

assistant: One file is unreadable.

`
	if got := compaction.Transcript(msgs, 50); got != want {
		t.Errorf("Transcript =\n%s\nwant\n%s", got, want)
	}
	if got := compaction.Transcript(msgs, 0); !strings.Contains(got, strings.Repeat("x", 100)) {
		t.Errorf("Transcript with no limit truncated:\n%s", got)
	}
}

func TestFirstIntent(t *testing.T) {
	msgs := conversation(user(text("héllo"), text("wörld")), assistant(text("hi")), user(text("later")))
	for n, want := range map[int]string{0: "héllo\nwörld", 100: "héllo\nwörld", 2: "h", 3: "hé"} {
		if got := compaction.FirstIntent(msgs, n); got != want {
			t.Errorf("FirstIntent(%d) = %q, want %q", n, got, want)
		}
	}
	if got := compaction.FirstIntent(nil, 10); got != "" {
		t.Errorf("FirstIntent(nil) = %q, want empty", got)
	}
}
