package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

const readTenantSQL = `SELECT coalesce(current_setting('` + store.TenantSetting + `', true), '')`

// TestTenantSettingLastsForItsStatement checks, in every query mode of
// pgx, that the tenant's setting, sent in the statement's batch, is seen
// by every statement of that batch, and by no later statement on the same
// connection: a pipeline with one Sync is one implicit transaction, and
// set_config(..., true) ends with it.
func TestTenantSettingLastsForItsStatement(t *testing.T) {
	t.Parallel()
	base := agentpgtest.DB(t).Config()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			cfg := base.Copy()
			cfg.ConnConfig.DefaultQueryExecMode = mode
			cfg.MaxConns = 1 // every statement on one connection
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			acme := store.TenantDB(pool, "acme's")

			var got string
			if err := acme.QueryRow(ctx, readTenantSQL).Scan(&got); err != nil || got != "acme's" {
				t.Errorf("QueryRow read the setting %q, %v; want acme's", got, err)
			}
			if err := pool.QueryRow(ctx, readTenantSQL).Scan(&got); err != nil || got != "" {
				t.Errorf("the next statement read the setting %q, %v; want none", got, err)
			}

			var first, second string
			b := &pgx.Batch{}
			b.Queue(readTenantSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&first) })
			b.Queue(readTenantSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&second) })
			if err := acme.SendBatch(ctx, b).Close(); err != nil || first != "acme's" || second != "acme's" {
				t.Errorf("a batch read the setting %q and %q, %v; want acme's twice", first, second, err)
			}

			rows, err := store.TenantDB(pool, "globex").Query(ctx, readTenantSQL+` FROM generate_series(1, 3)`)
			if err != nil {
				t.Fatal(err)
			}
			values, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || !slices.Equal(values, []string{"globex", "globex", "globex"}) {
				t.Errorf("Query read %q, %v; want globex three times", values, err)
			}
			if _, err := acme.Exec(ctx, `SELECT 1`); err != nil {
				t.Errorf("Exec: %v", err)
			}
			if err := pool.QueryRow(ctx, readTenantSQL).Scan(&got); err != nil || got != "" {
				t.Errorf("after Query and Exec, the next statement read the setting %q, %v; want none", got, err)
			}
		})
	}
}

// TestTenantSettingInTransaction checks that in the caller's transaction
// each statement carries its own tenant, and that the setting ends with
// the transaction.
func TestTenantSettingInTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := agentpgtest.DB(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, tenant := range []string{"acme", "globex"} {
		if err := store.TenantDB(tx, tenant).QueryRow(ctx, readTenantSQL).Scan(&got); err != nil || got != tenant {
			t.Errorf("in the transaction, read %q, %v; want %s", got, err, tenant)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, readTenantSQL).Scan(&got); err != nil || got != "" {
		t.Errorf("after the transaction, read %q, %v; want none", got, err)
	}
}

// TestTenantQueryErrors checks that the errors of a statement sent with
// its tenant come back as pgx's would, and leave the connection usable.
func TestTenantQueryErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := agentpgtest.DB(t)
	acme := store.TenantDB(pool, "acme")
	if _, err := acme.Query(ctx, `SELECT nonsense`); err == nil {
		t.Error("Query of a bad statement succeeded")
	}
	var n int
	if err := acme.QueryRow(ctx, `SELECT 1 WHERE false`).Scan(&n); err != pgx.ErrNoRows {
		t.Errorf("QueryRow of no row: %v, want pgx.ErrNoRows", err)
	}
	if err := acme.QueryRow(ctx, `SELECT 1/0`).Scan(&n); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("QueryRow of 1/0: %v, want division by zero", err)
	}
	if _, err := acme.Exec(ctx, `SELECT 1/0`); err == nil {
		t.Error("Exec of 1/0 succeeded")
	}
	if err := acme.QueryRow(ctx, `SELECT 2`).Scan(&n); err != nil || n != 2 {
		t.Errorf("after the errors, QueryRow = %d, %v", n, err)
	}
}

// TestAppPrivilegesCoverEveryTable checks that the application role's
// privileges name every table of ours, and only tables that exist: a
// migration that adds a table must say what the application may do with
// it.
func TestAppPrivilegesCoverEveryTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := agentpgtest.DB(t)
	rows, err := pool.Query(ctx, `SELECT relname::text FROM pg_class
		WHERE relnamespace = 'agentpg'::regnamespace AND relkind IN ('r', 'p') AND NOT starts_with(relname, 'river_')`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		if _, ok := store.AppTablePrivileges[table]; !ok {
			t.Errorf("table %s has no entry in appTablePrivileges (grant.go)", table)
		}
	}
	for table := range store.AppTablePrivileges {
		if !slices.Contains(tables, table) {
			t.Errorf("appTablePrivileges names %s, which no migration creates", table)
		}
	}
}
