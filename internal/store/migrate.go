package store

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Migration is one embedded, versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.up.sql")
	if err != nil {
		return nil, err
	}
	migrations := make([]Migration, 0, len(names))
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".up.sql")
		number, label, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(number)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %q is not named NNN_name.up.sql", name)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		migrations = append(migrations, Migration{Version: version, Name: label, SQL: string(body)})
	}
	sort.Slice(migrations, func(i, j int) bool { return migrations[i].Version < migrations[j].Version })
	return migrations, nil
}

const (
	createSchemaSQL     = `CREATE SCHEMA IF NOT EXISTS {{schema}}`
	createMigrationsSQL = `CREATE TABLE IF NOT EXISTS {{schema}}.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`
	appliedMigrationsSQL = `SELECT version FROM {{schema}}.schema_migrations`
	recordMigrationSQL   = `INSERT INTO {{schema}}.schema_migrations (version, name) VALUES ($1, $2)`
)

// Migrate applies every embedded migration not yet applied, then River's
// (the job queue of enqueued runs, in the same schema), in one
// transaction; on a database without River's tables, River's migrations
// from its version 6 on follow in a second one, since they use an enum
// value River's version 4 adds, which must be committed first. In a
// caller's transaction (a Store on a pgx.Tx) that second step cannot
// happen: River's tables then stay at version 5 until the next Migrate
// outside a transaction. A transaction-scoped advisory lock, keyed by the schema name,
// makes concurrent callers take turns; the later ones find nothing to do.
// It returns the versions of ours it applied.
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	riverDone := false
	err = pgx.BeginFunc(ctx, s.noTenant(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.advisoryKey()); err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		for _, stmt := range []string{createSchemaSQL, createMigrationsSQL} {
			if _, err := tx.Exec(ctx, s.q(stmt)); err != nil {
				return fmt.Errorf("creating schema %s: %w", s.schema, err)
			}
		}
		done, err := s.appliedVersions(ctx, tx)
		if err != nil {
			return err
		}
		for _, m := range migrations {
			if done[m.Version] {
				continue
			}
			if _, err := tx.Exec(ctx, s.q(m.SQL)); err != nil {
				return fmt.Errorf("applying migration %03d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, s.q(recordMigrationSQL), m.Version, m.Name); err != nil {
				return fmt.Errorf("recording migration %03d_%s: %w", m.Version, m.Name, err)
			}
			applied = append(applied, m.Version)
		}
		riverDone, err = s.migrateRiver(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, inTx := s.noTenant().(pgx.Tx); !riverDone && !inTx {
		err = pgx.BeginFunc(ctx, s.noTenant(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.advisoryKey()); err != nil {
				return fmt.Errorf("taking the migration lock: %w", err)
			}
			_, err := s.migrateRiver(ctx, tx)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return applied, nil
}

// SchemaExists reports whether the store's schema exists.
func (s *Store) SchemaExists(ctx context.Context) (bool, error) {
	var exists bool
	if err := s.noTenant().QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, s.schema).Scan(&exists); err != nil {
		return false, fmt.Errorf("looking for schema %q: %w", s.schema, err)
	}
	return exists, nil
}

// Pending returns the versions of the embedded migrations not yet applied.
func (s *Store) Pending(ctx context.Context) ([]int, error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	done, err := s.appliedVersions(ctx, s.noTenant())
	if err != nil {
		return nil, err
	}
	var pending []int
	for _, m := range migrations {
		if !done[m.Version] {
			pending = append(pending, m.Version)
		}
	}
	return pending, nil
}

func (s *Store) appliedVersions(ctx context.Context, db querier) (map[int]bool, error) {
	rows, err := db.Query(ctx, s.q(appliedMigrationsSQL))
	if err != nil {
		if isUndefinedTable(err) {
			return map[int]bool{}, nil
		}
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	done := make(map[int]bool, len(versions))
	for _, v := range versions {
		done[v] = true
	}
	return done, nil
}

// advisoryKey is the lock key for migrating this store's schema.
func (s *Store) advisoryKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("agentpg-migrate:" + s.schema))
	return int64(h.Sum64())
}
