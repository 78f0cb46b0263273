package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of run transitions.
var (
	// ErrApprovalPending: the run, or a run of the session, waits for
	// tool calls to be decided.
	ErrApprovalPending = errors.New("approval pending")
	// ErrFinished: the run has already ended.
	ErrFinished = errors.New("run finished")
	// ErrNotPending: the tool call does not wait for a decision.
	ErrNotPending = errors.New("tool call not pending")
)

// ResumeRunParams resume a run that is queued, was interrupted or waited
// for approvals.
type ResumeRunParams struct {
	TenantID string
	// SessionID is the run's session, whose cached conversation CachedGen
	// and CachedSeq describe.
	SessionID string
	RunID     string
	LeaseTTL  time.Duration
	CachedGen int
	CachedSeq int64
}

// resumeRunSQL takes the lease of a run's session for the run, when the
// run may go on, and returns one row for a run of the tenant's session:
// first the outcome (empty when the lease was taken, else why not:
// finished, approval_pending or busy), then, with the lease, what the
// run needs. A run the tenant's session does not have returns no row.
const resumeRunSQL = `
WITH cur AS (
    SELECT id, session_id, status, prompt, key_version, async,
           EXISTS (SELECT 1 FROM {{schema}}.tool_executions t WHERE t.run_id = $2 AND t.status = 'awaiting_approval')
               AS approval_pending,
           -- A session's runs execute in order: a queued run waits for the
           -- earlier ones to end, save for a synchronous one a crash left
           -- running, which nothing resumes by itself.
           status = 'queued' AND EXISTS (
               SELECT 1 FROM {{schema}}.runs e
               LEFT JOIN {{schema}}.sessions es ON es.id = e.session_id
               WHERE e.session_id = runs.session_id AND e.id < $2
                 AND e.status IN ('queued', 'running', 'awaiting_approval')
                 AND (e.status <> 'running' OR e.async
                      OR (es.lease_run_id = e.id AND es.lease_expires_at > now()))) AS behind,
           -- For the job executing the session's enqueued runs: the next
           -- one, and the count of runs enqueued (see ResumedChain).
           (SELECT n.id::text FROM {{schema}}.runs n
            WHERE n.session_id = runs.session_id AND n.id > $2 AND n.async
              AND n.status IN ('queued', 'running', 'awaiting_approval')
            ORDER BY n.id LIMIT 1) AS next_run,
           (SELECT c.run_chain FROM {{schema}}.sessions c WHERE c.id = runs.session_id) AS run_chain
    FROM {{schema}}.runs
    WHERE tenant_id = $1 AND id = $2 AND session_id = $5
), r AS (
    SELECT id, session_id, prompt, async FROM cur
    WHERE status IN ('queued', 'running', 'awaiting_approval') AND NOT approval_pending AND NOT behind
), s AS (
    UPDATE {{schema}}.sessions
    SET lease_token = lease_token + 1,
        lease_run_id = $2,
        lease_expires_at = now() + make_interval(secs => $3)
        -- updated_at stays: the session changes with its steps, and an update
        -- of no indexed column is a HOT one, writing no index entry.
    WHERE tenant_id = $1 AND id = (SELECT session_id FROM r)
      AND (lease_run_id IS NULL OR lease_expires_at <= now())
    RETURNING id, lease_token, compaction_gen, summary, first_intent, summary_key_version, compacted_at_seq,
              tenant_id, identifier, parent_id, depth, metadata, overrides, created_at, updated_at, key_version
), run AS (
    UPDATE {{schema}}.runs
    SET status = 'running', lease_token = s.lease_token, started_at = coalesce(started_at, now())
    FROM s WHERE runs.id = $2
)
SELECT CASE WHEN s.id IS NOT NULL THEN ''
            WHEN cur.status IN ('completed', 'failed', 'cancelled') THEN 'finished'
            WHEN cur.approval_pending THEN 'approval_pending'
            ELSE 'busy' END,
       s.id::text, s.lease_token, s.compaction_gen, s.compaction_gen <> $4,
       CASE WHEN s.compaction_gen <> $4 THEN coalesce(s.summary, '') ELSE '' END,
       CASE WHEN s.compaction_gen <> $4 THEN coalesce(s.first_intent, '') ELSE '' END,
       s.summary_key_version, s.compacted_at_seq, cur.prompt, cur.key_version, cur.async,
       s.tenant_id, s.identifier, s.parent_id::text, s.depth, s.metadata, s.overrides, s.created_at, s.updated_at,
       s.key_version, cur.next_run, cur.run_chain
FROM cur LEFT JOIN s ON true`

// notResumed maps resumeRunSQL's outcomes to errors.
var notResumed = map[string]error{"finished": ErrFinished, "approval_pending": ErrApprovalPending, "busy": ErrBusy}

// ResumeRun takes the lease of the run's session for the run and moves it
// to running, reading what the conversation gained since the cached copy
// (the run's own messages included), and admits its next model call under
// the tenant's limits, in one round trip. It returns ErrNotFound for no
// such run of the tenant's session, ErrFinished for a run that ended,
// ErrApprovalPending while calls wait for a decision, ErrBusy while a
// process holds the session or, for a queued run, while an earlier run of
// the session has not ended, and a *LimitExceeded, having changed nothing,
// when a limit refuses the call. The statement taking the lease says why
// it could not: there is no second read.
func (s *Store) ResumeRun(ctx context.Context, p ResumeRunParams) (Begun, error) {
	begun := Begun{Lease: Lease{TenantID: p.TenantID, RunID: p.RunID}, Session: &Session{}}
	b := begin{batch: &pgx.Batch{}, begun: &begun}
	sess := begun.Session
	var outcome string
	var promptKey *int
	var nextRun *string
	b.batch.Queue(s.q(resumeRunSQL), p.TenantID, p.RunID, p.LeaseTTL.Seconds(), p.CachedGen, p.SessionID).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(outcomeRow{outcome: &outcome, dest: []any{
				&sess.ID, &begun.Lease.Token, &begun.Lease.CompactionGen, &b.stale,
				&b.sum.Text, &b.sum.FirstIntent, &b.sum.keyVersion, &b.sum.CompactedAtSeq,
				&begun.Prompt, &promptKey, &begun.Async,
				&sess.TenantID, &sess.Identifier, &sess.ParentID, &sess.Depth, &sess.Metadata, &sess.Overrides,
				&sess.CreatedAt, &sess.UpdatedAt, &sess.keyVersion, &nextRun, &begun.Chain.Seen}})
		})
	b.readHistory(s.q(resumeHistorySQL), p.TenantID, p.RunID, p.CachedGen, p.CachedSeq)
	s.queueAdmit(b.batch, begun.Lease, nil)
	err := b.send(ctx, s.as(p.TenantID), func() error { return ErrNotFound })
	if err == nil && outcome != "" {
		if err = notResumed[outcome]; err == nil {
			err = fmt.Errorf("resuming the run: unknown outcome %q", outcome)
		}
	}
	begun.Lease.SessionID = sess.ID
	if err != nil {
		return begun, err
	}
	if nextRun != nil {
		begun.Chain.NextRun = *nextRun
	}
	o := s.opener(ctx, p.TenantID)
	if begun.Prompt, err = o.json(promptKey, runPrompt(p.RunID), begun.Prompt); err != nil {
		return begun, err
	}
	if err := o.session(sess); err != nil {
		return begun, err
	}
	return begun, b.open(o, sess.ID)
}

// outcomeRow scans a row whose first column is an outcome into outcome,
// and the other columns into dest only when it is "" (success); they are
// NULL otherwise. An outcome is not an error of the batch: pgx forgets the
// batch's prepared statements on any error.
type outcomeRow struct {
	outcome *string
	dest    []any
}

// ScanRow implements pgx.RowScanner.
func (o outcomeRow) ScanRow(rows pgx.Rows) error {
	dest := make([]any, len(o.dest)+1) // a nil destination skips its column
	dest[0] = o.outcome
	if err := rows.Scan(dest...); err != nil || *o.outcome != "" {
		return err
	}
	copy(dest[1:], o.dest)
	dest[0] = nil
	return rows.Scan(dest...)
}

// resumeHistorySQL is beginHistorySQL for a resumed run: its own messages
// belong to the conversation too.
const resumeHistorySQL = `
SELECT m.id::text, m.run_id::text, m.seq, m.role, m.content, m.usage, m.created_at, m.key_version
FROM {{schema}}.sessions s
JOIN {{schema}}.messages m ON m.session_id = s.id AND m.tenant_id = s.tenant_id
LEFT JOIN {{schema}}.runs r ON r.id = m.run_id
WHERE s.tenant_id = $1 AND s.lease_run_id = $2
  AND m.seq > CASE WHEN s.compaction_gen = $3 THEN $4 ELSE 0 END
  AND (m.run_id IS NULL OR m.run_id = $2 OR r.status = 'completed')
ORDER BY m.seq`

const cancelRunSQL = `
WITH r AS (
    SELECT r.id, r.session_id, r.tenant_id, r.async, r.status AS was, r.events_ended,
           r.status IN ('queued', 'awaiting_approval') OR NOT EXISTS (
               SELECT 1 FROM {{schema}}.sessions s
               WHERE s.id = r.session_id AND s.lease_run_id = r.id AND s.lease_expires_at > now()) AS now_
    FROM {{schema}}.runs r
    WHERE r.tenant_id = $7 AND r.id = $8 AND r.status IN ('queued', 'running', 'awaiting_approval')
    FOR UPDATE OF r
), u AS (
    UPDATE {{schema}}.runs
    SET cancel_requested = true,
        status = CASE WHEN r.now_ THEN 'cancelled' ELSE runs.status END,
        error = CASE WHEN r.now_ THEN $9 ELSE runs.error END,
        error_class = CASE WHEN r.now_ THEN 'cancelled' ELSE runs.error_class END,
        finished_at = CASE WHEN r.now_ THEN now() ELSE runs.finished_at END,
        prompt = CASE WHEN r.now_ THEN NULL ELSE runs.prompt END,
        event_seq = CASE WHEN r.now_ AND NOT r.events_ended THEN runs.event_seq + 1 ELSE runs.event_seq END,
        events_ended = r.events_ended OR r.now_
    FROM r WHERE runs.id = r.id
    RETURNING runs.id, runs.tenant_id, runs.status, runs.event_seq, r.now_ AND NOT r.events_ended AS ends
), ev AS (
    -- A run cancelled at once ends its events here, announced as
    -- AppendEvents announces them; one a process runs ends them itself.
    INSERT INTO {{schema}}.run_events (run_id, tenant_id, seq, kind, data)
    SELECT id, tenant_id, event_seq, 'run_end', jsonb_build_object('status', 'cancelled', 'error', $9::text)
    FROM u WHERE ends
), j AS (
    -- An enqueued run paused for approvals holds its session's job back:
    -- no job is executing the session's runs. The runs enqueued after it
    -- get one now.
    SELECT id, session_id, tenant_id FROM r WHERE now_ AND async AND was = 'awaiting_approval'
), ` + insertJobSQL + `
SELECT status, (SELECT pg_notify($10, id::text || ':' || event_seq || ':stop') FROM u WHERE ends)::text,
       ` + announceJobSQL + `
FROM u`

// CancelRun cancels the tenant's run: a queued run, one waiting for
// approvals or one no process runs at once; a running one is asked to stop
// at its next step boundary. Cancelling an enqueued run paused for
// approvals inserts a job, job, to execute the session's later runs. It returns
// the run's status after, or ErrNotFound, or ErrFinished for a run that
// ended.
func (s *Store) CancelRun(ctx context.Context, tenantID, runID, reason string, job RunJob) (string, error) {
	var status string
	var notified, announced *string
	args := append(s.jobArgs(job), tenantID, runID, reason, s.EventsChannel())
	err := s.as(tenantID).QueryRow(ctx, s.q(cancelRunSQL), args...).Scan(&status, &notified, &announced)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.GetRun(ctx, tenantID, runID); err != nil {
			return "", err
		}
		return "", ErrFinished
	}
	return status, err
}

const decideToolCallSQL = `
UPDATE {{schema}}.tool_executions
SET status = CASE WHEN $4 THEN 'approved' ELSE 'denied' END, decision_note = $5, note_key_version = $6,
    decided_at = now()
WHERE tenant_id = $1 AND run_id = $2 AND tool_use_id = $3 AND status = 'awaiting_approval'
  AND EXISTS (SELECT 1 FROM {{schema}}.runs r WHERE r.id = $2 AND r.status = 'awaiting_approval')
RETURNING (SELECT count(*) FROM {{schema}}.tool_executions
           WHERE run_id = $2 AND status = 'awaiting_approval' AND tool_use_id <> $3),
          session_id::text, name, input, key_version`

// DecidedCall is a call DecideToolCall decided.
type DecidedCall struct {
	// Remaining is how many calls of the run still wait.
	Remaining int
	SessionID string
	Name      string
	Input     json.RawMessage
}

// DecideToolCall approves or denies a call waiting for approval. It
// returns the call, ErrNotPending for a call that does not wait (decided
// already), ErrFinished for a call of a run that ended (cancelled), or
// ErrNotFound.
func (s *Store) DecideToolCall(ctx context.Context, tenantID, runID, toolUseID string, approve bool, note string) (DecidedCall, error) {
	var d DecidedCall
	w, err := s.sealer(ctx, tenantID)
	if err != nil {
		return d, err
	}
	sealedNote, err := w.text(toolField("decision_note", runID, toolUseID), note)
	if err != nil {
		return d, err
	}
	var inputKey *int
	err = s.as(tenantID).QueryRow(ctx, s.q(decideToolCallSQL), tenantID, runID, toolUseID, approve, sealedNote, w.version()).
		Scan(&d.Remaining, &d.SessionID, &d.Name, &d.Input, &inputKey)
	if err == nil {
		d.Input, err = s.opener(ctx, tenantID).json(inputKey, toolField("input", runID, toolUseID), d.Input)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return d, err
	}
	run, err := s.GetRun(ctx, tenantID, runID)
	if err != nil {
		return d, err
	}
	switch run.Status {
	case RunCompleted, RunFailed, RunCancelled:
		return d, ErrFinished
	}
	calls, err := s.ListToolCalls(ctx, tenantID, nil, runID)
	if err != nil {
		return d, err
	}
	for _, c := range calls {
		if c.ToolUseID == toolUseID {
			return d, ErrNotPending
		}
	}
	return d, ErrNotFound
}

// runResultSQL reads a run and, once it has an answer to give (completed,
// or paused for approvals), its last assistant message, in one statement.
const runResultSQL = `
SELECT ` + runColumns + `, a.id::text, a.content, a.key_version
FROM {{schema}}.runs r
LEFT JOIN LATERAL (
    SELECT m.id, m.content, m.key_version FROM {{schema}}.messages m
    WHERE m.tenant_id = r.tenant_id AND m.run_id = r.id AND m.role = 'assistant'
    ORDER BY m.seq DESC LIMIT 1
) a ON r.status IN ('completed', 'awaiting_approval')
WHERE r.tenant_id = $1 AND r.id = $2`

// RunResult returns the tenant's run and, for a run that completed or
// waits for approvals, the content of its last assistant message (nil
// when it has none), in one statement; or ErrNotFound.
func (s *Store) RunResult(ctx context.Context, tenantID, runID string) (Run, json.RawMessage, error) {
	var answer Message
	var answerID *string
	rows, err := s.as(tenantID).Query(ctx, s.q(runResultSQL), tenantID, runID)
	if err != nil {
		return Run{}, nil, err
	}
	run, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (Run, error) {
		return scanRunInto(row, &answerID, &answer.Content, &answer.keyVersion)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return run, nil, ErrNotFound
	case err != nil || answerID == nil:
		return run, nil, err
	}
	answer.ID = *answerID
	err = s.opener(ctx, tenantID).message(run.SessionID, &answer)
	return run, answer.Content, err
}

// failStuckRunsSQL calls the rescuer's SECURITY DEFINER function
// (migration 011), the one statement that crosses tenants.
const failStuckRunsSQL = `SELECT id::text FROM {{schema}}.fail_stuck_runs($1, $2) AS id`

// FailStuckRuns marks failed, across tenants, the synchronous runs that no
// process has held for longer than grace: their callers are gone. It is
// the one statement of the rescuer, a narrow path over every tenant: a
// function that runs with its owner's rights and, for its duration, the
// owner's cross-tenant policy (migration 011). It returns the ids of the
// runs it failed.
func (s *Store) FailStuckRuns(ctx context.Context, grace time.Duration, reason string) ([]string, error) {
	return queryAll(ctx, s.noTenant(), "stuck runs", s.q(failStuckRunsSQL), pgx.RowTo[string], reason, grace.Seconds())
}

// orphanedRunChainsSQL calls the rescuer's SECURITY DEFINER function
// (migration 015).
const orphanedRunChainsSQL = `SELECT tenant_id, run_id::text FROM {{schema}}.orphaned_run_chains($1, $2)`

// OrphanedRun is the earliest run, not ended, of a session whose enqueued
// runs no job executes.
type OrphanedRun struct {
	TenantID string
	RunID    string
}

// OrphanedRunChains returns, across tenants, the sessions' runs that wait
// for a job of kind jobKind that will never come (see migration 015), once
// they have waited longer than grace; the rescuer gives each a job
// (RequeueRun). Like FailStuckRuns, it goes through a function that runs
// with its owner's rights, and returns only the tenants' and runs' ids.
func (s *Store) OrphanedRunChains(ctx context.Context, jobKind string, grace time.Duration) ([]OrphanedRun, error) {
	return queryAll(ctx, s.noTenant(), "orphaned runs", s.q(orphanedRunChainsSQL), pgx.RowToStructByPos[OrphanedRun],
		jobKind, grace.Seconds())
}

// lockChainSQL locks the session's row, as enqueueRunSQL does: a run being
// enqueued in a transaction not yet committed is waited for.
const lockChainSQL = `SELECT 1 FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE`

// continueChainSQL follows lockChainSQL in its transaction, so its
// snapshot has every run enqueued before the lock. While an enqueued run of
// the session has not ended, it keeps a job responsible for them
// (run_chain at least 1) and returns the earliest; otherwise it ends the
// job (run_chain 0) and returns NULL.
const continueChainSQL = `
UPDATE {{schema}}.sessions s
SET run_chain = CASE WHEN n.id IS NULL THEN 0 ELSE greatest(s.run_chain, 1) END
FROM (SELECT (SELECT r.id FROM {{schema}}.runs r
              WHERE r.session_id = $2 AND r.async AND r.status IN ('queued', 'running', 'awaiting_approval')
              ORDER BY r.id LIMIT 1) AS id) n
WHERE s.tenant_id = $1 AND s.id = $2
RETURNING n.id::text`

// NextChainRun returns the earliest enqueued run of the tenant's session
// that has not ended, for the job executing the session's runs to execute
// next, or "" when there is none: then the job ends, and the session's
// next enqueued run gets a job of its own. It is the job's way on when it
// does not know the next run (ResumedChain): one round trip.
func (s *Store) NextChainRun(ctx context.Context, tenantID, sessionID string) (string, error) {
	var next *string
	batch := &pgx.Batch{}
	batch.Queue(s.q(lockChainSQL), tenantID, sessionID).Exec(func(pgconn.CommandTag) error { return nil })
	batch.Queue(s.q(continueChainSQL), tenantID, sessionID).QueryRow(func(row pgx.Row) error { return row.Scan(&next) })
	err := s.as(tenantID).SendBatch(ctx, batch).Close()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrNotFound
	case err != nil:
		return "", fmt.Errorf("finding the session's next run: %w", err)
	case next == nil:
		return "", nil
	}
	return *next, nil
}
