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
	// keyVersion sealed Content as stored; nil: plaintext.
	keyVersion *int
}

// message opens the content of a message of the session.
func (o opener) message(sessionID string, m *Message) (err error) {
	m.Content, err = o.json(m.keyVersion, messageContent(sessionID, m.ID), m.Content)
	m.keyVersion = nil
	return err
}

// messages opens the contents of the session's messages.
func (o opener) messages(sessionID string, msgs []Message) error {
	for i := range msgs {
		if err := o.message(sessionID, &msgs[i]); err != nil {
			return err
		}
	}
	return nil
}

// BeginRunParams start a run.
type BeginRunParams struct {
	TenantID  string
	SessionID string
	RunID     string
	Model     string
	LeaseTTL  time.Duration
	// ParentRunID is the run of the calling agent, for a nested agent's
	// run; nil otherwise.
	ParentRunID *string
	// CachedGen and CachedSeq describe the conversation the caller holds:
	// read under compaction generation CachedGen, up to seq CachedSeq.
	CachedGen int
	CachedSeq int64
	// Ticket is the caller's place among the session's waiters (see
	// TakeTicket), nil when it has none: a run begins only when no live
	// waiter arrived before it, and gives its ticket up as it begins.
	Ticket *int64
}

// Begun is a run just begun: its lease, and what the conversation gained
// since the caller's cached copy.
type Begun struct {
	Lease Lease
	// Summary is the session's compaction state when it differs from
	// CachedGen, nil otherwise. History then starts at the first live
	// message.
	Summary *Summary
	// History holds the messages of completed runs stored after
	// CachedSeq, or all of them when Summary is set; for a resumed run,
	// its own too.
	History []Message
	// Prompt is the stored prompt of a resumed run not yet started.
	Prompt json.RawMessage
	// Session is the run's session, read with the lease by ResumeRun.
	Session *Session
	// Async reports an enqueued run (Session.Enqueue), resumed by
	// ResumeRun.
	Async bool
	// Chain is what ResumeRun saw of the session's enqueued runs.
	Chain ResumedChain
}

// ResumedChain is what the job executing a session's enqueued runs (see
// RunJob) learns when it resumes one: the next run to execute, and
// whether the run's last step may end the job.
type ResumedChain struct {
	// NextRun is the session's earliest enqueued run after this one that
	// has not ended, "" for none.
	NextRun string
	// Seen is the session's run_chain (migration 015) when NextRun was
	// read. With no NextRun, the step ending the run ends the job too
	// (StepParams.EndChain, FailedRun.EndChain) when run_chain is still
	// Seen: no run was enqueued since.
	Seen int64
}

const beginRunSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET lease_token = lease_token + 1,
        lease_run_id = $3,
        lease_expires_at = now() + make_interval(secs => $4)
        -- updated_at stays: the session changes with its steps, and an update
        -- of no indexed column is a HOT one, writing no index entry.
    WHERE tenant_id = $1 AND id = $2
      AND (lease_run_id IS NULL OR lease_expires_at <= now())
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.runs w WHERE w.session_id = $2 AND w.status = 'awaiting_approval')
      -- Enqueued runs come first, in order: a new run waits for them.
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.runs e
                      WHERE e.session_id = $2 AND e.async AND e.status IN ('queued', 'running'))
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.session_waiters q
                      WHERE q.session_id = $2 AND q.expires_at > now() AND q.ticket < coalesce($8, 9223372036854775807))
    RETURNING id, tenant_id, lease_token, compaction_gen,
              summary, first_intent, summary_key_version, compacted_at_seq
), served AS (
    DELETE FROM {{schema}}.session_waiters
    WHERE session_id IN (SELECT id FROM s) AND (ticket = $8 OR expires_at <= now())
), abandoned AS (
    UPDATE {{schema}}.runs
    SET status = 'failed', error = 'abandoned: its lease expired', error_class = 'interrupted', finished_at = now()
    WHERE session_id IN (SELECT id FROM s) AND status = 'running' AND NOT async
), run AS (
    INSERT INTO {{schema}}.runs (id, session_id, tenant_id, lease_token, model, parent_run_id, status, started_at)
    SELECT $3, id, tenant_id, lease_token, $5, $6, 'running', now() FROM s
)
SELECT lease_token, compaction_gen, compaction_gen <> $7,
       CASE WHEN compaction_gen <> $7 THEN coalesce(summary, '') ELSE '' END,
       CASE WHEN compaction_gen <> $7 THEN coalesce(first_intent, '') ELSE '' END,
       summary_key_version, compacted_at_seq
FROM s`

// beginHistorySQL reads what a run begun by beginRunSQL, in the same batch,
// needs of the conversation: the messages after the cached seq, or all live
// ones when the cache is of an older compaction generation. A failed lease
// reads nothing.
const beginHistorySQL = `
SELECT m.id::text, m.run_id::text, m.seq, m.role, m.content, m.usage, m.created_at, m.key_version
FROM {{schema}}.sessions s
JOIN {{schema}}.messages m ON m.session_id = s.id AND m.tenant_id = s.tenant_id
LEFT JOIN {{schema}}.runs r ON r.id = m.run_id
WHERE s.tenant_id = $1 AND s.id = $2 AND s.lease_run_id = $3
  AND m.seq > CASE WHEN s.compaction_gen = $4 THEN $5 ELSE 0 END
  AND (m.run_id IS NULL OR r.status = 'completed')
ORDER BY m.seq`

// BeginRun takes the session's lease, records the run, reads the
// conversation's new messages and admits the run's first model call under
// the tenant's limits, in one round trip. It returns ErrBusy while another
// run holds an unexpired lease, ErrNotFound when the tenant has no such
// session, and a *LimitExceeded, having stored nothing, when a limit
// refuses the call. Runs whose lease had expired are marked failed.
func (s *Store) BeginRun(ctx context.Context, p BeginRunParams) (Begun, error) {
	begun := Begun{Lease: Lease{TenantID: p.TenantID, SessionID: p.SessionID, RunID: p.RunID}}
	b := begin{batch: &pgx.Batch{}, begun: &begun}
	b.batch.Queue(s.q(beginRunSQL),
		p.TenantID, p.SessionID, p.RunID, p.LeaseTTL.Seconds(), p.Model, p.ParentRunID, p.CachedGen, p.Ticket,
	).QueryRow(func(row pgx.Row) error {
		return row.Scan(&begun.Lease.Token, &begun.Lease.CompactionGen, &b.stale, &b.sum.Text, &b.sum.FirstIntent,
			&b.sum.keyVersion, &b.sum.CompactedAtSeq)
	})
	b.readHistory(s.q(beginHistorySQL), p.TenantID, p.SessionID, p.RunID, p.CachedGen, p.CachedSeq)
	s.queueAdmit(b.batch, begun.Lease, nil)
	if err := b.send(ctx, s.as(p.TenantID), func() error { return s.whyNoLease(ctx, p.TenantID, p.SessionID) }); err != nil {
		return begun, err
	}
	return begun, b.open(s.opener(ctx, p.TenantID), p.SessionID)
}

// begin is the batch that begins or resumes a run: a statement taking the
// lease, one reading the conversation's new messages, and the admission of
// the run's next model call.
type begin struct {
	batch *pgx.Batch
	begun *Begun
	stale bool    // the caller's cached conversation predates a compaction
	sum   Summary // the compaction state, when stale
}

// readHistory queues the statement reading the history into begun.
func (b begin) readHistory(statement string, args ...any) {
	b.batch.Queue(statement, args...).Query(func(rows pgx.Rows) error {
		var err error
		b.begun.History, err = pgx.CollectRows(rows, scanMessage)
		return err
	})
}

// open opens what the batch read of the session.
func (b *begin) open(o opener, sessionID string) error {
	if err := o.messages(sessionID, b.begun.History); err != nil {
		return err
	}
	if b.begun.Summary != nil {
		return o.summary(sessionID, b.begun.Summary)
	}
	return nil
}

// unflushedCommitSQL lets the transaction of its batch commit without
// waiting for its write-ahead log to reach the disk.
//
// A run's first commit (its lease and its record) is the one commit that
// needs no flush: what follows it in the run is either another commit,
// which flushes it too (the log is flushed in order), or nothing. Only a
// crash of PostgreSQL itself, not of the application, can lose it, within
// a fraction of a second of it; the run's next commit, fenced by the lease
// it no longer finds, then fails, no tool having run (a tool with effects
// runs only after a flushed commit) and no answer having been returned.
// Every other commit is flushed: see docs/performance.md, "What each commit
// waits for".
const unflushedCommitSQL = `SELECT set_config('synchronous_commit', 'off', true)`

// send runs the batch in one round trip, as a transaction whose commit is
// not flushed (see unflushedCommitSQL); when the lease could not be taken
// (the first statement returned no row), whyNot explains it.
func (b *begin) send(ctx context.Context, db querier, whyNot func() error) error {
	b.batch.Queue(unflushedCommitSQL)
	err := db.SendBatch(ctx, b.batch).Close()
	if errors.Is(err, pgx.ErrNoRows) {
		return whyNot()
	}
	if err != nil {
		return limitError(err)
	}
	if b.stale {
		b.sum.Gen = b.begun.Lease.CompactionGen
		b.begun.Summary = &b.sum
	}
	return nil
}

const sessionExistsSQL = `
SELECT EXISTS (SELECT 1 FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2),
       EXISTS (SELECT 1 FROM {{schema}}.runs WHERE tenant_id = $1 AND session_id = $2 AND status = 'awaiting_approval')`

// whyNoLease explains a failed lease acquisition: ErrNotFound,
// ErrApprovalPending or ErrBusy.
func (s *Store) whyNoLease(ctx context.Context, tenantID, sessionID string) error {
	var exists, awaiting bool
	if err := s.as(tenantID).QueryRow(ctx, s.q(sessionExistsSQL), tenantID, sessionID).Scan(&exists, &awaiting); err != nil {
		return err
	}
	switch {
	case !exists:
		return ErrNotFound
	case awaiting:
		return ErrApprovalPending
	}
	return ErrBusy
}

const renewLeaseSQL = `
UPDATE {{schema}}.sessions
SET lease_expires_at = now() + make_interval(secs => $5)
WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4`

// RenewLease extends the lease by ttl, or returns ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) error {
	tag, err := s.as(l.TenantID).Exec(ctx, s.q(renewLeaseSQL), l.TenantID, l.SessionID, l.RunID, l.Token, ttl.Seconds())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

const historySQL = `
SELECT m.id::text, m.run_id::text, m.seq, m.role, m.content, m.usage, m.created_at, m.key_version
FROM {{schema}}.messages m
LEFT JOIN {{schema}}.runs r ON r.id = m.run_id
WHERE m.tenant_id = $1 AND m.session_id = $2 AND m.seq > $3
  AND (m.run_id IS NULL OR m.run_id = $4 OR r.status = 'completed')
ORDER BY m.seq`

// History returns the session's messages after seq that belong in the
// conversation: those of completed runs and of currentRunID, if not nil.
// Messages of failed runs stay stored but are left out.
func (s *Store) History(ctx context.Context, tenantID, sessionID string, afterSeq int64, currentRunID *string) ([]Message, error) {
	return s.readMessages(ctx, tenantID, sessionID, "history", s.q(historySQL), tenantID, sessionID, afterSeq, currentRunID)
}

// readMessages runs statement and returns the session's messages it reads,
// opened.
func (s *Store) readMessages(ctx context.Context, tenantID, sessionID, what, statement string, args ...any) ([]Message, error) {
	msgs, err := queryAll(ctx, s.as(tenantID), what, statement, scanMessage, args...)
	if err != nil {
		return nil, err
	}
	return msgs, s.opener(ctx, tenantID).messages(sessionID, msgs)
}

const listMessagesSQL = `
SELECT id::text, run_id::text, seq, role, content, usage, created_at, key_version
FROM {{schema}}.messages
WHERE tenant_id = $1 AND session_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4`

// ListMessages returns up to limit stored messages of the session after
// seq afterSeq, those of failed runs included, in order.
func (s *Store) ListMessages(ctx context.Context, tenantID, sessionID string, afterSeq int64, limit int) ([]Message, error) {
	return s.readMessages(ctx, tenantID, sessionID, "messages", s.q(listMessagesSQL), tenantID, sessionID, afterSeq, limit)
}

func scanMessage(row pgx.CollectableRow) (Message, error) {
	var m Message
	err := row.Scan(&m.ID, &m.RunID, &m.Seq, &m.Role, &m.Content, &m.Usage, &m.CreatedAt, &m.keyVersion)
	return m, err
}

// Usage is token usage, as counted by the API.
type Usage struct {
	InputTokens      int64
	OutputTokens     int64
	CacheReadTokens  int64
	CacheWriteTokens int64
}

// Tool call statuses in the ledger.
const (
	ToolStarted          = "started"           // committed before the tool runs
	ToolCompleted        = "completed"         // its result is stored
	ToolAwaitingApproval = "awaiting_approval" // waits for DecideToolCall
	ToolApproved         = "approved"          // may run; not started yet
	ToolDenied           = "denied"            // refused by a person
)

// ToolCall is a row of the tool ledger.
type ToolCall struct {
	ID        string
	ToolUseID string
	Name      string
	Input     json.RawMessage
	Status    string
	// Output, IsError and FinishedAt are set once the call completed.
	Output     string
	IsError    bool
	StartedAt  time.Time
	FinishedAt time.Time
	// DecisionNote is what the person who approved or denied it said.
	DecisionNote string
}

// Run statuses.
const (
	RunQueued           = "queued"
	RunRunning          = "running"
	RunAwaitingApproval = "awaiting_approval"
	RunCompleted        = "completed"
	RunFailed           = "failed"
	RunCancelled        = "cancelled"
)

// StepParams commit one step of a run: the messages it produced, the tool
// calls they start or answer, what it used, and the run's status after it.
type StepParams struct {
	Messages   []NewMessage
	ToolCalls  []ToolCall // inserted, or updated when already in the ledger
	Usage      Usage
	Iterations int
	// Status is the run's status after the step: RunRunning (the default),
	// RunCompleted, RunAwaitingApproval or, for an enqueued run put back
	// in the queue, RunQueued; all but the first release the lease.
	Status     string
	StopReason string
	LeaseTTL   time.Duration // the lease is renewed by this much while running
	// Events are the run's events since the last step, stored in the same
	// round trip and transaction.
	Events []NewEvent
	// Model is the model whose calls Usage and Iterations count, for the
	// tenant's usage.
	Model string
	// AdmitNext admits the run's next model call under the tenant's
	// limits: a refusal stores nothing of the step.
	AdmitNext bool
	// EndChain, for the step completing a run its session's job executes,
	// is the ResumedChain.Seen of a run with no NextRun: the step ends the
	// job if no run was enqueued since (Step.ChainEnded).
	EndChain *int64
}

// Step is what a committed step reports.
type Step struct {
	FirstSeq int64 // the seq of the first message stored
	// CancelRequested reports that CancelRun asked the run to stop.
	CancelRequested bool
	// ChainEnded reports that no job is responsible for the session's
	// enqueued runs any more: none is waiting (see StepParams.EndChain).
	ChainEnded bool
}

const commitStepSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET last_seq = last_seq + cardinality($5::uuid[]),
        lease_run_id = CASE WHEN $6 = 'running' THEN lease_run_id END,
        lease_expires_at = CASE WHEN $6 = 'running' THEN now() + make_interval(secs => $7) END,
        run_chain = CASE WHEN $6 = 'completed' AND run_chain = $32 THEN 0 ELSE run_chain END,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4
    RETURNING id, tenant_id, last_seq - cardinality($5::uuid[]) AS base_seq, run_chain
), msg AS (
    INSERT INTO {{schema}}.messages (id, session_id, tenant_id, run_id, seq, role, content, usage, key_version)
    SELECT m.id, s.id, s.tenant_id, $3, s.base_seq + m.n, m.role, m.content, m.usage, $26
    FROM s, unnest($5::uuid[], $8::text[], $9::jsonb[], $10::jsonb[]) WITH ORDINALITY AS m(id, role, content, usage, n)
), ledger AS (
    INSERT INTO {{schema}}.tool_executions
        (id, run_id, session_id, tenant_id, tool_use_id, name, input, status, output, is_error, started_at, finished_at,
         key_version)
    SELECT t.id, $3, s.id, s.tenant_id, t.tool_use_id, t.name, t.input, t.status, t.output, t.is_error, t.started_at,
           t.finished_at, $26
    FROM s, unnest($17::uuid[], $18::text[], $19::text[], $20::jsonb[], $21::text[], $22::text[], $23::boolean[],
                   $24::timestamptz[], $25::timestamptz[])
        AS t(id, tool_use_id, name, input, status, output, is_error, started_at, finished_at)
    ON CONFLICT (run_id, tool_use_id) DO UPDATE
    -- The input is written again with the output: both are sealed under
    -- the row's one key version.
    SET status = EXCLUDED.status, input = EXCLUDED.input, output = EXCLUDED.output, key_version = EXCLUDED.key_version,
        is_error = EXCLUDED.is_error,
        started_at = coalesce(EXCLUDED.started_at, {{schema}}.tool_executions.started_at),
        finished_at = EXCLUDED.finished_at
), cur AS (
    -- The run's row as it is now, locked (FOR UPDATE reads its latest
    -- version): whether its events have ended decides whether the step's
    -- events are appended, and from which seq.
    SELECT id, event_seq, events_ended FROM {{schema}}.runs
    WHERE id = $3 AND EXISTS (SELECT 1 FROM s)
    FOR UPDATE
), run AS (
    UPDATE {{schema}}.runs
    SET status = $6,
        stop_reason = $11,
        prompt = NULL,
        iterations = iterations + $12,
        input_tokens = input_tokens + $13,
        output_tokens = output_tokens + $14,
        cache_read_tokens = cache_read_tokens + $15,
        cache_write_tokens = cache_write_tokens + $16,
        finished_at = CASE WHEN $6 = 'completed' THEN now() END,
        event_seq = cur.event_seq + CASE WHEN cur.events_ended THEN 0 ELSE cardinality($27::text[]) END,
        events_ended = cur.events_ended OR $29
    FROM cur
    WHERE runs.id = cur.id
    RETURNING runs.id, runs.tenant_id, runs.cancel_requested, runs.event_seq,
              NOT cur.events_ended AND cardinality($27::text[]) > 0 AS appended
), ev AS (
    INSERT INTO {{schema}}.run_events (run_id, tenant_id, seq, kind, data, key_version)
    SELECT run.id, run.tenant_id, run.event_seq - cardinality($27::text[]) + e.n, e.kind, e.data, $26
    FROM run, unnest($27::text[], $28::jsonb[]) WITH ORDINALITY AS e(kind, data, n)
    WHERE run.appended
)
SELECT base_seq, coalesce((SELECT cancel_requested FROM run), false),
       (SELECT pg_notify($30, $3::text || ':' || event_seq || CASE WHEN $31 THEN ':stop' ELSE '' END)
        FROM run WHERE appended)::text,
       run_chain = 0
FROM s`

// CommitStep appends the step's messages, writes its ledger rows, adds its
// usage to the run, moves the run to the step's status, releasing the
// lease unless it is still running, and appends the step's events (unless
// the run's events ended) and announces them, all in one statement fenced
// by the lease; it adds the usage to the tenant's and, with AdmitNext, admits the
// next model call, in the same round trip. It returns ErrLeaseLost when the
// lease was taken over, and a *LimitExceeded when a limit refuses the next
// call (nothing is written then).
func (s *Store) CommitStep(ctx context.Context, l Lease, p StepParams) (Step, error) {
	w, err := s.sealer(ctx, l.TenantID)
	if err != nil {
		return Step{}, err
	}
	m, err := w.messageColumns(l.SessionID, p.Messages)
	if err != nil {
		return Step{}, err
	}
	calls, err := w.toolCallColumns(l.RunID, p.ToolCalls)
	if err != nil {
		return Step{}, err
	}
	var stopReason *string
	if p.StopReason != "" {
		stopReason = &p.StopReason
	}
	status := p.Status
	if status == "" {
		status = RunRunning
	}
	ev, err := w.eventColumns(l.RunID, p.Events)
	if err != nil {
		return Step{}, err
	}
	var step Step
	batch := &pgx.Batch{}
	batch.Queue(s.q(commitStepSQL),
		l.TenantID, l.SessionID, l.RunID, l.Token,
		m.ids, status, p.LeaseTTL.Seconds(), m.roles, m.contents, m.usages,
		stopReason, p.Iterations,
		p.Usage.InputTokens, p.Usage.OutputTokens, p.Usage.CacheReadTokens, p.Usage.CacheWriteTokens,
		calls.ids, calls.toolUseIDs, calls.names, calls.inputs, calls.statuses, calls.outputs, calls.isErrors,
		calls.started, calls.finished, w.version(),
		ev.kinds, ev.data, ev.ends(), s.EventsChannel(), ev.ends() || status == RunAwaitingApproval, p.EndChain,
	).QueryRow(func(row pgx.Row) error {
		return row.Scan(&step.FirstSeq, &step.CancelRequested, nil, &step.ChainEnded)
	})
	s.queueUsage(batch, l, &l.Token, Spent{Model: p.Model, Calls: p.Iterations, Usage: p.Usage})
	if p.AdmitNext {
		s.queueAdmit(batch, l, &l.Token)
	}
	err = s.as(l.TenantID).SendBatch(ctx, batch).Close()
	if errors.Is(err, pgx.ErrNoRows) {
		return step, ErrLeaseLost
	}
	step.FirstSeq++
	return step, limitError(err)
}

// toolCallArrays are the ledger rows of a step, column by column, as
// CommitStep binds them; a zero time or an unfinished call binds NULL.
type toolCallArrays struct {
	ids, toolUseIDs, names, statuses []string
	outputs                          []*string
	inputs                           []json.RawMessage
	isErrors                         []*bool
	started, finished                []*time.Time
}

// toolCallColumns seals the run's ledger rows and lays them out column by
// column.
func (w *sealer) toolCallColumns(runID string, calls []ToolCall) (toolCallArrays, error) {
	var c toolCallArrays
	for _, t := range calls {
		input, err := w.json(toolField("input", runID, t.ToolUseID), t.Input)
		if err != nil {
			return c, err
		}
		c.ids = append(c.ids, t.ID)
		c.toolUseIDs = append(c.toolUseIDs, t.ToolUseID)
		c.names = append(c.names, t.Name)
		c.inputs = append(c.inputs, input)
		c.statuses = append(c.statuses, t.Status)
		c.started = append(c.started, timeOrNil(t.StartedAt))
		if t.Status == ToolCompleted {
			output, err := w.text(toolField("output", runID, t.ToolUseID), t.Output)
			if err != nil {
				return c, err
			}
			c.outputs = append(c.outputs, &output)
			c.isErrors = append(c.isErrors, &t.IsError)
			c.finished = append(c.finished, timeOrNil(t.FinishedAt))
		} else {
			c.outputs, c.isErrors, c.finished = append(c.outputs, nil), append(c.isErrors, nil), append(c.finished, nil)
		}
	}
	return c, nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

const failRunSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET last_seq = last_seq + cardinality($5::uuid[]),
        lease_run_id = NULL, lease_expires_at = NULL, updated_at = now(),
        run_chain = CASE WHEN run_chain = $22 THEN 0 ELSE run_chain END
    WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4
    RETURNING id, tenant_id, last_seq - cardinality($5::uuid[]) AS base_seq, run_chain
), msg AS (
    INSERT INTO {{schema}}.messages (id, session_id, tenant_id, run_id, seq, role, content, usage, key_version)
    SELECT m.id, s.id, s.tenant_id, $3, s.base_seq + m.n, m.role, m.content, m.usage, $17
    FROM s, unnest($5::uuid[], $6::text[], $7::jsonb[], $8::jsonb[]) WITH ORDINALITY AS m(id, role, content, usage, n)
), cur AS (
    -- The run's row as it is now, locked (FOR UPDATE reads its latest
    -- version), and whether the run still held its lease: only then are
    -- its last events appended, unless its events ended.
    SELECT id, event_seq, events_ended, EXISTS (SELECT 1 FROM s) AS leased FROM {{schema}}.runs
    WHERE tenant_id = $1 AND id = $3 AND status = 'running'
    FOR UPDATE
), run AS (
    UPDATE {{schema}}.runs
    SET status = $15, error = $9, error_class = $16, finished_at = now(), prompt = NULL,
        iterations = iterations + $10,
        input_tokens = input_tokens + $11,
        output_tokens = output_tokens + $12,
        cache_read_tokens = cache_read_tokens + $13,
        cache_write_tokens = cache_write_tokens + $14,
        event_seq = cur.event_seq + CASE WHEN cur.leased AND NOT cur.events_ended THEN cardinality($18::text[]) ELSE 0 END,
        events_ended = cur.events_ended OR (cur.leased AND $20)
    FROM cur
    WHERE runs.id = cur.id
    RETURNING runs.id, runs.tenant_id, runs.event_seq,
              cur.leased AND NOT cur.events_ended AND cardinality($18::text[]) > 0 AS appended
), ev AS (
    INSERT INTO {{schema}}.run_events (run_id, tenant_id, seq, kind, data, key_version)
    SELECT run.id, run.tenant_id, run.event_seq - cardinality($18::text[]) + e.n, e.kind, e.data, $17
    FROM run, unnest($18::text[], $19::jsonb[]) WITH ORDINALITY AS e(kind, data, n)
    WHERE run.appended
)
SELECT (SELECT pg_notify($21, $3::text || ':' || event_seq || CASE WHEN $20 THEN ':stop' ELSE '' END)
        FROM run WHERE appended)::text,
       coalesce((SELECT run_chain = 0 FROM s), false)`

// FailedRun is how a run failed, with what it had not yet stored.
type FailedRun struct {
	Reason string
	Class  string // why, as a class: see the root package's RunInfo
	// Cancelled records the run as cancelled rather than failed.
	Cancelled bool
	// Messages are the run's messages not yet stored, kept for the audit
	// trail (never in the conversation: the run failed). They are stored
	// only while the run still holds its lease.
	Messages []NewMessage
	// Usage and Iterations are the model calls not yet added to the run.
	Usage      Usage
	Iterations int
	// Events are the run's last events, its end included.
	Events []NewEvent
	// Model is the model whose calls Usage and Iterations count, for the
	// tenant's usage.
	Model string
	// EndChain is StepParams.EndChain for the failed run, which ends the
	// job only while the run holds its lease.
	EndChain *int64
}

// FailRun marks the running run failed (or cancelled), adds what it used,
// stores its unsaved messages and its last events (announced as
// AppendEvents does), both only while it holds its lease, and releases the
// lease, in one statement; what it used is added to the tenant's usage in the
// same round trip, whatever became of the lease: it was spent. It reports
// whether the job executing the session's runs ended (see EndChain).
func (s *Store) FailRun(ctx context.Context, l Lease, f FailedRun) (chainEnded bool, err error) {
	w, err := s.sealer(ctx, l.TenantID)
	if err != nil {
		return false, err
	}
	m, err := w.messageColumns(l.SessionID, f.Messages)
	if err != nil {
		return false, err
	}
	status := RunFailed
	if f.Cancelled {
		status = RunCancelled
	}
	ev, err := w.eventColumns(l.RunID, f.Events)
	if err != nil {
		return false, err
	}
	batch := &pgx.Batch{}
	batch.Queue(s.q(failRunSQL), l.TenantID, l.SessionID, l.RunID, l.Token,
		m.ids, m.roles, m.contents, m.usages, f.Reason, f.Iterations,
		f.Usage.InputTokens, f.Usage.OutputTokens, f.Usage.CacheReadTokens, f.Usage.CacheWriteTokens, status, f.Class,
		w.version(), ev.kinds, ev.data, ev.ends(), s.EventsChannel(), f.EndChain,
	).QueryRow(func(row pgx.Row) error { return row.Scan(nil, &chainEnded) })
	s.queueUsage(batch, l, nil, Spent{Model: f.Model, Calls: f.Iterations, Usage: f.Usage})
	err = s.as(l.TenantID).SendBatch(ctx, batch).Close()
	return chainEnded, err
}

// messageArrays are messages column by column, as statements bind them.
type messageArrays struct {
	ids, roles       []string
	contents, usages []json.RawMessage
}

// messageColumns seals the session's messages and lays them out column by
// column.
func (w *sealer) messageColumns(sessionID string, msgs []NewMessage) (messageArrays, error) {
	n := len(msgs)
	c := messageArrays{ids: make([]string, n), roles: make([]string, n),
		contents: make([]json.RawMessage, n), usages: make([]json.RawMessage, n)}
	for i, m := range msgs {
		content, err := w.json(messageContent(sessionID, m.ID), m.Content)
		if err != nil {
			return c, err
		}
		c.ids[i], c.roles[i], c.contents[i], c.usages[i] = m.ID, m.Role, content, m.Usage
	}
	return c, nil
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
	ErrorClass  *string
	Async       bool
	Iterations  int
	Usage       Usage
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
	// LeaseExpired reports, for a running run, that no process holds its
	// session: the run is stuck until resumed or rescued.
	LeaseExpired bool
}

const runColumns = `r.id::text, r.session_id::text, r.parent_run_id::text, r.status, r.model, r.stop_reason, r.error,
       r.error_class, r.async, r.iterations, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.created_at, r.started_at, r.finished_at,
       r.status = 'running' AND NOT EXISTS (
           SELECT 1 FROM {{schema}}.sessions s
           WHERE s.id = r.session_id AND s.lease_run_id = r.id AND s.lease_expires_at > now())`

func scanRun(row pgx.CollectableRow) (Run, error) { return scanRunInto(row) }

// scanRunInto scans runColumns, then the columns that follow into more.
func scanRunInto(row pgx.CollectableRow, more ...any) (Run, error) {
	var r Run
	err := row.Scan(append([]any{&r.ID, &r.SessionID, &r.ParentRunID, &r.Status, &r.Model, &r.StopReason, &r.Error,
		&r.ErrorClass, &r.Async, &r.Iterations,
		&r.Usage.InputTokens, &r.Usage.OutputTokens, &r.Usage.CacheReadTokens, &r.Usage.CacheWriteTokens,
		&r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.LeaseExpired}, more...)...)
	return r, err
}

const listRunsSQL = `
SELECT ` + runColumns + `
FROM {{schema}}.runs r
WHERE r.tenant_id = $1 AND r.session_id = $2 AND ($3::uuid IS NULL OR r.id > $3)
ORDER BY r.id
LIMIT $4`

// ListRuns returns up to limit of the session's runs after the run afterID
// (nil: from the first), oldest first: run ids are time-ordered.
func (s *Store) ListRuns(ctx context.Context, tenantID, sessionID string, afterID *string, limit int) ([]Run, error) {
	return queryAll(ctx, s.as(tenantID), "runs", s.q(listRunsSQL), scanRun, tenantID, sessionID, afterID, limit)
}

const listTenantRunsSQL = `
SELECT ` + runColumns + `
FROM {{schema}}.runs r
WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.status = $2) AND ($3::uuid IS NULL OR r.id > $3)
ORDER BY r.id
LIMIT $4`

// ListTenantRuns returns up to limit of the tenant's runs in status (nil:
// any), after the run afterID, oldest first.
func (s *Store) ListTenantRuns(ctx context.Context, tenantID string, status, afterID *string, limit int) ([]Run, error) {
	return queryAll(ctx, s.as(tenantID), "runs", s.q(listTenantRunsSQL), scanRun, tenantID, status, afterID, limit)
}

const getRunSQL = `SELECT ` + runColumns + ` FROM {{schema}}.runs r WHERE r.tenant_id = $1 AND r.id = $2`

// GetRun returns the tenant's run, or ErrNotFound.
func (s *Store) GetRun(ctx context.Context, tenantID, runID string) (Run, error) {
	runs, err := queryAll(ctx, s.as(tenantID), "run", s.q(getRunSQL), scanRun, tenantID, runID)
	if err != nil {
		return Run{}, err
	}
	if len(runs) == 0 {
		return Run{}, ErrNotFound
	}
	return runs[0], nil
}

const listToolCallsSQL = `
SELECT id::text, tool_use_id, name, input, status, coalesce(output, ''), coalesce(is_error, false),
       started_at, finished_at, coalesce(decision_note, ''), key_version, note_key_version
FROM {{schema}}.tool_executions
WHERE tenant_id = $1 AND run_id = $2 AND ($3::uuid IS NULL OR session_id = $3)
ORDER BY started_at NULLS LAST, tool_use_id`

// ListToolCalls returns the ledger rows of the tenant's run, if it is a run
// of the session sessionID (nil: of any session).
func (s *Store) ListToolCalls(ctx context.Context, tenantID string, sessionID *string, runID string) ([]ToolCall, error) {
	o := s.opener(ctx, tenantID)
	return queryAll(ctx, s.as(tenantID), "tool calls", s.q(listToolCallsSQL), func(row pgx.CollectableRow) (ToolCall, error) {
		var t ToolCall
		var started, finished *time.Time
		var key, noteKey *int
		err := row.Scan(&t.ID, &t.ToolUseID, &t.Name, &t.Input, &t.Status, &t.Output, &t.IsError,
			&started, &finished, &t.DecisionNote, &key, &noteKey)
		if err != nil {
			return t, err
		}
		if started != nil {
			t.StartedAt = *started
		}
		if finished != nil {
			t.FinishedAt = *finished
		}
		return t, o.toolCall(runID, &t, key, noteKey)
	}, tenantID, runID, sessionID)
}

// toolCall opens the run's ledger row, sealed under key (input and
// output) and noteKey (the decision's note).
func (o opener) toolCall(runID string, t *ToolCall, key, noteKey *int) (err error) {
	if t.Input, err = o.json(key, toolField("input", runID, t.ToolUseID), t.Input); err != nil {
		return err
	}
	if t.Output != "" {
		if t.Output, err = o.text(key, toolField("output", runID, t.ToolUseID), t.Output); err != nil {
			return err
		}
	}
	if t.DecisionNote != "" {
		t.DecisionNote, err = o.text(noteKey, toolField("decision_note", runID, t.ToolUseID), t.DecisionNote)
	}
	return err
}
