package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RetentionPolicy is a tenant's retention periods; zero keeps forever.
type RetentionPolicy struct {
	TenantID  string // "" for the default
	Sessions  time.Duration
	Archive   time.Duration
	RunEvents time.Duration
}

const setRetentionSQL = `
INSERT INTO {{schema}}.retention_policies (tenant_id, sessions, archive, run_events)
VALUES ($1, make_interval(secs => $2), make_interval(secs => $3), make_interval(secs => $4))
ON CONFLICT (tenant_id) DO UPDATE
SET sessions = excluded.sessions, archive = excluded.archive, run_events = excluded.run_events, updated_at = now()`

// SetRetention stores the tenant's policy, replacing any it had.
func (s *Store) SetRetention(ctx context.Context, p RetentionPolicy) error {
	_, err := s.db.Exec(ctx, s.q(setRetentionSQL), p.TenantID, seconds(p.Sessions), seconds(p.Archive), seconds(p.RunEvents))
	return err
}

// seconds is d in seconds, or nil (SQL NULL: forever) for zero.
func seconds(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

const removeRetentionSQL = `DELETE FROM {{schema}}.retention_policies WHERE tenant_id = $1`

// RemoveRetention deletes the tenant's policy, if any, so that the
// default applies to it again.
func (s *Store) RemoveRetention(ctx context.Context, tenantID string) error {
	_, err := s.db.Exec(ctx, s.q(removeRetentionSQL), tenantID)
	return err
}

const listRetentionSQL = `
SELECT tenant_id,
       coalesce(extract(epoch FROM sessions), 0)::float8,
       coalesce(extract(epoch FROM archive), 0)::float8,
       coalesce(extract(epoch FROM run_events), 0)::float8
FROM {{schema}}.retention_policies ORDER BY tenant_id`

// ListRetention returns every stored policy, the default first.
func (s *Store) ListRetention(ctx context.Context) ([]RetentionPolicy, error) {
	rows, err := s.db.Query(ctx, s.q(listRetentionSQL))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RetentionPolicy, error) {
		var p RetentionPolicy
		var sessions, archive, events float64
		err := row.Scan(&p.TenantID, &sessions, &archive, &events)
		p.Sessions, p.Archive, p.RunEvents = fromSeconds(sessions), fromSeconds(archive), fromSeconds(events)
		return p, err
	})
}

func fromSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// RetentionKind names what a retention pass deletes.
type RetentionKind int

// The kinds of data retention deletes.
const (
	RetainSessions RetentionKind = iota
	RetainArchive
	RetainRunEvents
)

// policyOf is the policy that applies to the rows of alias: the tenant's
// own, or the default.
func policyOf(alias string) string {
	return `JOIN {{schema}}.retention_policies p ON p.tenant_id = coalesce(
        (SELECT t.tenant_id FROM {{schema}}.retention_policies t WHERE t.tenant_id = ` + alias + `.tenant_id), '')`
}

// expired are the rows of each kind whose period has passed: sessions
// (roots: nested agents' sessions go with them) that no run holds or
// waits in, archived messages, and the events of runs that ended.
var expired = [...]struct{ table, key, from, where, order string }{
	RetainSessions: {
		table: "sessions", key: "id",
		from: `{{schema}}.sessions x ` + policyOf("x"),
		where: `x.parent_id IS NULL AND x.updated_at < now() - p.sessions
      AND (x.lease_run_id IS NULL OR x.lease_expires_at <= now())
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.runs r
                      WHERE r.session_id = x.id AND r.status IN ('queued', 'running', 'awaiting_approval'))`,
		order: "x.updated_at",
	},
	RetainArchive: {
		table: "message_archive", key: "compaction_id, id",
		from:  `{{schema}}.message_archive x ` + policyOf("x"),
		where: `x.archived_at < now() - p.archive`,
		order: "x.archived_at",
	},
	RetainRunEvents: {
		table: "run_events", key: "run_id, seq",
		from: `{{schema}}.run_events x ` + policyOf("x") + `
    JOIN {{schema}}.runs r ON r.id = x.run_id AND r.status IN ('completed', 'failed', 'cancelled')`,
		where: `x.created_at < now() - p.run_events`,
		order: "x.created_at",
	},
}

// ApplyRetention deletes at most limit expired rows of kind, oldest first,
// in one statement, and returns how many of each tenant it deleted. Rows
// another process is deleting are skipped, not waited for.
func (s *Store) ApplyRetention(ctx context.Context, kind RetentionKind, limit int) (map[string]int64, error) {
	e := expired[kind]
	sql := fmt.Sprintf(`
WITH doomed AS (
    SELECT x.ctid AS row FROM %s
    WHERE %s
    ORDER BY %s
    LIMIT $1
    FOR UPDATE OF x SKIP LOCKED
), deleted AS (
    DELETE FROM {{schema}}.%s d USING doomed WHERE d.ctid = doomed.row
    RETURNING d.tenant_id
)
SELECT tenant_id, count(*) FROM deleted GROUP BY tenant_id`, e.from, e.where, e.order, e.table)
	return s.tenantCounts(ctx, sql, limit)
}

// CountRetention returns how many rows of kind, by tenant, ApplyRetention
// would delete now.
func (s *Store) CountRetention(ctx context.Context, kind RetentionKind) (map[string]int64, error) {
	e := expired[kind]
	sql := fmt.Sprintf(`SELECT x.tenant_id, count(*) FROM %s WHERE %s GROUP BY x.tenant_id`, e.from, e.where)
	return s.tenantCounts(ctx, sql)
}

// tenantCounts runs a statement returning (tenant, count) rows.
func (s *Store) tenantCounts(ctx context.Context, sql string, args ...any) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, s.q(sql), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var tenant string
		var n int64
		if err := rows.Scan(&tenant, &n); err != nil {
			return nil, err
		}
		counts[tenant] = n
	}
	return counts, rows.Err()
}
