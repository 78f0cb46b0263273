package agentpg

import (
	"context"
	"encoding/json"
	"fmt"
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

	agent     *Agent
	overrides sessionOverrides
	depth     int // how deep the session nests under its ancestors

	cache *cachedConversation // shared by the agent's Session values of this session
}

// cachedConversation is the conversation of a session as last read, so
// that a turn reads only what is new. The agent keeps the most recently
// used ones (Config.ConversationCacheSize).
type cachedConversation struct {
	mu      sync.Mutex
	conv    conversation
	lastSeq int64 // the highest seq read into conv
}

// conversation is what a run sends the model: the summary of what
// compaction archived, if any, and the live messages.
type conversation struct {
	gen            int    // the session's compaction generation it was read under
	summary        string // "" before the first summarizing compaction
	firstIntent    string // the user's first request, kept through compactions
	compactedAtSeq int64  // usage of messages up to this seq predates the last compaction
	messages       []Message
}

// Messages returns every stored message of the session in order, including
// those of failed runs, which are not sent to the model.
func (s *Session) Messages(ctx context.Context) ([]Message, error) {
	rows, err := s.agent.store.ListMessages(ctx, s.TenantID, s.ID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	msgs := make([]Message, 0, len(rows))
	for _, row := range rows {
		msg, err := messageFromRow(row)
		if err != nil {
			return nil, fmt.Errorf("agentpg: %w", err)
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// ArchivedMessage is a message compaction moved out of the conversation:
// one it removed, or the original of one it pruned.
type ArchivedMessage struct {
	Message
	CompactionID string
	ArchivedAt   time.Time
}

// Archive returns the session's archived messages in order.
func (s *Session) Archive(ctx context.Context) ([]ArchivedMessage, error) {
	rows, err := s.agent.store.ListArchive(ctx, s.TenantID, s.ID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	archived := make([]ArchivedMessage, 0, len(rows))
	for _, row := range rows {
		msg, err := messageFromRow(row.Message)
		if err != nil {
			return nil, fmt.Errorf("agentpg: %w", err)
		}
		archived = append(archived, ArchivedMessage{Message: msg, CompactionID: row.CompactionID, ArchivedAt: row.ArchivedAt})
	}
	return archived, nil
}

// RunInfo describes a stored run.
type RunInfo struct {
	ID string
	// ParentRunID is the run that called this one, for a run of an agent
	// offered as a tool (Agent.AsTool).
	ParentRunID string
	Status      string // "running", "completed" or "failed"
	Model       string
	StopReason  string
	Error       string // why a failed run failed
	Iterations  int    // model calls made
	Usage       Usage
	StartedAt   time.Time
	FinishedAt  time.Time // zero while running
}

// Runs returns the session's runs, oldest first.
func (s *Session) Runs(ctx context.Context) ([]RunInfo, error) {
	rows, err := s.agent.store.ListRuns(ctx, s.TenantID, s.ID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	runs := make([]RunInfo, len(rows))
	for i, r := range rows {
		runs[i] = RunInfo{
			ID: r.ID, Status: r.Status, Model: r.Model, Iterations: r.Iterations, StartedAt: r.StartedAt,
			Usage: Usage{
				InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens,
				CacheReadInputTokens: r.Usage.CacheReadTokens, CacheCreationInputTokens: r.Usage.CacheWriteTokens,
			},
		}
		runs[i].ParentRunID = deref(r.ParentRunID)
		runs[i].StopReason = deref(r.StopReason)
		runs[i].Error = deref(r.Error)
		if r.FinishedAt != nil {
			runs[i].FinishedAt = *r.FinishedAt
		}
	}
	return runs, nil
}

// readHistory returns the conversation to send for the run holding lease:
// the cached conversation plus the messages stored since. It reads only
// what is new, unless a compaction made the cache stale.
func (s *Session) readHistory(ctx context.Context, lease store.Lease) (conversation, error) {
	s.cache.mu.Lock()
	conv, after := s.cache.conv, s.cache.lastSeq
	s.cache.mu.Unlock()

	if conv.gen != lease.CompactionGen {
		sum, err := s.agent.store.Summary(ctx, s.TenantID, s.ID)
		if err != nil {
			return conv, fmt.Errorf("reading the summary: %w", err)
		}
		conv = conversation{gen: sum.Gen, summary: sum.Text, firstIntent: sum.FirstIntent, compactedAtSeq: sum.CompactedAtSeq}
		after = 0
	}
	rows, err := s.agent.store.History(ctx, s.TenantID, s.ID, after, &lease.RunID)
	if err != nil {
		return conv, err
	}
	messages := make([]Message, len(conv.messages), len(conv.messages)+len(rows)+2)
	copy(messages, conv.messages)
	for _, row := range rows {
		msg, err := messageFromRow(row)
		if err != nil {
			return conv, err
		}
		messages = append(messages, msg)
	}
	conv.messages = messages
	return conv, nil
}

// remember caches the conversation of a completed run, whose messages up
// to lastSeq are all stored.
func (s *Session) remember(conv conversation, lastSeq int64) {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if lastSeq > c.lastSeq || conv.gen > c.conv.gen {
		c.conv, c.lastSeq = conv, lastSeq
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
	ToolUseID  string
	Name       string
	Input      json.RawMessage
	Output     string
	IsError    bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// ToolCalls returns the ledger of the run's tool calls.
func (s *Session) ToolCalls(ctx context.Context, runID string) ([]ToolCall, error) {
	if !validID(runID) {
		return nil, nil
	}
	rows, err := s.agent.store.ListToolCalls(ctx, s.TenantID, s.ID, runID)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	calls := make([]ToolCall, len(rows))
	for i, r := range rows {
		calls[i] = ToolCall{ToolUseID: r.ToolUseID, Name: r.Name, Input: r.Input, Output: r.Output,
			IsError: r.IsError, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
	}
	return calls, nil
}
