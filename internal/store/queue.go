package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverSafeInOneTx is the last River migration that can run in the
// transaction that created River's tables: its version 4 adds the value
// 'pending' to the river_job_state enum, which PostgreSQL lets later
// statements use only once committed, and version 6 uses it.
const riverSafeInOneTx = 5

// migrateRiver applies River's migrations not yet applied, in our schema,
// in tx. River records them in its own river_migration table there, so
// this is idempotent. It stops after riverSafeInOneTx when River's enum
// change is not committed yet, and reports whether it applied everything;
// a next transaction then finishes.
func (s *Store) migrateRiver(ctx context.Context, tx pgx.Tx) (done bool, err error) {
	migrator, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{
		Schema: s.schema,
		Logger: discardLogger,
	})
	if err != nil {
		return false, fmt.Errorf("preparing River's migrations: %w", err)
	}
	existing, err := migrator.ExistingVersionsTx(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("reading River's migrations: %w", err)
	}
	latest := 0
	for _, m := range existing {
		latest = max(latest, m.Version)
	}
	opts := &rivermigrate.MigrateOpts{}
	if latest < riverSafeInOneTx-1 {
		opts.TargetVersion = riverSafeInOneTx
	}
	// MigrateTx is deprecated because some River migrations cannot share a
	// transaction (see riverSafeInOneTx); we split them ourselves.
	//nolint:staticcheck // see above
	if _, err := migrator.MigrateTx(ctx, tx, rivermigrate.DirectionUp, opts); err != nil {
		return false, fmt.Errorf("applying River's migrations: %w", err)
	}
	return opts.TargetVersion == 0, nil
}

// RunJob is the River job that executes a session's enqueued runs, one
// after the other: River's row, inserted by our statements (as River's
// clients in other languages insert theirs) so that a run and its job take
// one statement, and one round trip. Its arguments are the ids of the
// tenant, the session and the run it starts with (tenant_id, session_id,
// run_id), as the job's worker decodes them.
type RunJob struct {
	Kind        string
	Queue       string
	MaxAttempts int
	Priority    int
	// Unannounced leaves the job's announcement to the caller
	// (AnnounceJobs, after the commit), which announces several jobs at
	// once; otherwise the statement inserting the job announces it.
	Unannounced bool
}

// insertJobSQL is a CTE inserting a job for the run of j, a CTE of one row
// or none (the run's id, session_id and tenant_id). $1 is the job's kind,
// $2 its queue, $3 its maximum attempts and $4 its priority.
const insertJobSQL = `
job AS (
    INSERT INTO {{schema}}.river_job (args, kind, max_attempts, priority, queue, state, scheduled_at, tags, metadata)
    SELECT jsonb_build_object('tenant_id', j.tenant_id, 'session_id', j.session_id, 'run_id', j.id),
           $1, $3, $4, $2, 'available', now(), '{}', '{}'
    FROM j
    RETURNING id
)`

// announceJobSQL is an expression announcing the job of insertJobSQL, if
// any, to the queue's producers as River's insert notification does (see
// announceJobsSQL), unless the channel $5 is NULL; $6 is the payload.
const announceJobSQL = `(SELECT pg_notify($5, $6) FROM job WHERE $5::text IS NOT NULL)::text`

// runJobSQL inserts and announces the job of insertJobSQL, and returns how
// many rows r, another CTE, has (the run the statement is about, found or
// not), and how many jobs it inserted.
const runJobSQL = insertJobSQL + `
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM job), ` + announceJobSQL

// announceJobsSQL tells the producers of a queue that jobs were inserted,
// as River's insert notification does: on channel "<schema>.river_insert",
// payload {"queue": ...}. $1 is the channel, $2 the payload.
const announceJobsSQL = `SELECT pg_notify($1, $2)`

// insertNotice is the channel and payload of the notification announcing
// jobs inserted in queue.
func (s *Store) insertNotice(queue string) (channel, payload string) {
	p, _ := json.Marshal(map[string]string{"queue": queue})
	return s.schema + ".river_insert", string(p)
}

// jobArgs are the arguments of runJobSQL.
func (s *Store) jobArgs(j RunJob) []any {
	channel, payload := s.insertNotice(j.Queue)
	var announce *string
	if !j.Unannounced {
		announce = &channel
	}
	return []any{j.Kind, j.Queue, j.MaxAttempts, j.Priority, announce, payload}
}

// insertJob runs a statement of runJobSQL whose other arguments are more,
// and returns whether its run was found and whether a job was inserted.
func (s *Store) insertJob(ctx context.Context, tenantID, sql string, job RunJob, more ...any) (found, inserted bool, err error) {
	var runs, jobs int
	var notified *string
	err = s.as(tenantID).QueryRow(ctx, s.q(sql), append(s.jobArgs(job), more...)...).Scan(&runs, &jobs, &notified)
	return runs > 0, jobs > 0, err
}

// AnnounceJobs tells the Workers of queue that jobs inserted unannounced
// (RunJob.Unannounced) and committed are there to fetch.
func (s *Store) AnnounceJobs(ctx context.Context, queue string) error {
	channel, payload := s.insertNotice(queue)
	if _, err := s.noTenant().Exec(ctx, announceJobsSQL, channel, payload); err != nil {
		return fmt.Errorf("announcing the jobs of queue %s: %w", queue, err)
	}
	return nil
}

// EnqueueRunParams record a run to be executed by a worker.
type EnqueueRunParams struct {
	TenantID  string
	SessionID string
	RunID     string
	Model     string
	// Prompt is the run's first user message content, stored until the
	// run's first step.
	Prompt json.RawMessage
	Job    RunJob
}

// enqueueRunSQL counts the run in its session's run_chain (migration 015)
// and inserts it; the job only when no job is responsible for the
// session's runs yet. Its UPDATE locks the session's row, as the step
// ending a job's run does when it sets run_chain back to 0: one waits for
// the other's commit, then works on the row as it left it.
const enqueueRunSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions SET run_chain = run_chain + 1
    WHERE tenant_id = $7 AND id = $8
    RETURNING id, tenant_id, run_chain
), r AS (
    INSERT INTO {{schema}}.runs (id, session_id, tenant_id, lease_token, model, status, prompt, key_version, async)
    SELECT $9, s.id, s.tenant_id, 0, $10, 'queued', $11, $12, true
    FROM s
    RETURNING id, session_id, tenant_id
), j AS (
    SELECT r.* FROM r, s WHERE s.run_chain = 1
), ` + runJobSQL

// EnqueueRun stores a queued, asynchronous run of the tenant's session
// and, unless a job already executes the session's runs (which goes on to
// this one), its River job, in one statement, which announces the job. It
// reports whether it inserted a job, and returns ErrNotFound when the
// tenant has no such session. In the caller's transaction, the session's
// row stays locked until it ends: a run of the session cannot end
// meanwhile.
func (s *Store) EnqueueRun(ctx context.Context, p EnqueueRunParams) (jobInserted bool, err error) {
	w, err := s.sealer(ctx, p.TenantID)
	if err != nil {
		return false, err
	}
	prompt, err := w.json(runPrompt(p.RunID), p.Prompt)
	if err != nil {
		return false, err
	}
	found, inserted, err := s.insertJob(ctx, p.TenantID, enqueueRunSQL, p.Job,
		p.TenantID, p.SessionID, p.RunID, p.Model, prompt, w.version())
	switch {
	case err != nil:
		return false, fmt.Errorf("storing the queued run: %w", err)
	case !found:
		return false, ErrNotFound
	}
	return inserted, nil
}

const requeueRunSQL = `
WITH r AS (
    SELECT id, session_id, tenant_id FROM {{schema}}.runs WHERE tenant_id = $7 AND id = $8 AND async
), j AS (
    SELECT * FROM r
), ` + runJobSQL

// RequeueRun inserts a new River job for the tenant's enqueued run, such
// as one whose approvals were decided, or the next run of a job handing
// its session over, and announces it; the job goes on to the session's
// later runs. It returns ErrNotFound for no such run, or one not enqueued.
func (s *Store) RequeueRun(ctx context.Context, tenantID, runID string, job RunJob) error {
	found, _, err := s.insertJob(ctx, tenantID, requeueRunSQL, job, tenantID, runID)
	switch {
	case err != nil:
		return fmt.Errorf("inserting the run's job: %w", err)
	case !found:
		return ErrNotFound
	}
	return nil
}

// discardLogger silences River's migrator, which logs at info level.
var discardLogger = slog.New(slog.DiscardHandler)
