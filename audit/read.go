package audit

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// Page sizes of List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ListOptions select the entries List returns.
type ListOptions struct {
	// AfterSeq lists the entries after this seq: the Seq of the last entry
	// of the previous page.
	AfterSeq int64
	// Since and Until, when set, keep the entries whose Timestamp is at
	// or after Since, and before Until.
	Since, Until time.Time
	// Limit is the most entries returned: 0 means DefaultListLimit; at
	// most MaxListLimit.
	Limit int
}

// List returns the tenant's entries that opts select, in chain order
// (oldest first), as written: call Flush first to see the entries just
// recorded. Another tenant's entries are never listed.
func (l *Log) List(ctx context.Context, tenantID string, opts ListOptions) ([]Entry, error) {
	if l == nil || l.store == nil {
		return nil, ErrClosed
	}
	if err := checkTenant(tenantID); err != nil {
		return nil, err
	}
	limit := cmp.Or(opts.Limit, DefaultListLimit)
	if limit < 0 || limit > MaxListLimit {
		return nil, fmt.Errorf("%w: ListOptions.Limit must be from 1 to %d, got %d", ErrInvalidArgument, MaxListLimit, limit)
	}
	if opts.AfterSeq < 0 {
		return nil, fmt.Errorf("%w: ListOptions.AfterSeq must not be negative, got %d", ErrInvalidArgument, opts.AfterSeq)
	}
	f := store.AuditFilter{AfterSeq: opts.AfterSeq, Limit: limit}
	if !opts.Since.IsZero() {
		f.Since = &opts.Since
	}
	if !opts.Until.IsZero() {
		f.Until = &opts.Until
	}
	rows, err := l.store.ListAudit(ctx, tenantID, f)
	if err != nil {
		return nil, fmt.Errorf("audit: listing: %w", err)
	}
	entries := make([]Entry, len(rows))
	for i, r := range rows {
		entries[i] = entryOf(r)
	}
	return entries, nil
}

// entryOf is the Entry of a row.
func entryOf(r store.AuditRow) Entry {
	e := Entry{
		Timestamp: r.OccurredAt, UserID: r.UserID, TenantID: r.TenantID, Action: r.Action, Tool: r.Tool,
		Input: r.Input, Success: r.Success, SessionID: r.SessionID, RunID: r.RunID, Actor: r.Actor,
		Detail: r.Detail, Seq: r.Seq, Hash: hex.EncodeToString(r.Hash),
	}
	if r.ErasedAt != nil {
		e.ErasedAt = *r.ErasedAt
	}
	return e
}

// Head is the head of a tenant's chain: its last entry's seq and hash.
// Keeping a copy of it outside the database (a log line, a ticket, a
// signed note) lets Verify's result be checked against a rewrite of the
// whole chain.
type Head struct {
	TenantID string
	Seq      int64
	Hash     string // hex; "" for a chain without entries
}

// Head returns the head of the tenant's chain; a tenant without entries
// has Seq 0.
func (l *Log) Head(ctx context.Context, tenantID string) (Head, error) {
	if l == nil || l.store == nil {
		return Head{}, ErrClosed
	}
	if err := checkTenant(tenantID); err != nil {
		return Head{}, err
	}
	h, err := l.store.AuditHead(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return Head{TenantID: tenantID}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("audit: %w", err)
	}
	return Head{TenantID: tenantID, Seq: h.Seq, Hash: hex.EncodeToString(h.Hash)}, nil
}

// Tenants returns every tenant that has entries or a chain head, in
// order: the tenants to Verify.
func (l *Log) Tenants(ctx context.Context) ([]string, error) {
	if l == nil || l.store == nil {
		return nil, ErrClosed
	}
	tenants, err := l.store.AuditTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return tenants, nil
}
