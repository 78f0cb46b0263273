package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/internal/store"
)

// ErrNothingToCompact: a compaction found nothing it could remove without
// breaking the conversation (everything is in the protected recent span).
var ErrNothingToCompact = compaction.ErrNothingToCompact

// CompactionEvent describes a compaction, to the OnBeforeCompaction hooks
// (as planned) and the OnAfterCompaction hooks and Session.Compact's caller
// (as done).
type CompactionEvent struct {
	TenantID  string
	SessionID string
	Strategy  compaction.Strategy
	// Trigger is "auto" for a compaction before a model call, "manual" for
	// Session.Compact.
	Trigger string
	// TokensBefore is the conversation's estimated size before;
	// TokensAfter after (as planned, before it is done).
	TokensBefore, TokensAfter int
	// MessagesArchived counts messages moved to the archive (planned:
	// those of the conversation; done: every stored one, those of failed
	// runs included). MessagesPruned counts messages whose old tool outputs
	// were replaced by a placeholder.
	MessagesArchived, MessagesPruned int
	// Duration and Usage are those of the compaction, its summary's model
	// call included; zero before it is done.
	Duration time.Duration
	Usage    Usage
}

// OnBeforeCompaction registers a hook that runs before each compaction with
// its plan. An error from it cancels the compaction: an automatic one is
// skipped (the run goes on), Session.Compact returns an error wrapping
// ErrHookRejected.
func (a *Agent) OnBeforeCompaction(hook func(ctx context.Context, e *CompactionEvent) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.beforeCompaction = append(a.beforeCompaction, hook)
}

// OnAfterCompaction registers a hook that runs after each compaction is
// stored. An error from it is logged; the compaction stands.
func (a *Agent) OnAfterCompaction(hook func(ctx context.Context, e *CompactionEvent) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.afterCompaction = append(a.afterCompaction, hook)
}

// Compact compacts the session now, whatever its size, with the configured
// strategy: it waits for the session like Run. It returns
// ErrNothingToCompact when there is nothing it can compact.
func (s *Session) Compact(ctx context.Context) (*CompactionEvent, error) {
	a := s.agent
	leave, err := a.gates.enter(ctx, s.ID, false)
	if err != nil {
		return nil, err
	}
	defer leave()
	lease, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.store.ReleaseLease(releaseCtx, lease); err != nil {
			a.cfg.Logger.WarnContext(ctx, "releasing the session after compacting", "session_id", s.ID, "error", err)
		}
	}()
	conv, err := s.readHistory(ctx, lease)
	if err != nil {
		return nil, fmt.Errorf("agentpg: compacting: %w", err)
	}
	conv, event, err := s.compact(ctx, &lease, conv, "manual")
	if err != nil {
		return nil, fmt.Errorf("agentpg: compacting: %w", err)
	}
	s.remember(conv)
	return event, nil
}

// acquire takes the session's lease for a compaction, waiting while a run
// holds it.
func (s *Session) acquire(ctx context.Context) (store.Lease, error) {
	holder := newID()
	return waitForLease(ctx, false, func() (store.Lease, error) {
		return s.agent.store.AcquireLease(ctx, s.TenantID, s.ID, holder, s.agent.cfg.LeaseTTL)
	})
}

// maybeCompact compacts the conversation before a model call when it has
// grown past the threshold. A compaction that fails or is refused by a hook
// is logged and skipped: the call goes on with the conversation as it is.
func (r *run) maybeCompact(ctx context.Context, conv conversation) conversation {
	s := r.session
	a := s.agent
	if a.cfg.Compaction.Disabled {
		return conv
	}
	opts := a.cfg.compactionOptions(s.model())
	if !compaction.NeedsCompaction(r.contextTokens(ctx, conv, opts), opts) {
		return conv
	}
	compacted, event, err := s.compact(ctx, &r.lease, conv, "auto")
	if err != nil {
		r.log.WarnContext(ctx, "automatic compaction skipped", "error", err)
		return conv
	}
	r.log.InfoContext(ctx, "compacted", "strategy", event.Strategy,
		"tokens_before", event.TokensBefore, "tokens_after", event.TokensAfter, "archived", event.MessagesArchived)
	return compacted
}

// contextTokens returns the size of the next request: the usage the API
// reported for the last answer, plus an estimate of what came after it.
// Near the threshold, where an estimate is not good enough, it asks the
// count_tokens endpoint.
func (r *run) contextTokens(ctx context.Context, conv conversation, opts compaction.Options) int {
	tokens, exact := estimateContext(r.session, conv)
	threshold := int(opts.Threshold * float64(opts.ContextWindow))
	if exact || tokens < threshold*9/10 || tokens > threshold*11/10 {
		return tokens
	}
	counted, err := r.session.agent.countTokens(ctx, r.session.params(conv), conv.messages)
	if err != nil {
		r.log.WarnContext(ctx, "counting tokens", "error", err)
		return tokens
	}
	return counted
}

// estimateContext estimates the conversation's size in tokens, from the
// last answer's usage where it is known and not older than the last
// compaction, reporting whether no estimate was needed.
func estimateContext(s *Session, conv conversation) (tokens int, exact bool) {
	msgs := conv.messages
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		if m.Role != "assistant" || m.Usage == nil || m.Seq <= conv.compactedAtSeq {
			continue
		}
		u := m.Usage
		known := int(u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens + u.OutputTokens)
		rest := compaction.Size(compactionMessages(msgs[i+1:]))
		return known + rest, rest == 0
	}
	fixed := len(s.agent.cfg.SystemPrompt)/4 + len(summaryBlock(conv))/4
	return fixed + compaction.Size(compactionMessages(msgs)), false
}

// countTokens asks the API how many input tokens the request of params
// and messages holds.
func (a *Agent) countTokens(ctx context.Context, params anthropic.MessageNewParams, messages []Message) (int, error) {
	count, err := a.cfg.Client.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
		Model:    params.Model,
		Messages: messageParams(messages),
		System:   anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: params.System},
		Thinking: params.Thinking,
		Tools:    countTokensTools(params.Tools),
	}, a.requestOptions(string(params.Model))...)
	if err != nil {
		return 0, apiError(err)
	}
	return int(count.InputTokens), nil
}

// compact plans and applies a compaction of conv under lease, and returns
// the compacted conversation.
func (s *Session) compact(ctx context.Context, lease *store.Lease, conv conversation, trigger string) (conversation, *CompactionEvent, error) {
	a := s.agent
	start := time.Now()
	opts := a.cfg.compactionOptions(s.model())
	stored, pending := conv.split()
	plan, err := compaction.PlanCompaction(compactionMessages(stored), opts)
	if err != nil {
		return conv, nil, err
	}
	event := &CompactionEvent{
		TenantID: s.TenantID, SessionID: s.ID, Strategy: plan.Strategy, Trigger: trigger,
		TokensBefore: plan.TokensBefore, TokensAfter: plan.TokensAfter,
		MessagesArchived: len(plan.Summarize), MessagesPruned: len(plan.Pruned),
	}
	if err := a.beforeCompactionHooks(ctx, event); err != nil {
		return conv, nil, err
	}

	change := store.Compaction{
		ID: newID(), Strategy: string(plan.Strategy), Trigger: trigger,
		TokensBefore: plan.TokensBefore, TokensAfter: plan.TokensAfter,
		Pruned: make(map[string]json.RawMessage, len(plan.Pruned)),
	}
	compacted := conv
	if len(plan.Summarize) > 0 {
		summary, usage, err := s.summarize(ctx, conv, plan.Summarize)
		if err != nil {
			return conv, nil, err
		}
		firstIntent := conv.firstIntent
		if firstIntent == "" {
			firstIntent = compaction.FirstIntent(plan.Summarize, maxFirstIntentBytes)
		}
		change.Summary = &store.Summary{Text: summary, FirstIntent: firstIntent}
		change.ArchiveBeforeSeq = plan.Keep[0].Seq
		change.Usage, change.Model = usage.store(), s.model()
		event.Usage = usage
		compacted.summary, compacted.firstIntent = summary, firstIntent
	}
	for _, m := range plan.Pruned {
		if change.Pruned[m.ID], err = json.Marshal(m.Content); err != nil {
			return conv, nil, err
		}
	}
	compacted.messages = append(keptMessages(stored, plan), pending...)
	compacted.wire, compacted.wired = nil, 0
	compacted.compactedAtSeq = conv.lastSeq()
	change.Duration = time.Since(start)

	archived, err := a.store.ApplyCompaction(ctx, *lease, a.cfg.LeaseTTL, change)
	if errors.Is(err, store.ErrLeaseLost) {
		return conv, nil, ErrLeaseLost
	}
	if err != nil {
		return conv, nil, err
	}
	lease.CompactionGen++
	compacted.gen = lease.CompactionGen
	event.MessagesArchived, event.Duration = archived, change.Duration
	a.afterCompactionHooks(ctx, event)
	return compacted, event, nil
}

// maxFirstIntentBytes bounds the user's first request kept in a summary.
const maxFirstIntentBytes = 4000

// summarize asks the model to summarize msgs, building on the previous
// summary, if any.
func (s *Session) summarize(ctx context.Context, conv conversation, msgs []compaction.Message) (string, Usage, error) {
	prompt := "Summarize this conversation.\n\n"
	if conv.summary != "" {
		prompt += "Summary of what came before it:\n" + conv.summary + "\n\n"
	}
	prompt += "Conversation:\n" + compaction.Transcript(msgs, 2000)
	request := conversation{messages: []Message{{Role: "user", Content: []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(prompt)}}}}
	messages, err := request.encodedMessages()
	if err != nil {
		return "", Usage{}, fmt.Errorf("summarizing: %w", err)
	}
	params := anthropic.MessageNewParams{
		Model:     anthropic.Model(s.model()),
		MaxTokens: compaction.SummaryBudget,
		System:    []anthropic.TextBlockParam{{Text: compaction.SummaryInstructions}},
	}
	resp, err := s.agent.callModel(ctx, modelRequest{params: params, messages: messages}, nil)
	if err != nil {
		return "", Usage{}, fmt.Errorf("summarizing: %w", err)
	}
	text := responseText(resp.Message)
	if text == "" {
		return "", Usage{}, fmt.Errorf("summarizing: %w", ErrEmptyResponse)
	}
	return text, usageOf(resp.spent()), nil
}

// summaryBlock is the system block carrying the compacted start of the
// conversation.
func summaryBlock(conv conversation) string {
	if conv.summary == "" {
		return ""
	}
	return "The start of this conversation was compacted. The user's first request, verbatim:\n" +
		conv.firstIntent + "\n\nSummary of the conversation until the messages that follow:\n" + conv.summary
}

// compactionMessages converts messages for the compaction planner.
func compactionMessages(msgs []Message) []compaction.Message {
	out := make([]compaction.Message, len(msgs))
	for i, m := range msgs {
		out[i] = compaction.Message{ID: m.ID, Seq: m.Seq, Role: m.Role, Content: m.Content}
	}
	return out
}

// keptMessages returns the messages a plan keeps, with pruned contents.
func keptMessages(msgs []Message, plan compaction.Plan) []Message {
	byID := make(map[string]Message, len(msgs))
	for _, m := range msgs {
		byID[m.ID] = m
	}
	kept := make([]Message, len(plan.Keep))
	for i, k := range plan.Keep {
		kept[i] = byID[k.ID]
		kept[i].Content = k.Content
	}
	return kept
}

// split returns the conversation's stored messages, and those of the
// current run not stored yet, which come last and have no seq.
func (c conversation) split() (stored, pending []Message) {
	n := len(c.messages)
	for n > 0 && c.messages[n-1].Seq == 0 {
		n--
	}
	return c.messages[:n], c.messages[n:]
}

// lastSeq is the seq of the conversation's last stored message.
func (c conversation) lastSeq() int64 {
	if stored, _ := c.split(); len(stored) > 0 {
		return stored[len(stored)-1].Seq
	}
	return c.compactedAtSeq
}

// CompactionStats describe a session's compaction state.
type CompactionStats struct {
	Compactions      int       // compactions so far
	LiveMessages     int       // messages in the messages table
	ArchivedMessages int       // rows in the message archive
	HasSummary       bool      // a summary stands for the archived start
	LastCompactedAt  time.Time // zero if never compacted
	TokensSaved      int64     // the sum of tokens_before - tokens_after
	ContextTokens    int       // estimated size of the next request
	ContextWindow    int       // the model's window
}

// CompactionStats reports the session's compaction state.
func (s *Session) CompactionStats(ctx context.Context) (*CompactionStats, error) {
	st, err := s.agent.store.CompactionStats(ctx, s.TenantID, s.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("agentpg: compaction stats: %w", err)
	}
	sum, err := s.agent.store.Summary(ctx, s.TenantID, s.ID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: compaction stats: %w", err)
	}
	rows, err := s.agent.store.History(ctx, s.TenantID, s.ID, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("agentpg: compaction stats: %w", err)
	}
	conv := conversation{summary: sum.Text, firstIntent: sum.FirstIntent, compactedAtSeq: sum.CompactedAtSeq}
	for _, row := range rows {
		msg, err := messageFromRow(row)
		if err != nil {
			return nil, fmt.Errorf("agentpg: %w", err)
		}
		conv.messages = append(conv.messages, msg)
	}
	stats := &CompactionStats{
		Compactions: st.Compactions, LiveMessages: st.LiveMessages, ArchivedMessages: st.ArchivedMessages,
		HasSummary: st.HasSummary, TokensSaved: st.TokensSaved,
		ContextWindow: s.agent.cfg.compactionOptions(s.model()).ContextWindow,
	}
	stats.ContextTokens, _ = estimateContext(s, conv)
	if st.LastCompactedAt != nil {
		stats.LastCompactedAt = *st.LastCompactedAt
	}
	return stats, nil
}

// countTokensTools converts tool definitions for the count_tokens endpoint.
func countTokensTools(tools []anthropic.ToolUnionParam) []anthropic.MessageCountTokensToolUnionParam {
	out := make([]anthropic.MessageCountTokensToolUnionParam, 0, len(tools))
	for _, t := range tools {
		if t.OfTool != nil {
			out = append(out, anthropic.MessageCountTokensToolUnionParam{OfTool: t.OfTool})
		}
	}
	return out
}
