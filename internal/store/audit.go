package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AuditRow is a row of the audit_log table.
type AuditRow struct {
	TenantID   string
	Seq        int64
	OccurredAt time.Time
	Action     string
	Tool       string
	Success    bool
	// The content columns, blank once erased.
	UserID    string
	SessionID string
	RunID     string
	Actor     string
	Input     string
	Detail    string

	ContentHash []byte
	PrevHash    []byte
	Hash        []byte
	// ErasedAt and ErasedBy (the seq of the tombstone) are set by erasure.
	ErasedAt *time.Time
	ErasedBy *int64
}

// AuditHead is the head of a tenant's audit chain: its last seq and hash
// (0 and nil for a chain without entries).
type AuditHead struct {
	TenantID string
	Seq      int64
	Hash     []byte
}

// AuditChain computes the rows to append to the chains whose heads it is
// given, locked, by tenant: each row's Seq, PrevHash and hashes follow its
// tenant's head.
type AuditChain func(heads map[string]AuditHead) ([]AuditRow, error)

const auditColumns = `tenant_id, seq, occurred_at, action, tool, success, user_id, session_id, run_id, actor,
    input, detail, content_hash, prev_hash, hash, erased_at, erased_by`

const createAuditHeadsSQL = `
INSERT INTO {{schema}}.audit_heads (tenant_id, seq, hash) VALUES ($1, 0, '\x')
ON CONFLICT (tenant_id) DO NOTHING`

const lockAuditHeadsSQL = `SELECT tenant_id, seq, hash FROM {{schema}}.audit_heads WHERE tenant_id = $1 FOR UPDATE`

const insertAuditRowsSQL = `
INSERT INTO {{schema}}.audit_log (` + auditColumns + `)
SELECT *, NULL::timestamptz, NULL::bigint
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::boolean[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::bytea[], $15::bytea[])`

const moveAuditHeadSQL = `UPDATE {{schema}}.audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1`

// batcher runs batches: a pgx.Tx, or a connection of a pool.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// AppendAudit appends rows to the audit chains of tenants, in one
// transaction of two round trips: it locks the tenants' heads (in tenant
// order, so that concurrent writers of any process take turns without
// deadlock), asks chain for the rows that follow them, inserts the rows,
// moves the heads to each tenant's last row and commits. It needs a Store
// on a pool, whose connection it holds throughout.
func (s *Store) AppendAudit(ctx context.Context, tenants []string, chain AuditChain) error {
	pool, ok := s.noTenant().(interface {
		Acquire(ctx context.Context) (*pgxpool.Conn, error)
	})
	if !ok {
		return errors.New("appending to the audit log needs a pool")
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("appending to the audit log: %w", err)
	}
	// A failure leaves the connection in the transaction: the pool then
	// closes it instead of lending it again, which rolls the transaction
	// back.
	defer conn.Release()
	heads, err := s.lockAuditHeads(ctx, conn, tenants, true)
	if err != nil {
		return err
	}
	rows, err := chain(heads)
	if err != nil {
		return err
	}
	return s.insertAuditRows(ctx, conn, rows, true)
}

// lockAuditHeads locks the heads of the tenants' chains, making those
// missing, and returns them by tenant; with begin, it begins the
// transaction first, in the same round trip. Each tenant's statements are
// sent with its setting, in tenant order.
func (s *Store) lockAuditHeads(ctx context.Context, db batcher, tenants []string, begin bool) (map[string]AuditHead, error) {
	tenants = slices.Compact(slices.Sorted(slices.Values(tenants)))
	batch := &pgx.Batch{}
	if begin {
		batch.Queue(`BEGIN`)
	}
	heads := make(map[string]AuditHead, len(tenants))
	for _, tenant := range tenants {
		batch.QueuedQueries = append(batch.QueuedQueries, setTenant(tenant))
		batch.Queue(s.q(createAuditHeadsSQL), tenant)
		batch.Queue(s.q(lockAuditHeadsSQL), tenant).QueryRow(func(row pgx.Row) error {
			var h AuditHead
			err := row.Scan(&h.TenantID, &h.Seq, &h.Hash)
			heads[h.TenantID] = h
			return err
		})
	}
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("locking the audit chains: %w", err)
	}
	return heads, nil
}

// insertAuditRows inserts rows, in order, and moves their tenants' heads
// to the last row of each; with commit, it commits the transaction then,
// in the same round trip. Each tenant's rows are sent with its setting.
func (s *Store) insertAuditRows(ctx context.Context, db batcher, rows []AuditRow, commit bool) error {
	byTenant := make(map[string][]AuditRow)
	for _, r := range rows {
		byTenant[r.TenantID] = append(byTenant[r.TenantID], r)
	}
	batch := &pgx.Batch{}
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		batch.QueuedQueries = append(batch.QueuedQueries, setTenant(tenant))
		s.queueAuditRows(batch, byTenant[tenant])
	}
	if commit {
		batch.Queue(`COMMIT`)
	}
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("appending to the audit log: %w", err)
	}
	return nil
}

// queueAuditRows queues in batch the insertion of rows, of one tenant and
// in order, and the move of its head to the last.
func (s *Store) queueAuditRows(batch *pgx.Batch, rows []AuditRow) {
	n := len(rows)
	var (
		tenants, actions, tools, users, sessions, runs, actors, inputs, details = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs                              = make([]int64, n)
		times                             = make([]time.Time, n)
		successes                         = make([]bool, n)
		contentHashes, prevHashes, hashes = make([][]byte, n), make([][]byte, n), make([][]byte, n)
	)
	for i, r := range rows {
		tenants[i], seqs[i], times[i], actions[i], tools[i], successes[i] = r.TenantID, r.Seq, r.OccurredAt, r.Action, r.Tool, r.Success
		users[i], sessions[i], runs[i], actors[i], inputs[i], details[i] = r.UserID, r.SessionID, r.RunID, r.Actor, r.Input, r.Detail
		contentHashes[i], prevHashes[i], hashes[i] = r.ContentHash, r.PrevHash, r.Hash
	}
	last := rows[n-1]
	batch.Queue(s.q(insertAuditRowsSQL), tenants, seqs, times, actions, tools, successes, users, sessions, runs,
		actors, inputs, details, contentHashes, prevHashes, hashes)
	batch.Queue(s.q(moveAuditHeadSQL), last.TenantID, last.Seq, last.Hash)
}

const eraseAuditSQL = `
UPDATE {{schema}}.audit_log
SET user_id = '', session_id = '', run_id = '', actor = '', input = '', detail = '',
    erased_at = $3, erased_by = $4
WHERE tenant_id = $1 AND ($2::text IS NULL OR user_id = $2)
  AND erased_at IS NULL AND action <> 'audit_erasure'
RETURNING seq`

// EraseAudit blanks the content of the tenant's audit entries of userID
// (every entry of the tenant when userID is nil; tombstones excepted),
// marking them erased at by the tombstone that it appends, in one
// transaction that holds the tenant's chain. tombstone makes the tombstone
// row from the locked head and the erased seqs, in ascending order. It
// returns how many entries it erased.
func (s *Store) EraseAudit(ctx context.Context, tenantID string, userID *string, at time.Time,
	tombstone func(head AuditHead, erased []int64) (AuditRow, error)) (int, error) {
	var erased []int64
	err := pgx.BeginFunc(ctx, s.noTenant(), func(tx pgx.Tx) error {
		heads, err := s.lockAuditHeads(ctx, tx, []string{tenantID}, false)
		if err != nil {
			return err
		}
		head := heads[tenantID]
		if _, err := tx.Exec(ctx, `SELECT set_config('agentpg.audit_erasure', 'on', true)`); err != nil {
			return fmt.Errorf("opening the erasure path: %w", err)
		}
		rows, err := tenantDB{db: tx, tenant: tenantID}.Query(ctx, s.q(eraseAuditSQL), tenantID, userID, at, head.Seq+1)
		if err != nil {
			return fmt.Errorf("erasing audit entries: %w", err)
		}
		if erased, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return fmt.Errorf("erasing audit entries: %w", err)
		}
		slices.Sort(erased)
		row, err := tombstone(head, erased)
		if err != nil {
			return err
		}
		return s.insertAuditRows(ctx, tx, []AuditRow{row}, false)
	})
	return len(erased), err
}

// AuditFilter selects the audit entries of a listing.
type AuditFilter struct {
	AfterSeq     int64
	Since, Until *time.Time // occurred_at at or after Since, before Until
	Limit        int
}

const listAuditSQL = `SELECT ` + auditColumns + ` FROM {{schema}}.audit_log
WHERE tenant_id = $1 AND seq > $2
  AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4)
ORDER BY seq LIMIT $5`

// ListAudit returns up to f.Limit of the tenant's audit entries, in seq
// order, that f selects.
func (s *Store) ListAudit(ctx context.Context, tenantID string, f AuditFilter) ([]AuditRow, error) {
	return queryAll(ctx, s.as(tenantID), "audit entries", s.q(listAuditSQL), pgx.RowToStructByPos[AuditRow],
		tenantID, f.AfterSeq, f.Since, f.Until, f.Limit)
}

const auditHeadSQL = `SELECT tenant_id, seq, hash FROM {{schema}}.audit_heads WHERE tenant_id = $1`

// AuditHead returns the head of the tenant's chain, or ErrNotFound when it
// has none.
func (s *Store) AuditHead(ctx context.Context, tenantID string) (AuditHead, error) {
	return auditHead(ctx, s.as(tenantID), s.q(auditHeadSQL), tenantID)
}

func auditHead(ctx context.Context, db querier, statement, tenantID string) (AuditHead, error) {
	rows, err := db.Query(ctx, statement, tenantID)
	if err != nil {
		return AuditHead{}, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	head, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[AuditHead])
	if errors.Is(err, pgx.ErrNoRows) {
		return AuditHead{}, ErrNotFound
	}
	if err != nil {
		return AuditHead{}, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return head, nil
}

const readAuditChainSQL = `SELECT ` + auditColumns + ` FROM {{schema}}.audit_log
WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`

// ReadAuditChain reads the tenant's chain in one snapshot (a read-only
// repeatable read transaction): it passes each row, in seq order, to visit,
// reading pageSize rows at a time, and returns the chain's head, or nil
// when it has none.
func (s *Store) ReadAuditChain(ctx context.Context, tenantID string, pageSize int, visit func(AuditRow) error) (*AuditHead, error) {
	var head *AuditHead
	err := pgx.BeginFunc(ctx, s.noTenant(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return fmt.Errorf("reading the audit chain: %w", err)
		}
		db := tenantDB{db: tx, tenant: tenantID}
		h, err := auditHead(ctx, db, s.q(auditHeadSQL), tenantID)
		switch {
		case err == nil:
			head = &h
		case !errors.Is(err, ErrNotFound):
			return err
		}
		for after := int64(0); ; {
			rows, err := queryAll(ctx, db, "the audit chain", s.q(readAuditChainSQL), pgx.RowToStructByPos[AuditRow],
				tenantID, after, pageSize)
			if err != nil {
				return err
			}
			for _, row := range rows {
				if err := visit(row); err != nil {
					return err
				}
			}
			if len(rows) < pageSize {
				return nil
			}
			after = rows[len(rows)-1].Seq
		}
	})
	return head, err
}

// auditTenantsSQL calls the function of migration 011 that lists, across
// tenants, the tenants with audit entries or a chain head.
const auditTenantsSQL = `SELECT t FROM {{schema}}.audit_tenants() AS t ORDER BY 1`

// AuditTenants returns every tenant with audit entries or a chain head, in
// order: a narrow cross-tenant path, which reads tenant ids only.
func (s *Store) AuditTenants(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.noTenant(), "audit tenants", s.q(auditTenantsSQL), pgx.RowTo[string])
}
