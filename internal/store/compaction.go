package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const acquireLeaseSQL = `
UPDATE {{schema}}.sessions
SET lease_token = lease_token + 1,
    lease_run_id = $3,
    lease_expires_at = now() + make_interval(secs => $4),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2
  AND (lease_run_id IS NULL OR lease_expires_at <= now())
RETURNING lease_token, compaction_gen`

// AcquireLease takes the session's lease for holderID without starting a
// run, as an on-demand compaction does. It returns ErrBusy or ErrNotFound
// like BeginRun.
func (s *Store) AcquireLease(ctx context.Context, tenantID, sessionID, holderID string, ttl time.Duration) (Lease, error) {
	lease := Lease{TenantID: tenantID, SessionID: sessionID, RunID: holderID}
	err := s.as(tenantID).QueryRow(ctx, s.q(acquireLeaseSQL), tenantID, sessionID, holderID, ttl.Seconds()).
		Scan(&lease.Token, &lease.CompactionGen)
	if !errors.Is(err, pgx.ErrNoRows) {
		return lease, err
	}
	return lease, s.whyNoLease(ctx, tenantID, sessionID)
}

const releaseLeaseSQL = `
UPDATE {{schema}}.sessions
SET lease_run_id = NULL, lease_expires_at = NULL
WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4`

// ReleaseLease gives the lease up, if it is still held.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.as(l.TenantID).Exec(ctx, s.q(releaseLeaseSQL), l.TenantID, l.SessionID, l.RunID, l.Token)
	return err
}

// Summary is the compaction state of a session.
type Summary struct {
	Text           string // "" when no summary was written
	FirstIntent    string // the user's first request, kept verbatim
	CompactedAtSeq int64  // last_seq when the session was last compacted
	Gen            int
	// keyVersion sealed Text and FirstIntent as stored; nil: plaintext.
	keyVersion *int
}

// summary opens the session's summary.
func (o opener) summary(sessionID string, sum *Summary) (err error) {
	if sum.Text != "" {
		if sum.Text, err = o.text(sum.keyVersion, sessionField("summary", sessionID), sum.Text); err != nil {
			return err
		}
	}
	if sum.FirstIntent != "" {
		if sum.FirstIntent, err = o.text(sum.keyVersion, sessionField("first_intent", sessionID), sum.FirstIntent); err != nil {
			return err
		}
	}
	sum.keyVersion = nil
	return nil
}

const summarySQL = `
SELECT coalesce(summary, ''), coalesce(first_intent, ''), summary_key_version, compacted_at_seq, compaction_gen
FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2`

// Summary returns the session's compaction state.
func (s *Store) Summary(ctx context.Context, tenantID, sessionID string) (Summary, error) {
	var sum Summary
	err := s.as(tenantID).QueryRow(ctx, s.q(summarySQL), tenantID, sessionID).
		Scan(&sum.Text, &sum.FirstIntent, &sum.keyVersion, &sum.CompactedAtSeq, &sum.Gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return sum, ErrNotFound
	}
	if err != nil {
		return sum, err
	}
	err = s.opener(ctx, tenantID).summary(sessionID, &sum)
	return sum, err
}

// Compaction is a compaction to apply.
type Compaction struct {
	ID       string
	Strategy string // "prune", "summarize" or "hybrid"
	Trigger  string // "auto" or "manual"
	// ArchiveBeforeSeq moves every message with a lower seq to the archive
	// (0 moves none); Summary, when not nil, replaces the session's summary
	// and FirstIntent its first intent.
	ArchiveBeforeSeq int64
	Summary          *Summary
	// Pruned are new contents for messages kept live; their originals are
	// archived.
	Pruned       map[string]json.RawMessage
	TokensBefore int
	TokensAfter  int
	Duration     time.Duration
	Usage        Usage
	// Model is the model that wrote the summary, for the tenant's usage.
	Model string
}

const applyCompactionSQL = `
WITH s AS (
    UPDATE {{schema}}.sessions
    SET compaction_gen = compaction_gen + 1,
        summary = CASE WHEN $6 THEN $7 ELSE summary END,
        first_intent = CASE WHEN $6 THEN $19 ELSE first_intent END,
        summary_key_version = CASE WHEN $6 THEN $20 ELSE summary_key_version END,
        compacted_at_seq = last_seq,
        lease_expires_at = now() + make_interval(secs => $5),
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND lease_run_id = $3 AND lease_token = $4
    RETURNING id, tenant_id
), removed AS (
    DELETE FROM {{schema}}.messages m USING s
    WHERE m.session_id = s.id AND m.seq < $8
    RETURNING m.*
), pruned_original AS (
    SELECT m.* FROM {{schema}}.messages m, s
    WHERE m.session_id = s.id AND m.id = ANY($9::uuid[])
), pruned AS (
    UPDATE {{schema}}.messages m SET content = p.content, key_version = $20
    FROM s, unnest($9::uuid[], $10::jsonb[]) AS p(id, content)
    WHERE m.session_id = s.id AND m.id = p.id
), event AS (
    INSERT INTO {{schema}}.compaction_events
        (id, session_id, tenant_id, strategy, trigger, tokens_before, tokens_after,
         messages_archived, messages_pruned, duration_ms, input_tokens, output_tokens)
    SELECT $11, s.id, s.tenant_id, $12, $13, $14, $15,
           (SELECT count(*) FROM removed), (SELECT count(*) FROM pruned_original), $16, $17, $18
    FROM s
), archived AS (
    INSERT INTO {{schema}}.message_archive
        (compaction_id, id, session_id, tenant_id, run_id, seq, role, content, usage, created_at, key_version)
    SELECT $11, id, session_id, tenant_id, run_id, seq, role, content, usage, created_at, key_version FROM removed
    UNION ALL
    SELECT $11, id, session_id, tenant_id, run_id, seq, role, content, usage, created_at, key_version FROM pruned_original
)
SELECT (SELECT count(*) FROM removed) FROM s`

// ApplyCompaction archives and prunes messages, replaces the summary and
// records the compaction event, all in one statement fenced by the lease:
// a failure leaves the session as it was. It returns the number of
// messages moved to the archive.
func (s *Store) ApplyCompaction(ctx context.Context, l Lease, ttl time.Duration, c Compaction) (int, error) {
	w, err := s.sealer(ctx, l.TenantID)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(c.Pruned))
	contents := make([]json.RawMessage, 0, len(c.Pruned))
	for id, content := range c.Pruned {
		sealed, err := w.json(messageContent(l.SessionID, id), content)
		if err != nil {
			return 0, err
		}
		ids = append(ids, id)
		contents = append(contents, sealed)
	}
	var summary, firstIntent string
	if c.Summary != nil {
		if summary, err = w.text(sessionField("summary", l.SessionID), c.Summary.Text); err != nil {
			return 0, err
		}
		if firstIntent, err = w.text(sessionField("first_intent", l.SessionID), c.Summary.FirstIntent); err != nil {
			return 0, err
		}
	}
	var archived int
	batch := &pgx.Batch{}
	batch.Queue(s.q(applyCompactionSQL),
		l.TenantID, l.SessionID, l.RunID, l.Token, ttl.Seconds(),
		c.Summary != nil, summary, c.ArchiveBeforeSeq, ids, contents,
		c.ID, c.Strategy, c.Trigger, c.TokensBefore, c.TokensAfter, c.Duration.Milliseconds(),
		c.Usage.InputTokens, c.Usage.OutputTokens, firstIntent, w.version(),
	).QueryRow(func(row pgx.Row) error { return row.Scan(&archived) })
	if c.Summary != nil {
		s.queueUsage(batch, l, &l.Token, Spent{Model: c.Model, Calls: 1, Usage: c.Usage})
	}
	err = s.as(l.TenantID).SendBatch(ctx, batch).Close()
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrLeaseLost
	}
	if err != nil {
		return 0, fmt.Errorf("applying compaction: %w", err)
	}
	return archived, nil
}

// CompactionStats describe a session's compaction state.
type CompactionStats struct {
	Compactions      int
	LiveMessages     int
	ArchivedMessages int
	HasSummary       bool
	LastCompactedAt  *time.Time
	TokensSaved      int64
}

const compactionStatsSQL = `
SELECT
    (SELECT count(*) FROM {{schema}}.compaction_events e WHERE e.tenant_id = s.tenant_id AND e.session_id = s.id),
    (SELECT count(*) FROM {{schema}}.messages m WHERE m.tenant_id = s.tenant_id AND m.session_id = s.id),
    (SELECT count(*) FROM {{schema}}.message_archive a WHERE a.tenant_id = s.tenant_id AND a.session_id = s.id),
    s.summary IS NOT NULL,
    (SELECT max(created_at) FROM {{schema}}.compaction_events e WHERE e.tenant_id = s.tenant_id AND e.session_id = s.id),
    (SELECT coalesce(sum(tokens_before - tokens_after), 0) FROM {{schema}}.compaction_events e WHERE e.tenant_id = s.tenant_id AND e.session_id = s.id)
FROM {{schema}}.sessions s
WHERE s.tenant_id = $1 AND s.id = $2`

// CompactionStats returns the session's compaction state, or ErrNotFound.
func (s *Store) CompactionStats(ctx context.Context, tenantID, sessionID string) (CompactionStats, error) {
	var st CompactionStats
	err := s.as(tenantID).QueryRow(ctx, s.q(compactionStatsSQL), tenantID, sessionID).Scan(
		&st.Compactions, &st.LiveMessages, &st.ArchivedMessages, &st.HasSummary, &st.LastCompactedAt, &st.TokensSaved)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, ErrNotFound
	}
	return st, err
}

// ArchivedMessage is a row of the message archive.
type ArchivedMessage struct {
	Message
	CompactionID string
	ArchivedAt   time.Time
}

const listArchiveSQL = `
SELECT id::text, run_id::text, seq, role, content, usage, created_at, compaction_id::text, archived_at, key_version
FROM {{schema}}.message_archive
WHERE tenant_id = $1 AND session_id = $2
  AND (seq, compaction_id) > ($3, coalesce($4::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY seq, compaction_id
LIMIT $5`

// ListArchive returns up to limit of the session's archived messages in
// order of seq and compaction (compaction ids are time-ordered), after the
// one archived at afterSeq by afterCompaction (nil: the first at afterSeq).
func (s *Store) ListArchive(ctx context.Context, tenantID, sessionID string, afterSeq int64, afterCompaction *string, limit int) ([]ArchivedMessage, error) {
	archived, err := queryAll(ctx, s.as(tenantID), "archived messages", s.q(listArchiveSQL), func(row pgx.CollectableRow) (ArchivedMessage, error) {
		var m ArchivedMessage
		err := row.Scan(&m.ID, &m.RunID, &m.Seq, &m.Role, &m.Content, &m.Usage, &m.CreatedAt, &m.CompactionID, &m.ArchivedAt, &m.keyVersion)
		return m, err
	}, tenantID, sessionID, afterSeq, afterCompaction, limit)
	if err != nil {
		return nil, err
	}
	o := s.opener(ctx, tenantID)
	for i := range archived {
		if err := o.message(sessionID, &archived[i].Message); err != nil {
			return nil, err
		}
	}
	return archived, nil
}
