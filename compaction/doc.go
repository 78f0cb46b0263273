// Package compaction decides what to compact in a long conversation so that
// a turn of an old session costs no more than one of a young session, and
// the model is never sent an invalid history.
//
// The package is pure: it has no database and no network. It plans; the
// caller applies the plan (archives messages, stores new versions, asks a
// model for a summary).
//
// # When
//
// [NeedsCompaction] reports whether a context (the input tokens of the
// latest request, say) has reached Options.Threshold of the model's window.
// [PlanCompaction] then plans how to get under Options.Target of the window.
// It also plans when called below the threshold, for compaction on demand.
//
// # Strategies
//
//   - [StrategyPrune] replaces the content of large tool results (at least
//     Options.MinPruneBytes) with a short placeholder such as
//     "[tool output pruned by compaction: 48213 bytes]". It needs no model
//     call. Every prunable result outside the protected span is pruned.
//   - [StrategySummarize] replaces the oldest span of the conversation by a
//     summary written by a model, from [SummaryInstructions] and the
//     [Transcript] of the span. The span is the shortest prefix that gets
//     the conversation under the target, else the longest allowed one.
//   - [StrategyHybrid], the default, prunes first and summarizes too only
//     if the pruned conversation is still over the target.
//
// A prefix is summarized only if it is larger than [SummaryBudget], the
// size a summary is assumed to take, so a plan never grows the
// conversation. Sizes are the messages' known token counts, or estimates by
// [EstimateTokens].
//
// # Invariants
//
// A fresh user turn is a user message that holds no tool_result. Every plan
// keeps these invariants:
//
//   - The protected span, the most recent messages totalling at least
//     Options.ProtectTokens and extended back to a fresh user turn (so at
//     least the latest turn), is neither pruned nor summarized.
//   - The summarized span is a prefix of the history that ends right
//     before a fresh user turn, so what is kept starts with a user message,
//     still alternates roles, and no tool_use is separated from its
//     tool_result.
//   - Pruning replaces only the content of tool_result blocks, keeping
//     their tool_use_id and is_error. Text, tool_use and thinking blocks,
//     whose signatures must be sent back unchanged, are never modified.
//   - The caller's messages and blocks are never modified: pruned messages
//     are new versions with the same ID and Seq.
//
// PlanCompaction rejects an invalid history with [ErrInvalidHistory], and
// returns [ErrNothingToCompact] when no plan can shrink the conversation
// without breaking an invariant.
package compaction
