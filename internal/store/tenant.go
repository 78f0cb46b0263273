package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TenantSetting is the transaction-local setting the row-level security
// policies compare tenant_id with (see migration 011). Unset, or set to
// "", it matches no row.
const TenantSetting = "agentpg.tenant_id"

// setTenantSQL sets TenantSetting until the end of the transaction: that of
// its batch, an implicit one that ends with the batch, or the caller's.
const setTenantSQL = `SELECT set_config('` + TenantSetting + `', $1, true)`

// tenantDB is a connection bound to a tenant: it sends each statement as a
// batch of two, the tenant's setting then the statement, and each batch
// with the setting queued first. A batch is one round trip and one
// transaction (implicit, or the caller's pgx.Tx), so the setting costs no
// round trip and ends with the statement's transaction, never reaching
// another statement that a pooled connection serves next.
type tenantDB struct {
	db     querier
	tenant string
}

// SendBatch sends b with the tenant's setting queued first. The setting's
// result comes first: b's queries must read theirs through their callbacks
// (QueuedQuery.Query, QueryRow, Exec) and Close, which skip it. b must not
// begin a transaction with Batch.BeginTx.
func (t tenantDB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	b.QueuedQueries = append([]*pgx.QueuedQuery{setTenant(t.tenant)}, b.QueuedQueries...)
	return t.db.SendBatch(ctx, b)
}

// setTenant is the query setting the tenant, to queue in a batch ahead of
// the tenant's statements; its result is read by Close, with no callback.
// A batch writing for several tenants (the audit log's) queues it before
// the statements of each.
func setTenant(tenantID string) *pgx.QueuedQuery {
	return &pgx.QueuedQuery{SQL: setTenantSQL, Arguments: []any{tenantID}}
}

// Exec runs sql with the tenant's setting, in one round trip.
func (t tenantDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	err := t.SendBatch(ctx, b).Close()
	return tag, err
}

// Query runs sql with the tenant's setting, in one round trip. The rows
// hold the connection until they are closed, as pgx's do.
func (t tenantDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil { // the setting
		br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow runs sql with the tenant's setting, in one round trip, and
// returns its first row as pgx's QueryRow does: ErrNoRows when there is
// none.
func (t tenantDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := t.Query(ctx, sql, args...)
	return firstRow{rows: rows, err: err}
}

// batchRows are the rows of the last statement of a batch: closing them
// closes the batch, which reads what is left (the end of the implicit
// transaction, whose commit may fail) and frees the connection.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

// Next advances to the next row; after the last, it closes the batch, so
// that Err reports an error that only the batch's end brings.
func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// Close closes the rows and the batch.
func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

// Err returns the rows' error, or the batch's.
func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// firstRow is the first row of a query, as pgx.Row.
type firstRow struct {
	rows pgx.Rows
	err  error
}

// Scan reads the first row into dest, or returns pgx.ErrNoRows.
func (r firstRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
