package compaction_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/compaction"
)

// The property tests plan the compaction of random valid histories with
// every strategy, at several windows and with random options, and check
// every plan against the invariants. Each seed runs in parallel.
const (
	propertySeeds     = 4
	propertyHistories = 500 // per seed
)

var (
	propertyWindows    = []int{2_000, 8_000, 32_000}
	propertyStrategies = []compaction.Strategy{compaction.StrategyPrune, compaction.StrategySummarize, compaction.StrategyHybrid}
)

func TestPlanCompactionProperties(t *testing.T) {
	for seed := uint64(1); seed <= propertySeeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			// twins generates a copy of each history, to detect changes.
			histories, twins := newGenerator(seed), newGenerator(seed)
			options := rand.New(rand.NewPCG(seed, 1))
			pruned := make(map[compaction.Strategy]int)
			summarized := make(map[compaction.Strategy]int)
			for n := range propertyHistories {
				c := checker{history: histories.history()}
				c.sizes = sizesOf(c.history)
				for _, window := range propertyWindows {
					o := compaction.Options{
						ContextWindow: window,
						Target:        pick(options, 0, 0.2),
						ProtectTokens: pick(options, 0, 200, 1500),
						MinPruneBytes: pick(options, 0, 256, 3000),
					}
					for _, strategy := range propertyStrategies {
						o.Strategy = strategy
						plan, err := compaction.PlanCompaction(c.history, o)
						if err := c.check(o, plan, err); err != nil {
							t.Fatalf("seed %d, history %d, %+v: %v", seed, n, o, err)
						}
						if o.Strategy == compaction.StrategyPrune {
							c.pruned = plan.Keep
						}
						pruned[o.Strategy] += min(1, len(plan.Pruned))
						summarized[o.Strategy] += min(1, len(plan.Summarize))
					}
				}
				if !reflect.DeepEqual(c.history, twins.history()) {
					t.Fatalf("seed %d, history %d was modified", seed, n)
				}
			}
			// Guard against histories that would not exercise a strategy.
			plans := propertyHistories * len(propertyWindows)
			t.Logf("%d plans per strategy; pruning: %v; summarizing: %v", plans, pruned, summarized)
			for _, s := range []compaction.Strategy{compaction.StrategyPrune, compaction.StrategyHybrid} {
				if pruned[s] < plans/10 {
					t.Errorf("only %d of %d %s plans prune", pruned[s], plans, s)
				}
			}
			for _, s := range []compaction.Strategy{compaction.StrategySummarize, compaction.StrategyHybrid} {
				if summarized[s] < plans/10 {
					t.Errorf("only %d of %d %s plans summarize", summarized[s], plans, s)
				}
			}
		})
	}
}

// generator makes random valid histories.
type generator struct {
	r *rand.Rand
}

func newGenerator(seed uint64) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, 0))}
}

// history returns a conversation of a few turns, each a user prompt, a loop
// of tool calls and an answer, the last turn possibly unfinished.
func (g *generator) history() []compaction.Message {
	var h []compaction.Message
	add := func(role string, content []anthropic.ContentBlockParamUnion) {
		h = append(h, compaction.Message{Role: role, Content: content})
	}
	turns := 1 + g.r.IntN(8)
	for turn := range turns {
		add("user", g.prompt())
		for range g.r.IntN(4) {
			calls := g.calls()
			add("assistant", calls)
			add("user", g.results(calls))
		}
		if turn == turns-1 && g.r.IntN(4) == 0 {
			break // awaiting the model
		}
		add("assistant", append(g.thinking(), anthropic.NewTextBlock(g.text(20, 600))))
	}
	for i := range h {
		h[i].ID = fmt.Sprintf("msg_%d", i)
		h[i].Seq = int64(i + 1)
		if g.r.IntN(4) == 0 {
			// A known count, off the estimate by up to 50%.
			h[i].Tokens = 1 + compaction.EstimateTokens(h[i].Content)*(50+g.r.IntN(101))/100
		}
	}
	return h
}

func (g *generator) prompt() []anthropic.ContentBlockParamUnion {
	content := []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(g.text(10, 400))}
	if g.r.IntN(10) == 0 {
		content = append(content, anthropic.NewImageBlockBase64("image/png", "iVBORw0KGgo="))
	}
	return content
}

// thinking returns nothing, a thinking block or a redacted one.
func (g *generator) thinking() []anthropic.ContentBlockParamUnion {
	switch g.r.IntN(4) {
	case 0:
		return []anthropic.ContentBlockParamUnion{anthropic.NewRedactedThinkingBlock(g.signature())}
	case 1, 2:
		return []anthropic.ContentBlockParamUnion{anthropic.NewThinkingBlock(g.signature(), g.text(10, 800))}
	}
	return nil
}

// calls returns the content of an assistant message making 1 to 3 parallel
// tool calls, with optional thinking and text before.
func (g *generator) calls() []anthropic.ContentBlockParamUnion {
	content := g.thinking()
	if g.r.IntN(2) == 0 {
		content = append(content, anthropic.NewTextBlock(g.text(10, 200)))
	}
	for range 1 + g.r.IntN(3) {
		id := fmt.Sprintf("toolu_%016x", g.r.Uint64())
		input := map[string]any{"path": g.text(5, 40), "limit": g.r.IntN(1000)}
		content = append(content, anthropic.NewToolUseBlock(id, input, pick(g.r, "read_file", "grep", "run")))
	}
	return content
}

// results answers the tool calls of an assistant message, in any order,
// with outputs small and large, some errors, some images and sometimes a
// user remark after them.
func (g *generator) results(calls []anthropic.ContentBlockParamUnion) []anthropic.ContentBlockParamUnion {
	var content []anthropic.ContentBlockParamUnion
	for _, c := range calls {
		if c.OfToolUse == nil {
			continue
		}
		output := g.text(20, 400)
		if g.r.IntN(3) == 0 {
			output = g.text(1000, 6000)
		}
		result := anthropic.NewToolResultBlock(c.OfToolUse.ID, output, g.r.IntN(6) == 0)
		if g.r.IntN(10) == 0 {
			result.OfToolResult.Content = append(result.OfToolResult.Content, anthropic.ToolResultBlockParamContentUnion{
				OfImage: &anthropic.ImageBlockParam{Source: anthropic.ImageBlockParamSourceUnion{
					OfBase64: &anthropic.Base64ImageSourceParam{Data: "iVBORw0KGgo=", MediaType: "image/png"},
				}},
			})
		}
		content = append(content, result)
	}
	g.r.Shuffle(len(content), func(i, j int) { content[i], content[j] = content[j], content[i] })
	if g.r.IntN(8) == 0 {
		content = append(content, anthropic.NewTextBlock(g.text(5, 100)))
	}
	return content
}

// filler is the source of texts, with characters that JSON escapes and
// multibyte ones.
var filler = strings.Repeat(`lorem <ipsum> "dolor" sit amet, é 日本 `, 400)

// text returns between lo and hi bytes of text.
func (g *generator) text(lo, hi int) string {
	start := g.r.IntN(len(filler) / 2)
	end := start + lo + g.r.IntN(hi-lo+1)
	for !utf8.RuneStart(filler[start]) {
		start++
	}
	for !utf8.RuneStart(filler[end]) {
		end--
	}
	return filler[start:end]
}

func (g *generator) signature() string {
	return fmt.Sprintf("sig+%x/%x==", g.r.Uint64(), g.r.Uint64())
}

func pick[T any](r *rand.Rand, values ...T) T {
	return values[r.IntN(len(values))]
}

// checker checks the plans of one history, computing what to expect
// independently.
type checker struct {
	history []compaction.Message
	sizes   []int                // the tokens of each message
	pruned  []compaction.Message // the history as the prune strategy leaves it
}

// check checks a plan made with o and the error that came with it. A hybrid
// plan is checked against the pruned history, which must be set first.
func (c checker) check(o compaction.Options, plan compaction.Plan, err error) error {
	if err != nil && !errors.Is(err, compaction.ErrNothingToCompact) {
		return fmt.Errorf("PlanCompaction: %v", err)
	}
	history := c.history
	o = o.WithDefaults()
	target := int(o.Target * float64(o.ContextWindow))
	protected := protectedStart(history, c.sizes, o.ProtectTokens)
	cut := len(plan.Summarize)

	// The plan partitions the history, in order, and keeps it valid.
	if plan.Strategy != o.Strategy {
		return fmt.Errorf("plan strategy %q, want %q", plan.Strategy, o.Strategy)
	}
	all := append(slices.Clone(plan.Summarize), plan.Keep...)
	if len(all) != len(history) {
		return fmt.Errorf("Summarize ++ Keep has %d messages, want %d", len(all), len(history))
	}
	for i, m := range all {
		if m.ID != history[i].ID || m.Seq != history[i].Seq {
			return fmt.Errorf("Summarize ++ Keep has %s (%d) at %d, want %s (%d)", m.ID, m.Seq, i, history[i].ID, history[i].Seq)
		}
	}
	if cut > 0 && !reflect.DeepEqual(plan.Summarize, history[:cut]) {
		return errors.New("Summarize does not hold the original messages")
	}
	if err := validHistory(plan.Keep, history[cut:]); err != nil {
		return fmt.Errorf("Keep is invalid: %v", err)
	}
	if !freshTurn(plan.Keep[0]) {
		return fmt.Errorf("Keep starts with %s, not a fresh user turn", plan.Keep[0].ID)
	}
	if cut > protected {
		return fmt.Errorf("summarized %d messages, into the protected span at %d", cut, protected)
	}
	if !reflect.DeepEqual(plan.Keep[protected-cut:], history[protected:]) {
		return errors.New("the protected span changed")
	}

	// Pruned lists exactly the kept messages that changed, all before the
	// protected span, where every large tool result, and nothing else, was
	// replaced by a placeholder.
	pruned := make(map[string]compaction.Message)
	for _, p := range plan.Pruned {
		pruned[p.ID] = p
	}
	for i, kept := range plan.Keep {
		j := cut + i
		p, listed := pruned[kept.ID]
		delete(pruned, kept.ID)
		switch changed := !reflect.DeepEqual(kept, history[j]); {
		case changed != listed:
			return fmt.Errorf("kept %s changed: %t, listed in Pruned: %t", kept.ID, changed, listed)
		case listed && !reflect.DeepEqual(p, kept):
			return fmt.Errorf("pruned %s differs from the kept one", kept.ID)
		}
		if o.Strategy == compaction.StrategySummarize || j >= protected {
			if listed {
				return fmt.Errorf("%s pruned, by strategy %s or protected", kept.ID, o.Strategy)
			}
		} else if err := checkPruned(history[j], kept, o.MinPruneBytes); err != nil {
			return fmt.Errorf("kept %s: %v", kept.ID, err)
		}
	}
	if len(pruned) > 0 {
		return fmt.Errorf("%d messages of Pruned are not kept", len(pruned))
	}
	prunable := slices.ContainsFunc(history[:protected], func(m compaction.Message) bool {
		return slices.ContainsFunc(m.Content, func(b anthropic.ContentBlockParamUnion) bool {
			return b.OfToolResult != nil && resultBytes(b.OfToolResult) >= o.MinPruneBytes
		})
	})

	// The summarized prefix is the one the rules choose.
	wantCut := 0
	switch o.Strategy {
	case compaction.StrategySummarize:
		wantCut = chooseCut(history, c.sizes, protected, target)
	case compaction.StrategyHybrid:
		if compaction.Size(c.pruned) >= target {
			wantCut = chooseCut(c.pruned, sizesOf(c.pruned), protected, target)
		}
		if !reflect.DeepEqual(plan.Keep, c.pruned[cut:]) {
			return errors.New("hybrid Keep differs from the pruned history")
		}
	}
	if cut != wantCut {
		return fmt.Errorf("summarized %d messages, want %d", cut, wantCut)
	}

	// The tokens are accounted for, and decrease if anything is compacted.
	if plan.TokensBefore != sum(c.sizes) {
		return fmt.Errorf("TokensBefore %d, want %d", plan.TokensBefore, sum(c.sizes))
	}
	wantAfter := compaction.Size(plan.Keep)
	if cut > 0 {
		wantAfter += compaction.SummaryBudget
	}
	if plan.TokensAfter != wantAfter {
		return fmt.Errorf("TokensAfter %d, want %d", plan.TokensAfter, wantAfter)
	}
	compactable := wantCut > 0 || prunable && o.Strategy != compaction.StrategySummarize
	switch {
	case compactable && err != nil:
		return fmt.Errorf("compaction is possible, but: %v", err)
	case !compactable && !errors.Is(err, compaction.ErrNothingToCompact):
		return errors.New("nothing is compactable, but the error is not ErrNothingToCompact")
	case compactable && plan.TokensAfter >= plan.TokensBefore:
		return fmt.Errorf("TokensAfter %d, not below TokensBefore %d", plan.TokensAfter, plan.TokensBefore)
	case !compactable && (len(plan.Pruned) > 0 || plan.TokensAfter != plan.TokensBefore):
		return errors.New("ErrNothingToCompact with a plan that compacts")
	}
	return nil
}

var placeholder = regexp.MustCompile(`^\[tool output pruned by compaction: (\d+) bytes\]$`)

// checkPruned checks that kept is orig with exactly its tool results of at
// least minBytes outside replaced by a placeholder giving their size.
func checkPruned(orig, kept compaction.Message, minBytes int) error {
	if kept.ID != orig.ID || kept.Seq != orig.Seq || kept.Role != orig.Role || len(kept.Content) != len(orig.Content) {
		return errors.New("not a version of the original")
	}
	for i, b := range orig.Content {
		got := kept.Content[i]
		r := b.OfToolResult
		if r == nil || resultBytes(r) < minBytes {
			if !reflect.DeepEqual(got, b) {
				return fmt.Errorf("block %d changed", i)
			}
			continue
		}
		p := got.OfToolResult
		if p == nil || p.ToolUseID != r.ToolUseID || p.IsError != r.IsError {
			return fmt.Errorf("block %d is not the same tool result", i)
		}
		if len(p.Content) != 1 || p.Content[0].OfText == nil {
			return fmt.Errorf("block %d has no placeholder", i)
		}
		m := placeholder.FindStringSubmatch(p.Content[0].OfText.Text)
		if m == nil || m[1] != strconv.Itoa(resultBytes(r)) {
			return fmt.Errorf("block %d has placeholder %q", i, p.Content[0].OfText.Text)
		}
	}
	return nil
}

// validHistory checks that msgs is a valid conversation: it starts with a
// user message, alternates roles, every tool_use is answered once by a
// tool_result of the next message and every tool_result answers one; and
// that the thinking blocks are those of the corresponding originals.
func validHistory(msgs, originals []compaction.Message) error {
	if len(msgs) == 0 {
		return errors.New("empty")
	}
	for i, m := range msgs {
		if want := []string{"user", "assistant"}[i%2]; m.Role != want {
			return fmt.Errorf("message %d is from %q, want %q", i, m.Role, want)
		}
		var calls, answers []string
		if i > 0 {
			calls = toolUses(msgs[i-1])
		}
		for _, b := range m.Content {
			if b.OfToolResult != nil {
				answers = append(answers, b.OfToolResult.ToolUseID)
			}
		}
		slices.Sort(calls)
		slices.Sort(answers)
		if !slices.Equal(calls, answers) {
			return fmt.Errorf("message %d answers %v to tool calls %v", i, answers, calls)
		}
		if got, want := thinkingOf(m), thinkingOf(originals[i]); !slices.Equal(got, want) {
			return fmt.Errorf("message %d has thinking %q, want %q", i, got, want)
		}
	}
	if last := msgs[len(msgs)-1]; len(toolUses(last)) > 0 {
		return errors.New("the last message has unanswered tool calls")
	}
	return nil
}

// toolUses returns the tool_use IDs of an assistant message.
func toolUses(m compaction.Message) []string {
	var ids []string
	for _, b := range m.Content {
		if m.Role == "assistant" && b.OfToolUse != nil {
			ids = append(ids, b.OfToolUse.ID)
		}
	}
	return ids
}

// thinkingOf returns the thinking, signatures and redacted data of m.
func thinkingOf(m compaction.Message) []string {
	var s []string
	for _, b := range m.Content {
		switch {
		case b.OfThinking != nil:
			s = append(s, b.OfThinking.Thinking, b.OfThinking.Signature)
		case b.OfRedactedThinking != nil:
			s = append(s, b.OfRedactedThinking.Data)
		}
	}
	return s
}

// protectedStart computes where the protected span begins: the last
// messages of at least protect tokens, at least one, back to a fresh turn.
func protectedStart(history []compaction.Message, sizes []int, protect int) int {
	start := len(history) - 1
	for start > 0 && sum(sizes[start:]) < protect {
		start--
	}
	for !freshTurn(history[start]) {
		start--
	}
	return start
}

// chooseCut computes the prefix to summarize: of the prefixes larger than a
// summary that end before a fresh turn, outside the protected span, the
// shortest that gets under target, else the longest.
func chooseCut(history []compaction.Message, sizes []int, protected, target int) int {
	var cuts []int
	for c := 1; c <= protected; c++ {
		if freshTurn(history[c]) && sum(sizes[:c]) > compaction.SummaryBudget {
			cuts = append(cuts, c)
		}
	}
	for _, c := range cuts {
		if sum(sizes[c:])+compaction.SummaryBudget < target {
			return c
		}
	}
	if len(cuts) == 0 {
		return 0
	}
	return cuts[len(cuts)-1]
}

// resultBytes is the size of a tool result's content, as documented on
// Options.MinPruneBytes.
func resultBytes(r *anthropic.ToolResultBlockParam) int {
	n := 0
	for _, c := range r.Content {
		if c.OfImage != nil {
			n += compaction.ImageTokens * 4
		} else {
			n += len(c.OfText.Text)
		}
	}
	return n
}

func sizesOf(msgs []compaction.Message) []int {
	sizes := make([]int, len(msgs))
	for i := range msgs {
		sizes[i] = compaction.Size(msgs[i : i+1])
	}
	return sizes
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func freshTurn(m compaction.Message) bool {
	return m.Role == "user" && !slices.ContainsFunc(m.Content, func(b anthropic.ContentBlockParamUnion) bool {
		return b.OfToolResult != nil
	})
}
