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

	mu      sync.Mutex
	history []Message // the conversation as last read, a cache
	lastSeq int64     // the highest seq read into history
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
// the cached messages plus those stored since. It reads only what is new.
func (s *Session) readHistory(ctx context.Context, lease store.Lease) ([]Message, error) {
	s.mu.Lock()
	cached, after := s.history, s.lastSeq
	s.mu.Unlock()

	rows, err := s.agent.store.History(ctx, lease, after)
	if err != nil {
		return nil, err
	}
	history := make([]Message, len(cached), len(cached)+len(rows)+2)
	copy(history, cached)
	for _, row := range rows {
		msg, err := messageFromRow(row)
		if err != nil {
			return nil, err
		}
		history = append(history, msg)
	}
	return history, nil
}

// remember caches the history of a completed run, whose messages up to
// lastSeq are all stored.
func (s *Session) remember(history []Message, lastSeq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lastSeq > s.lastSeq {
		s.history, s.lastSeq = history, lastSeq
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
