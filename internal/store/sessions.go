package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is a row of the sessions table.
type Session struct {
	ID         string
	TenantID   string
	Identifier string
	ParentID   *string
	Depth      int
	Metadata   json.RawMessage
	Overrides  json.RawMessage
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// CreateSessionParams are the values of a new session.
type CreateSessionParams struct {
	ID         string
	TenantID   string
	Identifier string
	ParentID   *string // must belong to TenantID
	Metadata   json.RawMessage
	Overrides  json.RawMessage
}

const sessionColumns = `id::text, tenant_id, identifier, parent_id::text, depth, metadata, overrides, created_at, updated_at`

const createSessionSQL = `
WITH parent AS (
    SELECT id, depth FROM {{schema}}.sessions WHERE id = $4 AND tenant_id = $2
)
INSERT INTO {{schema}}.sessions (id, tenant_id, identifier, parent_id, depth, metadata, overrides)
SELECT $1, $2, $3, parent.id, coalesce(parent.depth + 1, 0), $5, $6
FROM (SELECT 1) AS one LEFT JOIN parent ON true
WHERE $4::uuid IS NULL OR parent.id IS NOT NULL
RETURNING ` + sessionColumns

// CreateSession inserts a session. It returns ErrConflict when the tenant
// already has a session with that identifier, and ErrNotFound when ParentID
// names no session of the tenant.
func (s *Store) CreateSession(ctx context.Context, p CreateSessionParams) (*Session, error) {
	row := s.as(p.TenantID).QueryRow(ctx, s.q(createSessionSQL),
		p.ID, p.TenantID, p.Identifier, p.ParentID, jsonOrEmpty(p.Metadata), jsonOrEmpty(p.Overrides))
	sess, err := scanSession(row)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("parent session: %w", ErrNotFound)
	case isUniqueViolation(err):
		return nil, ErrConflict
	case err != nil:
		return nil, err
	}
	return sess, nil
}

const getSessionSQL = `SELECT ` + sessionColumns + ` FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2`

// GetSession returns the tenant's session with that id, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, tenantID, id string) (*Session, error) {
	return oneSession(s.as(tenantID).QueryRow(ctx, s.q(getSessionSQL), tenantID, id))
}

const getSessionByIdentifierSQL = `SELECT ` + sessionColumns + ` FROM {{schema}}.sessions WHERE tenant_id = $1 AND identifier = $2`

// GetSessionByIdentifier returns the tenant's session with that identifier,
// or ErrNotFound.
func (s *Store) GetSessionByIdentifier(ctx context.Context, tenantID, identifier string) (*Session, error) {
	return oneSession(s.as(tenantID).QueryRow(ctx, s.q(getSessionByIdentifierSQL), tenantID, identifier))
}

const listSessionsSQL = `SELECT ` + sessionColumns + ` FROM {{schema}}.sessions
WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (updated_at, id) < ($2, $3::uuid))
ORDER BY updated_at DESC, id DESC
LIMIT $4`

// SessionCursor is where a listing of sessions stopped: the last session's
// update time and id.
type SessionCursor struct {
	UpdatedAt time.Time
	ID        string
}

// ListSessions returns up to limit sessions of the tenant, most recently
// updated first, after the cursor (nil: from the most recent).
func (s *Store) ListSessions(ctx context.Context, tenantID string, after *SessionCursor, limit int) ([]*Session, error) {
	var updatedAt *time.Time
	var id *string
	if after != nil {
		updatedAt, id = &after.UpdatedAt, &after.ID
	}
	return queryAll(ctx, s.as(tenantID), "sessions", s.q(listSessionsSQL), func(row pgx.CollectableRow) (*Session, error) {
		return scanSession(row)
	}, tenantID, updatedAt, id, limit)
}

const deleteSessionSQL = `
WITH RECURSIVE tree AS (
    SELECT id, lease_run_id IS NOT NULL AND lease_expires_at > now() AS busy
    FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2
    UNION ALL
    SELECT c.id, c.lease_run_id IS NOT NULL AND c.lease_expires_at > now()
    FROM {{schema}}.sessions c JOIN tree ON c.parent_id = tree.id
    WHERE c.tenant_id = $1
), deleted AS (
    DELETE FROM {{schema}}.sessions
    WHERE tenant_id = $1 AND id = $2 AND NOT EXISTS (SELECT 1 FROM tree WHERE busy)
    RETURNING id
)
SELECT (SELECT count(*) FROM tree), (SELECT count(*) FROM deleted)`

// DeleteSession deletes the tenant's session with its runs, messages,
// archive and compaction events, and the sessions of the nested agents it
// called, theirs included: the foreign keys cascade. It returns ErrNotFound
// for an unknown session and ErrBusy while a run holds the session or one
// of its descendants.
func (s *Store) DeleteSession(ctx context.Context, tenantID, id string) error {
	var found, deleted int
	if err := s.as(tenantID).QueryRow(ctx, s.q(deleteSessionSQL), tenantID, id).Scan(&found, &deleted); err != nil {
		return err
	}
	switch {
	case found == 0:
		return ErrNotFound
	case deleted == 0:
		return ErrBusy
	}
	return nil
}

func oneSession(row pgx.Row) (*Session, error) {
	sess, err := scanSession(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return sess, err
}

func scanSession(row pgx.Row) (*Session, error) {
	var sess Session
	err := row.Scan(&sess.ID, &sess.TenantID, &sess.Identifier, &sess.ParentID, &sess.Depth,
		&sess.Metadata, &sess.Overrides, &sess.CreatedAt, &sess.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &sess, nil
}

func jsonOrEmpty(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage(`{}`)
	}
	return v
}
