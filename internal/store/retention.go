package store

import (
	"context"
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
	_, err := s.noTenant().Exec(ctx, s.q(setRetentionSQL), p.TenantID, seconds(p.Sessions), seconds(p.Archive), seconds(p.RunEvents))
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
	_, err := s.noTenant().Exec(ctx, s.q(removeRetentionSQL), tenantID)
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
	rows, err := s.noTenant().Query(ctx, s.q(listRetentionSQL))
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

// retentionKinds are the names the function retention knows the kinds by.
var retentionKinds = [...]string{RetainSessions: "sessions", RetainArchive: "archive", RetainRunEvents: "run_events"}

// retentionSQL calls the function of migration 011 that applies, or
// counts, retention across tenants with its owner's rights: the expired
// rows of each kind are sessions (roots: nested agents' sessions go with
// them) that no run holds or waits in, archived messages, and the events
// of runs that ended, past the period of their tenant's policy or the
// default's.
const retentionSQL = `SELECT tenant_id, n FROM {{schema}}.retention($1, $2)`

// ApplyRetention deletes at most limit expired rows of kind, oldest first,
// in one statement, and returns how many of each tenant it deleted. Rows
// another process is deleting are skipped, not waited for. It is a narrow
// cross-tenant path: the function does nothing else.
func (s *Store) ApplyRetention(ctx context.Context, kind RetentionKind, limit int) (map[string]int64, error) {
	return s.tenantCounts(ctx, retentionKinds[kind], &limit)
}

// CountRetention returns how many rows of kind, by tenant, ApplyRetention
// would delete now.
func (s *Store) CountRetention(ctx context.Context, kind RetentionKind) (map[string]int64, error) {
	return s.tenantCounts(ctx, retentionKinds[kind], nil)
}

// tenantCounts calls retention for kind, deleting up to limit rows (nil:
// counting them), and returns the counts by tenant.
func (s *Store) tenantCounts(ctx context.Context, kind string, limit *int) (map[string]int64, error) {
	rows, err := s.noTenant().Query(ctx, s.q(retentionSQL), kind, limit)
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
