// Package store holds every SQL statement of AgentPG. The rest of the code
// calls its typed functions; nothing else builds SQL.
//
// Statements name their tables through the {{schema}} placeholder, replaced
// once, when the Store is made, by the sanitized schema identifier. Every value
// travels as a bind parameter.
//
// Every statement on a tenant's rows goes through as(tenantID), which sends
// it with the transaction-local setting that the row-level security
// policies (migration 011) compare tenant_id with, in the same round trip
// and transaction. The few statements that touch no tenant's rows, or cross
// tenants through a SECURITY DEFINER function, go through noTenant. No
// other code reads the Store's connection (TestStatementsCarryTheTenant).
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the store needs from a connection: *pgxpool.Pool, *pgx.Conn and
// pgx.Tx all satisfy it. A batch runs in one round trip, in one implicit
// transaction.
type DB interface {
	querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// querier sends statements: a DB, or a DB bound to a tenant (see as).
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Errors the store reports; callers branch on them with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("already exists")
	ErrBusy      = errors.New("leased by another run")
	ErrLeaseLost = errors.New("lease lost")
)

// DefaultSchema is the schema used when none is configured.
const DefaultSchema = "agentpg"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema reports whether name is usable as our schema: lower case
// letters, digits and underscores, not starting with a digit, at most 63
// bytes, so that it never needs quoting surprises.
func ValidateSchema(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("schema %q must match %s", name, schemaName)
	}
	return nil
}

// Store runs AgentPG's statements in one schema.
type Store struct {
	db     DB
	schema string
	sql    *strings.Replacer
	cache  *sync.Map // statement template -> statement for this schema, shared by WithDB copies
	crypt  *crypt    // nil: content is stored in plaintext (see WithKeys)
}

// New returns a Store for the tables in schema ("" means DefaultSchema).
func New(db DB, schema string) (*Store, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	return &Store{
		db:     db,
		schema: schema,
		sql:    strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize()),
		cache:  new(sync.Map),
	}, nil
}

// WithDB returns a copy of the store that runs its statements on db, such as
// a caller's transaction.
func (s *Store) WithDB(db DB) *Store {
	c := *s
	c.db = db
	return &c
}

// as returns the store's connection bound to the tenant: each statement or
// batch sent through it carries the tenant's setting (see tenantDB).
func (s *Store) as(tenantID string) querier { return tenantDB{db: s.db, tenant: tenantID} }

// noTenant returns the store's connection with no tenant setting, under
// which row-level security shows no tenant's rows: for the statements that
// touch none (migrations, grants, catalog checks) and for calling the
// SECURITY DEFINER functions of the narrow cross-tenant path (see
// FailStuckRuns).
func (s *Store) noTenant() DB { return s.db }

// Schema returns the schema the store works in.
func (s *Store) Schema() string { return s.schema }

// q returns statement with the schema placeholder filled in.
func (s *Store) q(statement string) string {
	if v, ok := s.cache.Load(statement); ok {
		return v.(string)
	}
	v, _ := s.cache.LoadOrStore(statement, s.sql.Replace(statement))
	return v.(string)
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// isUndefinedTable reports whether err says our table or schema does not exist yet.
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}

// queryAll runs statement and collects its rows with scan. what names the
// rows in errors.
func queryAll[T any](ctx context.Context, db querier, what, statement string, scan pgx.RowToFunc[T], args ...any) ([]T, error) {
	rows, err := db.Query(ctx, statement, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	items, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return items, nil
}
