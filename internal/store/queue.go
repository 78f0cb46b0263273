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

// EnqueueRunParams record a run to be executed by a worker.
type EnqueueRunParams struct {
	TenantID  string
	SessionID string
	RunID     string
	Model     string
	// Prompt is the run's first user message content, stored until the
	// run's first step.
	Prompt json.RawMessage
}

const enqueueRunSQL = `
INSERT INTO {{schema}}.runs (id, session_id, tenant_id, lease_token, model, status, prompt, async)
SELECT $3, s.id, s.tenant_id, 0, $4, 'queued', $5, true
FROM {{schema}}.sessions s
WHERE s.tenant_id = $1 AND s.id = $2`

// EnqueueRun stores a queued, asynchronous run of the tenant's session. It
// returns ErrNotFound when the tenant has no such session.
func (s *Store) EnqueueRun(ctx context.Context, p EnqueueRunParams) error {
	tag, err := s.as(p.TenantID).Exec(ctx, s.q(enqueueRunSQL), p.TenantID, p.SessionID, p.RunID, p.Model, p.Prompt)
	if err != nil {
		return fmt.Errorf("storing the queued run: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// discardLogger silences River's migrator, which logs at info level.
var discardLogger = slog.New(slog.DiscardHandler)
