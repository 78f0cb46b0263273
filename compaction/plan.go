package compaction

import (
	"fmt"
	"slices"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// SummaryBudget is the number of tokens a summary is assumed to take when a
// plan is estimated. Summaries should be requested with a max_tokens of
// about this much.
const SummaryBudget = 2000

// Plan is what to compact in a conversation. Applying it means archiving
// Summarize and replacing it by a summary, storing the new content of the
// Pruned messages, and sending Keep (after the summary) from then on.
type Plan struct {
	// Strategy is the strategy the plan was made with.
	Strategy Strategy
	// Pruned holds new versions (same ID and Seq) of the messages of Keep
	// whose large tool results were replaced by a placeholder. The
	// caller's messages are not modified.
	Pruned []Message
	// Summarize is the oldest span of the history, a prefix of it, to
	// replace by a summary, as given (not pruned). Nil if none.
	Summarize []Message
	// Keep is what stays live once the plan is applied, in order, with the
	// pruned versions substituted. It starts with a fresh user turn.
	Keep []Message
	// TokensBefore is the size of the history, TokensAfter the estimated
	// size of Keep plus SummaryBudget if there is a summary.
	TokensBefore, TokensAfter int
}

// PlanCompaction plans the compaction of history, a conversation in order,
// with the strategy of o, whether or not the history has reached the
// threshold (see [NeedsCompaction]): it prunes what it may and summarizes
// only what it must to get under the target. The invariants it keeps are
// described in the package documentation.
//
// It returns an error wrapping [ErrInvalidHistory] if history is not a valid
// conversation, and [ErrNothingToCompact] with a plan that keeps everything
// if nothing can be compacted.
func PlanCompaction(history []Message, o Options) (Plan, error) {
	if err := o.Validate(); err != nil {
		return Plan{}, err
	}
	o = o.WithDefaults()
	if err := validateHistory(history); err != nil {
		return Plan{}, err
	}

	keep := slices.Clone(history)
	tokens := make([]int, len(history))
	for i, m := range history {
		tokens[i] = m.tokens()
	}
	before := sum(tokens)
	plan := Plan{Strategy: o.Strategy, Keep: keep, TokensBefore: before, TokensAfter: before}
	if len(history) == 0 {
		return plan, ErrNothingToCompact
	}
	protected := protectedStart(history, tokens, o.ProtectTokens)

	var pruned []int // the indexes of the pruned messages
	if o.Strategy != StrategySummarize {
		for i, m := range history[:protected] {
			if p, ok := prune(m, o.MinPruneBytes); ok {
				keep[i], tokens[i] = p, p.tokens()
				pruned = append(pruned, i)
			}
		}
	}
	cut := 0
	if o.Strategy == StrategySummarize || o.Strategy == StrategyHybrid && sum(tokens) >= o.targetTokens() {
		cut = chooseCut(history, tokens, protected, o.targetTokens())
	}

	plan.Keep = keep[cut:]
	plan.TokensAfter = sum(tokens[cut:])
	if cut > 0 {
		plan.Summarize = slices.Clone(history[:cut])
		plan.TokensAfter += SummaryBudget
	}
	for _, i := range pruned {
		if i >= cut {
			plan.Pruned = append(plan.Pruned, keep[i])
		}
	}
	if len(plan.Pruned) == 0 && len(plan.Summarize) == 0 {
		return plan, ErrNothingToCompact
	}
	return plan, nil
}

// protectedStart returns the index where the protected span of history
// begins: the most recent messages totalling at least protect tokens (at
// least the last message), extended back to a fresh user turn.
func protectedStart(history []Message, tokens []int, protect int) int {
	i := len(history) - 1
	total := tokens[i]
	for i > 0 && total < protect {
		i--
		total += tokens[i]
	}
	for i > 0 && !history[i].startsTurn() {
		i--
	}
	return i
}

// prune returns a copy of m in which the content of every tool result of at
// least minBytes is replaced by a placeholder, and whether there was any.
func prune(m Message, minBytes int) (Message, bool) {
	var content []anthropic.ContentBlockParamUnion
	for i, b := range m.Content {
		r := b.OfToolResult
		if r == nil {
			continue
		}
		size := resultSize(r.Content)
		if size < minBytes {
			continue
		}
		if content == nil {
			content = slices.Clone(m.Content)
		}
		content[i] = anthropic.ContentBlockParamUnion{OfToolResult: &anthropic.ToolResultBlockParam{
			ToolUseID:    r.ToolUseID,
			ToolsetName:  r.ToolsetName,
			IsError:      r.IsError,
			CacheControl: r.CacheControl,
			Content: []anthropic.ToolResultBlockParamContentUnion{{
				OfText: &anthropic.TextBlockParam{Text: fmt.Sprintf("[tool output pruned by compaction: %d bytes]", size)},
			}},
		}}
	}
	if content == nil {
		return m, false
	}
	p := m
	p.Content = content
	if m.Tokens > 0 {
		// Scale the known count as the estimate shrinks.
		p.Tokens = max(1, m.Tokens*EstimateTokens(content)/EstimateTokens(m.Content))
	}
	return p, true
}

// chooseCut returns the length of the prefix of history to summarize, given
// the tokens of each message: the shortest prefix that ends before a fresh
// user turn at or before limit and brings the total under target, else the
// longest such prefix. Only prefixes larger than SummaryBudget are
// considered, as summarizing a smaller one would save nothing; chooseCut
// returns 0 if there is none.
func chooseCut(history []Message, tokens []int, limit, target int) int {
	total := sum(tokens)
	cut, prefix := 0, 0
	for i := 1; i <= limit; i++ {
		prefix += tokens[i-1]
		if !history[i].startsTurn() || prefix <= SummaryBudget {
			continue
		}
		cut = i
		if total-prefix+SummaryBudget < target {
			break
		}
	}
	return cut
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
