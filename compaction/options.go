package compaction

import (
	"errors"
	"fmt"
)

// Strategy is a way of shrinking a conversation's live context.
type Strategy string

// The strategies; see the package documentation.
const (
	// StrategyPrune replaces bulky old tool outputs with a short placeholder.
	StrategyPrune Strategy = "prune"
	// StrategySummarize replaces an older span of the conversation by a
	// model-written summary.
	StrategySummarize Strategy = "summarize"
	// StrategyHybrid prunes first, and summarizes too if the context is
	// still over the target.
	StrategyHybrid Strategy = "hybrid"
)

// minPruneBytes is the smallest allowed Options.MinPruneBytes. Placeholders
// are much smaller, so pruning always saves tokens and never prunes a
// placeholder again.
const minPruneBytes = 256

// Options configures compaction. The zero value of every field but
// ContextWindow selects its default; see [Options.WithDefaults].
type Options struct {
	// Strategy is how to compact; default StrategyHybrid.
	Strategy Strategy
	// ContextWindow is the number of tokens the model accepts. Required.
	ContextWindow int
	// Threshold is the fraction of the window at which compaction is
	// needed; default 0.85.
	Threshold float64
	// Target is the fraction of the window to get under by compacting; it
	// must be below Threshold. Default 0.5.
	Target float64
	// ProtectTokens is the size of the most recent span of the
	// conversation, which is never compacted; the span always holds at
	// least the latest turn. Default 40,000, and never more than
	// Target*ContextWindow.
	ProtectTokens int
	// MinPruneBytes is the size below which the content of a tool result
	// is not pruned, in bytes of text (an image counting as ImageTokens*4
	// bytes). Default 1024; at least 256.
	MinPruneBytes int
}

// WithDefaults returns o with its zero fields set to their defaults and
// ProtectTokens capped at Target*ContextWindow.
func (o Options) WithDefaults() Options {
	if o.Strategy == "" {
		o.Strategy = StrategyHybrid
	}
	if o.Threshold == 0 {
		o.Threshold = 0.85
	}
	if o.Target == 0 {
		o.Target = 0.5
	}
	if o.ProtectTokens == 0 {
		o.ProtectTokens = 40_000
	}
	o.ProtectTokens = min(o.ProtectTokens, o.targetTokens())
	if o.MinPruneBytes == 0 {
		o.MinPruneBytes = 1024
	}
	return o
}

// Validate reports why o, completed by [Options.WithDefaults], is unusable,
// or returns nil.
func (o Options) Validate() error {
	o = o.WithDefaults()
	switch o.Strategy {
	case StrategyPrune, StrategySummarize, StrategyHybrid:
	default:
		return fmt.Errorf("compaction: unknown strategy %q", o.Strategy)
	}
	switch {
	case o.ContextWindow <= 0:
		return errors.New("compaction: ContextWindow must be positive")
	case !(0 < o.Threshold && o.Threshold <= 1):
		return fmt.Errorf("compaction: Threshold %v is not in (0, 1]", o.Threshold)
	case !(0 < o.Target && o.Target < o.Threshold):
		return fmt.Errorf("compaction: Target %v is not in (0, Threshold %v)", o.Target, o.Threshold)
	case o.ProtectTokens < 0:
		return fmt.Errorf("compaction: ProtectTokens %d is negative", o.ProtectTokens)
	case o.MinPruneBytes < minPruneBytes:
		return fmt.Errorf("compaction: MinPruneBytes %d is below %d", o.MinPruneBytes, minPruneBytes)
	}
	return nil
}

// NeedsCompaction reports whether a context of contextTokens tokens (the
// input tokens of the latest request, say) has reached the threshold of o.
// It reports false when o is invalid.
func NeedsCompaction(contextTokens int, o Options) bool {
	o = o.WithDefaults()
	return o.Validate() == nil && float64(contextTokens) >= o.Threshold*float64(o.ContextWindow)
}

// targetTokens is the number of tokens to get under by compacting.
func (o Options) targetTokens() int {
	return int(o.Target * float64(o.ContextWindow))
}
