package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease identifies the run holding a session and its fencing token. Every
// write a run makes is conditional on both, in the same statement, so a run
// whose lease was taken over cannot write.
type Lease struct {
	TenantID  string
	SessionID string
	RunID     string // the run holding the lease, or the id of a compaction
	Token     int64
	// CompactionGen is the session's compaction generation when the lease
	// was taken: a cached history read under an older one is stale.
	CompactionGen int
}

// NewMessage is a message to append to a session.
type NewMessage struct {
	ID      string
	Role    string // "user" or "assistant"
	Content json.RawMessage
	Usage   json.RawMessage // nil for none
}

// Message is a row of the messages table.
type Message struct {
	ID        string
	RunID     *string
	Seq       int64
	Role      string
	Content   json.RawMessage
	Usage     json.RawMessage
	CreatedAt time.Time
}

// BeginRunParams start a run.
type BeginRunParams struct {
	TenantID  string
	SessionID string
	RunID     string
	Model     string
	LeaseTTL  time.Duration
	Prompt    NewMessage
	// ParentRunID is the run of the calling agent, for a nested agent's
	// run; nil otherwise.
	ParentRunID *string
}

const beginRunSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET lease_token = lease_token + 1,
        lease_run_id = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        last_seq = last_seq + 1,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2
      AND (lease_run_id IS NULL OR lease_expires_at <= now())
    RETURNING id, tenant_id, lease_token, last_seq, compaction_gen
), abandoned AS (
    UPDATE {{schema}}.runs
    SET status = 'failed', error = 'abandoned: its lease expired', finished_at = now()
    WHERE session_id IN (SELECT id FROM s) AND status = 'running'
), run AS (
    INSERT INTO {{schema}}.runs (id, session_id, tenant_id, lease_token, model, parent_run_id)
    SELECT $3, id, tenant_id, lease_token, $5, $9 FROM s
), prompt AS (
    INSERT INTO {{schema}}.messages (id, session_id, tenant_id, run_id, seq, role, content)
    SELECT $6, id, tenant_id, $3, last_seq, $7, $8 FROM s
)
SELECT lease_token, compaction_gen FROM s`

const sessionExistsSQL = `SELECT EXISTS (SELECT 1 FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2)`

// BeginRun takes the session's lease, records the run and appends the
// prompt, in one statement. It returns ErrBusy while another run holds an
// unexpired lease, and ErrNotFound when the tenant has no such session. Runs
// whose lease had expired are marked failed.
func (s *Store) BeginRun(ctx context.Context, p BeginRunParams) (Lease, error) {
	lease := Lease{TenantID: p.TenantID, SessionID: p.SessionID, RunID: p.RunID}
	err := s.db.QueryRow(ctx, s.q(beginRunSQL),
		p.TenantID, p.SessionID, p.RunID, p.LeaseTTL.Seconds(), p.Model,
		p.Prompt.ID, p.Prompt.Role, p.Prompt.Content, p.ParentRunID,
	).Scan(&lease.Token, &lease.CompactionGen)
	if !errors.Is(err, pgx.ErrNoRows) {
		return lease, err
	}
	return lease, s.whyNoLease(ctx, p.TenantID, p.SessionID)
}

// whyNoLease explains a failed lease acquisition: ErrNotFound or ErrBusy.
func (s *Store) whyNoLease(ctx context.Context, tenantID, sessionID string) error {
	var exists bool
	if err := s.db.QueryRow(ctx, s.q(sessionExistsSQL), tenantID, sessionID).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return ErrNotFound
	}
	return ErrBusy
}

const renewLeaseSQL = `
UPDATE {{schema}}.sessions
SET lease_expires_at = now() + make_interval(secs => $5)
WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4`

// RenewLease extends the lease by ttl, or returns ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) error {
	tag, err := s.db.Exec(ctx, s.q(renewLeaseSQL), l.TenantID, l.SessionID, l.RunID, l.Token, ttl.Seconds())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

const historySQL = `
SELECT m.id::text, m.run_id::text, m.seq, m.role, m.content, m.usage, m.created_at
FROM {{schema}}.messages m
LEFT JOIN {{schema}}.runs r ON r.id = m.run_id
WHERE m.tenant_id = $1 AND m.session_id = $2 AND m.seq > $3
  AND (m.run_id IS NULL OR m.run_id = $4 OR r.status = 'completed')
ORDER BY m.seq`

// History returns the session's messages after seq that belong in the
// conversation: those of completed runs and of currentRunID, if not nil.
// Messages of failed runs stay stored but are left out.
func (s *Store) History(ctx context.Context, tenantID, sessionID string, afterSeq int64, currentRunID *string) ([]Message, error) {
	return queryAll(ctx, s.db, "history", s.q(historySQL), scanMessage, tenantID, sessionID, afterSeq, currentRunID)
}

const listMessagesSQL = `
SELECT id::text, run_id::text, seq, role, content, usage, created_at
FROM {{schema}}.messages
WHERE tenant_id = $1 AND session_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4`

// ListMessages returns up to limit stored messages of the session after
// seq afterSeq, those of failed runs included, in order.
func (s *Store) ListMessages(ctx context.Context, tenantID, sessionID string, afterSeq int64, limit int) ([]Message, error) {
	return queryAll(ctx, s.db, "messages", s.q(listMessagesSQL), scanMessage, tenantID, sessionID, afterSeq, limit)
}

func scanMessage(row pgx.CollectableRow) (Message, error) {
	var m Message
	err := row.Scan(&m.ID, &m.RunID, &m.Seq, &m.Role, &m.Content, &m.Usage, &m.CreatedAt)
	return m, err
}

// Usage is token usage, as counted by the API.
type Usage struct {
	InputTokens      int64
	OutputTokens     int64
	CacheReadTokens  int64
	CacheWriteTokens int64
}

// ToolCall is a row of the tool ledger.
type ToolCall struct {
	ID         string
	ToolUseID  string
	Name       string
	Input      json.RawMessage
	Output     string
	IsError    bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// StepParams commit one step of a run: the messages it produced, the tool
// calls they answer, what it used, and, when Finish is set, the run's
// completion and the release of the lease.
type StepParams struct {
	Messages   []NewMessage
	ToolCalls  []ToolCall
	Usage      Usage
	Iterations int
	Finish     bool
	StopReason string
	LeaseTTL   time.Duration // the lease is renewed by this much when not finishing
}

const commitStepSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET last_seq = last_seq + cardinality($5::uuid[]),
        lease_run_id = CASE WHEN $6 THEN NULL ELSE lease_run_id END,
        lease_expires_at = CASE WHEN $6 THEN NULL ELSE now() + make_interval(secs => $7) END,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4
    RETURNING id, tenant_id, last_seq - cardinality($5::uuid[]) AS base_seq
), msg AS (
    INSERT INTO {{schema}}.messages (id, session_id, tenant_id, run_id, seq, role, content, usage)
    SELECT m.id, s.id, s.tenant_id, $3, s.base_seq + m.n, m.role, m.content, m.usage
    FROM s, unnest($5::uuid[], $8::text[], $9::jsonb[], $10::jsonb[]) WITH ORDINALITY AS m(id, role, content, usage, n)
), ledger AS (
    INSERT INTO {{schema}}.tool_executions
        (id, run_id, session_id, tenant_id, tool_use_id, name, input, output, is_error, started_at, finished_at)
    SELECT t.id, $3, s.id, s.tenant_id, t.tool_use_id, t.name, t.input, t.output, t.is_error, t.started_at, t.finished_at
    FROM s, unnest($17::uuid[], $18::text[], $19::text[], $20::jsonb[], $21::text[], $22::boolean[], $23::timestamptz[], $24::timestamptz[])
        AS t(id, tool_use_id, name, input, output, is_error, started_at, finished_at)
), run AS (
    UPDATE {{schema}}.runs
    SET status = CASE WHEN $6 THEN 'completed' ELSE status END,
        stop_reason = $11,
        iterations = iterations + $12,
        input_tokens = input_tokens + $13,
        output_tokens = output_tokens + $14,
        cache_read_tokens = cache_read_tokens + $15,
        cache_write_tokens = cache_write_tokens + $16,
        finished_at = CASE WHEN $6 THEN now() END
    WHERE id = $3 AND EXISTS (SELECT 1 FROM s)
)
SELECT base_seq FROM s`

// CommitStep appends the step's messages, adds its usage to the run and,
// with Finish, completes the run and releases the lease, all in one
// statement fenced by the lease. It returns the seq of the first appended
// message, or ErrLeaseLost when the lease was taken over (nothing is
// written then).
func (s *Store) CommitStep(ctx context.Context, l Lease, p StepParams) (int64, error) {
	n := len(p.Messages)
	ids, roles := make([]string, n), make([]string, n)
	contents, usages := make([]json.RawMessage, n), make([]json.RawMessage, n)
	for i, m := range p.Messages {
		ids[i], roles[i], contents[i], usages[i] = m.ID, m.Role, m.Content, m.Usage
	}
	calls := toolCallColumns(p.ToolCalls)
	var stopReason *string
	if p.StopReason != "" {
		stopReason = &p.StopReason
	}
	var baseSeq int64
	err := s.db.QueryRow(ctx, s.q(commitStepSQL),
		l.TenantID, l.SessionID, l.RunID, l.Token,
		ids, p.Finish, p.LeaseTTL.Seconds(), roles, contents, usages,
		stopReason, p.Iterations,
		p.Usage.InputTokens, p.Usage.OutputTokens, p.Usage.CacheReadTokens, p.Usage.CacheWriteTokens,
		calls.ids, calls.toolUseIDs, calls.names, calls.inputs, calls.outputs, calls.isErrors, calls.started, calls.finished,
	).Scan(&baseSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrLeaseLost
	}
	return baseSeq + 1, err
}

// toolCallArrays are the ledger rows of a step, column by column, as
// CommitStep binds them.
type toolCallArrays struct {
	ids, toolUseIDs, names, outputs []string
	inputs                          []json.RawMessage
	isErrors                        []bool
	started, finished               []time.Time
}

func toolCallColumns(calls []ToolCall) toolCallArrays {
	var c toolCallArrays
	for _, t := range calls {
		c.ids = append(c.ids, t.ID)
		c.toolUseIDs = append(c.toolUseIDs, t.ToolUseID)
		c.names = append(c.names, t.Name)
		c.inputs = append(c.inputs, t.Input)
		c.outputs = append(c.outputs, t.Output)
		c.isErrors = append(c.isErrors, t.IsError)
		c.started = append(c.started, t.StartedAt)
		c.finished = append(c.finished, t.FinishedAt)
	}
	return c
}

const failRunSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET lease_run_id = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4
    RETURNING id
), dropped AS (
    DELETE FROM {{schema}}.messages
    WHERE $5 AND run_id = $3 AND session_id IN (SELECT id FROM s)
)
UPDATE {{schema}}.runs
SET status = 'failed', error = $6, finished_at = now()
WHERE tenant_id = $1 AND id = $3 AND status = 'running'`

// FailRun marks the run failed with reason and releases its lease if it still
// holds it. With dropMessages, the run's messages are deleted too: for a
// prompt that a policy hook refused, which must not be kept.
func (s *Store) FailRun(ctx context.Context, l Lease, reason string, dropMessages bool) error {
	_, err := s.db.Exec(ctx, s.q(failRunSQL), l.TenantID, l.SessionID, l.RunID, l.Token, dropMessages, reason)
	return err
}

// Run is a row of the runs table.
type Run struct {
	ID          string
	SessionID   string
	ParentRunID *string
	Status      string
	Model       string
	StopReason  *string
	Error       *string
	Iterations  int
	Usage       Usage
	StartedAt   time.Time
	FinishedAt  *time.Time
}

const listRunsSQL = `
SELECT id::text, session_id::text, parent_run_id::text, status, model, stop_reason, error, iterations,
       input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, started_at, finished_at
FROM {{schema}}.runs
WHERE tenant_id = $1 AND session_id = $2 AND ($3::uuid IS NULL OR id > $3)
ORDER BY id
LIMIT $4`

// ListRuns returns up to limit of the session's runs after the run afterID
// (nil: from the first), oldest first: run ids are time-ordered.
func (s *Store) ListRuns(ctx context.Context, tenantID, sessionID string, afterID *string, limit int) ([]Run, error) {
	return queryAll(ctx, s.db, "runs", s.q(listRunsSQL), func(row pgx.CollectableRow) (Run, error) {
		var r Run
		err := row.Scan(&r.ID, &r.SessionID, &r.ParentRunID, &r.Status, &r.Model, &r.StopReason, &r.Error, &r.Iterations,
			&r.Usage.InputTokens, &r.Usage.OutputTokens, &r.Usage.CacheReadTokens, &r.Usage.CacheWriteTokens,
			&r.StartedAt, &r.FinishedAt)
		return r, err
	}, tenantID, sessionID, afterID, limit)
}

const listToolCallsSQL = `
SELECT id::text, tool_use_id, name, input, output, is_error, started_at, finished_at
FROM {{schema}}.tool_executions
WHERE tenant_id = $1 AND session_id = $2 AND run_id = $3
ORDER BY started_at, tool_use_id`

// ListToolCalls returns the ledger rows of a run of the tenant's session.
func (s *Store) ListToolCalls(ctx context.Context, tenantID, sessionID, runID string) ([]ToolCall, error) {
	return queryAll(ctx, s.db, "tool calls", s.q(listToolCallsSQL), func(row pgx.CollectableRow) (ToolCall, error) {
		var t ToolCall
		err := row.Scan(&t.ID, &t.ToolUseID, &t.Name, &t.Input, &t.Output, &t.IsError, &t.StartedAt, &t.FinishedAt)
		return t, err
	}, tenantID, sessionID, runID)
}
