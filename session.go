package agentpg

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// Session is one conversation of one tenant. Its methods are safe for
// concurrent use; concurrent runs on a session take turns.
type Session struct {
	ID         string
	TenantID   string
	Identifier string
	ParentID   string         // "" for a top-level session
	Metadata   map[string]any // as given to NewSession
	CreatedAt  time.Time
	UpdatedAt  time.Time // when the session last changed, as loaded

	agent     *Agent
	overrides sessionOverrides
	depth     int // how deep the session nests under its ancestors

	cache *cachedConversation // shared by the agent's Session values of this session
	// endUser is whose session this is, for the audit log: its identifier,
	// or for a nested agent's session made by a run, the identifier of
	// the session at the root of the run's tree.
	endUser string
}

// cachedConversation is the conversation of a session as last read, so
// that a turn reads only what is new. The agent keeps the most recently
// used ones (Config.ConversationCacheSize).
type cachedConversation struct {
	mu      sync.Mutex
	conv    conversation
	lastSeq int64 // the highest seq read into conv
	// lent reports that a run was given conv's messages, and their
	// encoding, to append to in place, in their arrays beyond their
	// length, so that a long conversation is not copied every turn; the
	// runs given them after it get copies. Remembering a conversation ends
	// the loan.
	lent bool
}

// conversation is what a run sends the model: the summary of what
// compaction archived, if any, and the live messages.
type conversation struct {
	gen            int    // the session's compaction generation it was read under
	summary        string // "" before the first summarizing compaction
	firstIntent    string // the user's first request, kept through compactions
	compactedAtSeq int64  // usage of messages up to this seq predates the last compaction
	messages       []Message
	// wire is the encoding of messages[:wired] that requests are made of
	// (see encodedMessages).
	wire  []byte
	wired int
}

// Messages returns a page of the session's stored messages in order,
// including those of failed runs, which are not sent to the model.
func (s *Session) Messages(ctx context.Context, opts ListOptions) (Page[Message], error) {
	limit, err := opts.limit()
	if err != nil {
		return Page[Message]{}, err
	}
	after, err := parseSeqCursor(opts.After)
	if err != nil {
		return Page[Message]{}, err
	}
	rows, err := s.agent.store.ListMessages(ctx, s.TenantID, s.ID, after, limit)
	if err != nil {
		return Page[Message]{}, fmt.Errorf("agentpg: %w", err)
	}
	msgs, err := convertAll(rows, messageFromRow)
	if err != nil {
		return Page[Message]{}, fmt.Errorf("agentpg: %w", err)
	}
	return pageOf(msgs, limit, func(m Message) string { return seqCursor(m.Seq) }), nil
}

// ArchivedMessage is a message compaction moved out of the conversation:
// one it removed, or the original of one it pruned.
type ArchivedMessage struct {
	Message
	CompactionID string
	ArchivedAt   time.Time
}

// Archive returns a page of the session's archived messages, in order of
// their place in the conversation and then of the compaction that archived
// them.
func (s *Session) Archive(ctx context.Context, opts ListOptions) (Page[ArchivedMessage], error) {
	limit, err := opts.limit()
	if err != nil {
		return Page[ArchivedMessage]{}, err
	}
	seqText, compactionID, err := splitCursor(opts.After)
	if err != nil {
		return Page[ArchivedMessage]{}, err
	}
	afterSeq, err := parseSeqCursor(seqText)
	if err != nil {
		return Page[ArchivedMessage]{}, badCursor(opts.After)
	}
	rows, err := s.agent.store.ListArchive(ctx, s.TenantID, s.ID, afterSeq, compactionID, limit)
	if err != nil {
		return Page[ArchivedMessage]{}, fmt.Errorf("agentpg: %w", err)
	}
	archived, err := convertAll(rows, func(row store.ArchivedMessage) (ArchivedMessage, error) {
		msg, err := messageFromRow(row.Message)
		return ArchivedMessage{Message: msg, CompactionID: row.CompactionID, ArchivedAt: row.ArchivedAt}, err
	})
	if err != nil {
		return Page[ArchivedMessage]{}, fmt.Errorf("agentpg: %w", err)
	}
	return pageOf(archived, limit, func(m ArchivedMessage) string {
		return pairCursor(seqCursor(m.Seq), m.CompactionID)
	}), nil
}

// Run statuses, as RunInfo.Status reports them. A run moves from queued
// (enqueued, not started) to running, possibly to awaiting_approval and
// back, and ends completed, failed or cancelled. An enqueued run that its
// tenant's limits refuse mid-way goes back from running to queued.
const (
	RunQueued           = store.RunQueued
	RunRunning          = store.RunRunning
	RunAwaitingApproval = store.RunAwaitingApproval
	RunCompleted        = store.RunCompleted
	RunFailed           = store.RunFailed
	RunCancelled        = store.RunCancelled
)

// RunInfo describes a stored run.
type RunInfo struct {
	ID        string
	SessionID string
	// ParentRunID is the run that called this one, for a run of an agent
	// offered as a tool (Agent.AsTool).
	ParentRunID string
	Status      string // RunQueued, RunRunning, ... RunCancelled
	// Stuck reports a running run that no process holds: its process went
	// away. ResumeRun continues it; the next run of its session fails it.
	Stuck      bool
	Model      string
	StopReason string
	Error      string // why a failed or cancelled run ended
	// ErrorClass classifies Error, such as "max_iterations",
	// "hook_rejected", "overloaded", "interrupted" or "cancelled"; the
	// RunError of the run matches the class's sentinel error.
	ErrorClass string
	Iterations int // model calls made
	Usage      Usage
	CreatedAt  time.Time
	StartedAt  time.Time // zero while queued
	FinishedAt time.Time // zero until it ends
}

// Runs returns a page of the session's runs, oldest first.
func (s *Session) Runs(ctx context.Context, opts ListOptions) (Page[RunInfo], error) {
	limit, err := opts.limit()
	if err != nil {
		return Page[RunInfo]{}, err
	}
	after, err := parseIDCursor(opts.After)
	if err != nil {
		return Page[RunInfo]{}, err
	}
	rows, err := s.agent.store.ListRuns(ctx, s.TenantID, s.ID, after, limit)
	if err != nil {
		return Page[RunInfo]{}, fmt.Errorf("agentpg: %w", err)
	}
	runs, _ := convertAll(rows, func(r store.Run) (RunInfo, error) { return runInfo(r), nil })
	return pageOf(runs, limit, func(r RunInfo) string { return r.ID }), nil
}

// runInfo converts a stored run.
func runInfo(r store.Run) RunInfo {
	info := RunInfo{
		ID: r.ID, SessionID: r.SessionID, Status: r.Status, Stuck: r.LeaseExpired, Model: r.Model,
		Iterations: r.Iterations, CreatedAt: r.CreatedAt,
		ParentRunID: deref(r.ParentRunID), StopReason: deref(r.StopReason), Error: deref(r.Error),
		ErrorClass: deref(r.ErrorClass),
		Usage: Usage{
			InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens,
			CacheReadInputTokens: r.Usage.CacheReadTokens, CacheCreationInputTokens: r.Usage.CacheWriteTokens,
		},
	}
	if r.StartedAt != nil {
		info.StartedAt = *r.StartedAt
	}
	if r.FinishedAt != nil {
		info.FinishedAt = *r.FinishedAt
	}
	return info
}

// convertAll converts rows one by one, stopping at the first error.
func convertAll[R, T any](rows []R, convert func(R) (T, error)) ([]T, error) {
	items := make([]T, len(rows))
	for i, row := range rows {
		var err error
		if items[i], err = convert(row); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// conversationSince returns the cached conversation extended by what a
// run read when it began: the messages stored since, or, after a
// compaction the cache predates, the summary and every live message.
func (s *Session) conversationSince(begun store.Begun) (conversation, error) {
	s.cache.mu.Lock()
	conv := s.cache.conv
	if s.cache.lent {
		conv.messages, conv.wire = slices.Clip(conv.messages), slices.Clip(conv.wire)
	}
	s.cache.lent = true
	s.cache.mu.Unlock()
	rows := begun.History
	if sum := begun.Summary; sum != nil {
		conv = conversation{gen: sum.Gen, summary: sum.Text, firstIntent: sum.FirstIntent, compactedAtSeq: sum.CompactedAtSeq}
	} else {
		// A run that ended after the run read the cache's position, and
		// before it took the lease, may have been cached since: keep only
		// what the cache lacks.
		last := conv.lastSeq()
		for len(rows) > 0 && rows[0].Seq <= last {
			rows = rows[1:]
		}
	}
	return conv.extended(rows)
}

// readHistory returns the conversation as the holder of lease, which is
// not a run, reads it: the cached conversation plus the messages stored
// since, unless a compaction made the cache stale.
func (s *Session) readHistory(ctx context.Context, lease store.Lease) (conversation, error) {
	s.cache.mu.Lock()
	conv, after := s.cache.conv, s.cache.lastSeq
	s.cache.mu.Unlock()
	conv.messages, conv.wire = slices.Clip(conv.messages), slices.Clip(conv.wire) // a run's, maybe

	if conv.gen != lease.CompactionGen {
		sum, err := s.agent.store.Summary(ctx, s.TenantID, s.ID)
		if err != nil {
			return conv, fmt.Errorf("reading the summary: %w", err)
		}
		conv = conversation{gen: sum.Gen, summary: sum.Text, firstIntent: sum.FirstIntent, compactedAtSeq: sum.CompactedAtSeq}
		after = 0
	}
	rows, err := s.agent.store.History(ctx, s.TenantID, s.ID, after, nil)
	if err != nil {
		return conv, err
	}
	return conv.extended(rows)
}

// extended returns the conversation with rows appended to its messages,
// in their array when it has room: the caller owns what lies beyond
// their length (see cachedConversation.lent).
func (c conversation) extended(rows []store.Message) (conversation, error) {
	for _, row := range rows {
		msg, err := messageFromRow(row)
		if err != nil {
			return c, err
		}
		c.messages = append(c.messages, msg)
	}
	return c, nil
}

// remember caches the conversation of a completed run or compaction, all
// of whose messages are stored.
func (s *Session) remember(conv conversation) {
	lastSeq := conv.lastSeq()
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if lastSeq > c.lastSeq || conv.gen > c.conv.gen {
		c.conv, c.lastSeq, c.lent = conv, lastSeq, false
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ToolCall is a row of the tool ledger: one call of a tool by a run.
type ToolCall struct {
	ToolUseID string
	Name      string
	// Input is the input exactly as the model sent it (as a JSON string
	// when it was not valid JSON).
	Input json.RawMessage
	// Status is "started" (committed before the tool ran; a crash left its
	// effect unknown), "completed", "awaiting_approval", "approved" or
	// "denied".
	Status     string
	Output     string
	IsError    bool
	StartedAt  time.Time
	FinishedAt time.Time
	// DecisionNote is what the person who approved or denied the call said.
	DecisionNote string
}

// ToolCalls returns the ledger of the tool calls of one of the session's
// runs; nothing for a run of another session.
func (s *Session) ToolCalls(ctx context.Context, runID string) ([]ToolCall, error) {
	return s.agent.toolCalls(ctx, s.TenantID, &s.ID, runID)
}

// toolCalls returns the ledger of the tenant's run, if a run of the session
// sessionID (nil: of any); nothing for a run of another tenant.
func (a *Agent) toolCalls(ctx context.Context, tenantID string, sessionID *string, runID string) ([]ToolCall, error) {
	if !validID(runID) {
		return nil, nil
	}
	rows, err := a.store.ListToolCalls(ctx, tenantID, sessionID, runID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	calls := make([]ToolCall, len(rows))
	for i, r := range rows {
		calls[i] = ToolCall{ToolUseID: r.ToolUseID, Name: r.Name, Input: r.Input, Status: r.Status, Output: r.Output,
			IsError: r.IsError, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, DecisionNote: r.DecisionNote}
	}
	return calls, nil
}
