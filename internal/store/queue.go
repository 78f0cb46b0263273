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

// RunJob is the River job that executes a run: River's row, inserted by
// our statements (as River's clients in other languages insert theirs) so
// that a run and its job take one statement, and one round trip.
type RunJob struct {
	Kind        string
	Args        json.RawMessage // the job's arguments, as River's worker decodes them
	Queue       string
	MaxAttempts int
	Priority    int
	// Unannounced leaves the job's announcement to the caller
	// (AnnounceJobs, after the commit), which announces several jobs at
	// once; otherwise the statement inserting the job announces it.
	Unannounced bool
}

// runJobSQL inserts the job of the run of r (a CTE of one row or none), and
// announces it to the queue's producers as River's insert notification
// does (see announceJobsSQL), unless its channel is NULL. $1 is the job's
// kind, $2 its arguments, $3 its queue, $4 its maximum attempts, $5 its
// priority, $6 the notification's channel and $7 its payload.
const runJobSQL = `
job AS (
    INSERT INTO {{schema}}.river_job (args, kind, max_attempts, priority, queue, state, scheduled_at, tags, metadata)
    SELECT $2::jsonb, $1, $4, $5, $3, 'available', now(), '{}', '{}' FROM r
    RETURNING id
)
SELECT (SELECT count(*) FROM job), (SELECT pg_notify($6, $7) FROM job WHERE $6::text IS NOT NULL)::text`

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
	return []any{j.Kind, j.Args, j.Queue, j.MaxAttempts, j.Priority, announce, payload}
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

const enqueueRunSQL = `
WITH r AS (
    INSERT INTO {{schema}}.runs (id, session_id, tenant_id, lease_token, model, status, prompt, key_version, async)
    SELECT $10, s.id, s.tenant_id, 0, $11, 'queued', $12, $13, true
    FROM {{schema}}.sessions s
    WHERE s.tenant_id = $8 AND s.id = $9
    RETURNING id
), ` + runJobSQL

// EnqueueRun stores a queued, asynchronous run of the tenant's session and
// its River job, in one statement, and announces the job. It returns
// ErrNotFound when the tenant has no such session.
func (s *Store) EnqueueRun(ctx context.Context, p EnqueueRunParams) error {
	w, err := s.sealer(ctx, p.TenantID)
	if err != nil {
		return err
	}
	prompt, err := w.json(runPrompt(p.RunID), p.Prompt)
	if err != nil {
		return err
	}
	args := append(s.jobArgs(p.Job), p.TenantID, p.SessionID, p.RunID, p.Model, prompt, w.version())
	var jobs int
	var notified *string
	if err := s.as(p.TenantID).QueryRow(ctx, s.q(enqueueRunSQL), args...).Scan(&jobs, &notified); err != nil {
		return fmt.Errorf("storing the queued run: %w", err)
	}
	if jobs == 0 {
		return ErrNotFound
	}
	return nil
}

const requeueRunSQL = `
WITH r AS (
    SELECT id FROM {{schema}}.runs WHERE tenant_id = $8 AND id = $9 AND async
), ` + runJobSQL

// RequeueRun inserts a new River job for the tenant's enqueued run, such
// as one whose approvals were decided, and announces it. It returns
// ErrNotFound for no such run, or one not enqueued.
func (s *Store) RequeueRun(ctx context.Context, tenantID, runID string, job RunJob) error {
	args := append(s.jobArgs(job), tenantID, runID)
	var jobs int
	var notified *string
	if err := s.as(tenantID).QueryRow(ctx, s.q(requeueRunSQL), args...).Scan(&jobs, &notified); err != nil {
		return fmt.Errorf("inserting the run's job: %w", err)
	}
	if jobs == 0 {
		return ErrNotFound
	}
	return nil
}

// discardLogger silences River's migrator, which logs at info level.
var discardLogger = slog.New(slog.DiscardHandler)
