package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// SessionsChannel is the LISTEN channel on which the release of a
// session's lease is announced, with the session's id as payload (see
// migration 008).
func (s *Store) SessionsChannel() string {
	sum := md5.Sum([]byte(s.schema))
	return "agentpg_sessions_" + hex.EncodeToString(sum[:])[:16]
}

const takeTicketSQL = `
INSERT INTO {{schema}}.session_waiters (session_id, tenant_id, expires_at)
SELECT id, tenant_id, now() + make_interval(secs => $3)
FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2
RETURNING ticket`

// TakeTicket queues a waiter for the tenant's session: its turn comes
// before those of waiters that arrive later. It returns ErrNotFound for no
// such session.
func (s *Store) TakeTicket(ctx context.Context, tenantID, sessionID string, ttl time.Duration) (int64, error) {
	var ticket int64
	err := s.as(tenantID).QueryRow(ctx, s.q(takeTicketSQL), tenantID, sessionID, ttl.Seconds()).Scan(&ticket)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	return ticket, err
}

const renewTicketSQL = `
UPDATE {{schema}}.session_waiters SET expires_at = now() + make_interval(secs => $3)
WHERE tenant_id = $1 AND ticket = $2`

// RenewTicket keeps the tenant's waiter's ticket alive for ttl more.
func (s *Store) RenewTicket(ctx context.Context, tenantID string, ticket int64, ttl time.Duration) error {
	_, err := s.as(tenantID).Exec(ctx, s.q(renewTicketSQL), tenantID, ticket, ttl.Seconds())
	return err
}

const dropTicketSQL = `DELETE FROM {{schema}}.session_waiters WHERE tenant_id = $1 AND ticket = $2`

// DropTicket gives up the tenant's waiter's place.
func (s *Store) DropTicket(ctx context.Context, tenantID string, ticket int64) error {
	_, err := s.as(tenantID).Exec(ctx, s.q(dropTicketSQL), tenantID, ticket)
	return err
}
