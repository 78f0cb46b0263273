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
	// keyVersion sealed Metadata and Overrides as stored; nil: plaintext.
	keyVersion *int
}

// open opens the session's sealed fields.
func (o opener) session(sess *Session) (err error) {
	if sess.Metadata, err = o.json(sess.keyVersion, sessionField("metadata", sess.ID), sess.Metadata); err != nil {
		return err
	}
	sess.Overrides, err = o.json(sess.keyVersion, sessionField("overrides", sess.ID), sess.Overrides)
	sess.keyVersion = nil
	return err
}

// sealSession seals the session's fields for storing.
func (w *sealer) session(id string, metadata, overrides json.RawMessage) (sealedMetadata, sealedOverrides json.RawMessage, err error) {
	if sealedMetadata, err = w.json(sessionField("metadata", id), jsonOrEmpty(metadata)); err != nil {
		return nil, nil, err
	}
	sealedOverrides, err = w.json(sessionField("overrides", id), jsonOrEmpty(overrides))
	return sealedMetadata, sealedOverrides, err
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

const sessionColumns = `id::text, tenant_id, identifier, parent_id::text, depth, metadata, overrides, created_at, updated_at, key_version`

const createSessionSQL = `
WITH parent AS (
    SELECT id, depth FROM {{schema}}.sessions WHERE id = $4 AND tenant_id = $2
)
INSERT INTO {{schema}}.sessions (id, tenant_id, identifier, parent_id, depth, metadata, overrides, key_version)
SELECT $1, $2, $3, parent.id, coalesce(parent.depth + 1, 0), $5, $6, $7
FROM (SELECT 1) AS one LEFT JOIN parent ON true
WHERE $4::uuid IS NULL OR parent.id IS NOT NULL
RETURNING ` + sessionColumns

// CreateSession inserts a session. It returns ErrConflict when the tenant
// already has a session with that identifier, and ErrNotFound when ParentID
// names no session of the tenant.
func (s *Store) CreateSession(ctx context.Context, p CreateSessionParams) (*Session, error) {
	w, err := s.sealer(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	metadata, overrides, err := w.session(p.ID, p.Metadata, p.Overrides)
	if err != nil {
		return nil, err
	}
	row := s.as(p.TenantID).QueryRow(ctx, s.q(createSessionSQL),
		p.ID, p.TenantID, p.Identifier, p.ParentID, metadata, overrides, w.version())
	sess, err := scanSession(row)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("parent session: %w", ErrNotFound)
	case isUniqueViolation(err):
		return nil, ErrConflict
	case err != nil:
		return nil, err
	}
	return sess, s.opener(ctx, p.TenantID).session(sess)
}

const getSessionSQL = `SELECT ` + sessionColumns + ` FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2`

// GetSession returns the tenant's session with that id, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, tenantID, id string) (*Session, error) {
	return s.oneSession(ctx, tenantID, s.as(tenantID).QueryRow(ctx, s.q(getSessionSQL), tenantID, id))
}

const getSessionByIdentifierSQL = `SELECT ` + sessionColumns + ` FROM {{schema}}.sessions WHERE tenant_id = $1 AND identifier = $2`

// GetSessionByIdentifier returns the tenant's session with that identifier,
// or ErrNotFound.
func (s *Store) GetSessionByIdentifier(ctx context.Context, tenantID, identifier string) (*Session, error) {
	return s.oneSession(ctx, tenantID, s.as(tenantID).QueryRow(ctx, s.q(getSessionByIdentifierSQL), tenantID, identifier))
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
	sessions, err := queryAll(ctx, s.as(tenantID), "sessions", s.q(listSessionsSQL), func(row pgx.CollectableRow) (*Session, error) {
		return scanSession(row)
	}, tenantID, updatedAt, id, limit)
	if err != nil {
		return nil, err
	}
	o := s.opener(ctx, tenantID)
	for _, sess := range sessions {
		if err := o.session(sess); err != nil {
			return nil, err
		}
	}
	return sessions, nil
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

func (s *Store) oneSession(ctx context.Context, tenantID string, row pgx.Row) (*Session, error) {
	sess, err := scanSession(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return sess, s.opener(ctx, tenantID).session(sess)
}

func scanSession(row pgx.Row) (*Session, error) {
	var sess Session
	err := row.Scan(&sess.ID, &sess.TenantID, &sess.Identifier, &sess.ParentID, &sess.Depth,
		&sess.Metadata, &sess.Overrides, &sess.CreatedAt, &sess.UpdatedAt, &sess.keyVersion)
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
