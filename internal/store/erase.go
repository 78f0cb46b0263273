package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Erasure is what erasing a tenant, or one end user of it, deletes.
type Erasure struct {
	TenantID string
	// Identifier, when set, limits the erasure to the sessions with this
	// identifier and the nested agents' sessions under them.
	Identifier *string
}

// erasedTree is the sessions an erasure deletes, nested agents' included.
const erasedTree = `
WITH RECURSIVE tree AS (
    SELECT id FROM {{schema}}.sessions
    WHERE tenant_id = $1 AND ($2::text IS NULL OR identifier = $2)
    UNION
    SELECT c.id FROM {{schema}}.sessions c JOIN tree ON c.parent_id = tree.id
)`

const countErasureSQL = erasedTree + `
SELECT (SELECT count(*) FROM tree),
       (SELECT count(*) FROM {{schema}}.messages WHERE session_id IN (SELECT id FROM tree)),
       (SELECT count(*) FROM {{schema}}.message_archive WHERE session_id IN (SELECT id FROM tree)),
       (SELECT count(*) FROM {{schema}}.runs WHERE session_id IN (SELECT id FROM tree)),
       (SELECT count(*) FROM {{schema}}.tool_executions WHERE session_id IN (SELECT id FROM tree)),
       (SELECT count(*) FROM {{schema}}.run_events e
        JOIN {{schema}}.runs r ON r.id = e.run_id WHERE r.session_id IN (SELECT id FROM tree))`

// ErasureCounts are the rows an erasure deletes, by table.
type ErasureCounts struct {
	Sessions, Messages, ArchivedMessages, Runs, ToolCalls, RunEvents int64
}

// CountErasure returns what erasing e would delete.
func (s *Store) CountErasure(ctx context.Context, e Erasure) (ErasureCounts, error) {
	var c ErasureCounts
	err := s.as(e.TenantID).QueryRow(ctx, s.q(countErasureSQL), e.TenantID, e.Identifier).
		Scan(&c.Sessions, &c.Messages, &c.ArchivedMessages, &c.Runs, &c.ToolCalls, &c.RunEvents)
	return c, err
}

const eraseSessionsSQL = `
WITH doomed AS (
    SELECT id FROM {{schema}}.sessions
    WHERE tenant_id = $1 AND ($2::text IS NULL OR identifier = $2)
    ORDER BY id
    LIMIT $3
    FOR UPDATE
)
DELETE FROM {{schema}}.sessions s USING doomed WHERE s.id = doomed.id
RETURNING s.id::text`

// EraseSessions deletes at most limit of the sessions e names, whatever
// holds them, with everything that belongs to them (the foreign keys
// cascade: nested agents' sessions, messages, archive, runs, tool calls,
// events, waiters). It returns the ids of those it deleted (not of the
// nested agents' sessions deleted with them); a run still going fails at
// its next write.
func (s *Store) EraseSessions(ctx context.Context, e Erasure, limit int) ([]string, error) {
	rows, err := s.as(e.TenantID).Query(ctx, s.q(eraseSessionsSQL), e.TenantID, e.Identifier, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

const eraseTenantSettingsSQL = `
WITH limits AS (
    DELETE FROM {{schema}}.tenant_limits WHERE tenant_id = $1
), requests AS (
    DELETE FROM {{schema}}.model_requests WHERE tenant_id = $1
), counts AS (
    DELETE FROM {{schema}}.model_request_counts WHERE tenant_id = $1
), usage AS (
    DELETE FROM {{schema}}.tenant_usage WHERE tenant_id = $1
)
DELETE FROM {{schema}}.retention_policies WHERE tenant_id = $1`

// EraseTenantSettings deletes the tenant's own settings and records (its
// retention policy, its limits and their counters, its usage), once its
// sessions are gone.
func (s *Store) EraseTenantSettings(ctx context.Context, tenantID string) error {
	_, err := s.as(tenantID).Exec(ctx, s.q(eraseTenantSettingsSQL), tenantID)
	return err
}
