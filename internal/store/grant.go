package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ErrUnfitRole: the role cannot be the application role (see
// GrantAppRole).
var ErrUnfitRole = errors.New("unfit for the application role")

// appTablePrivileges are the privileges the application role needs on each
// of our tables: what the store's statements do to them. Deletes that
// cascade from a session need none (foreign key actions run as the
// table's owner). A table of ours missing here gets no privilege
// (TestAppPrivilegesCoverEveryTable keeps the list whole).
var appTablePrivileges = map[string]string{
	"schema_migrations": "SELECT", // Pending, for agentpg doctor
	"sessions":          "SELECT, INSERT, UPDATE, DELETE",
	"runs":              "SELECT, INSERT, UPDATE",
	"messages":          "SELECT, INSERT, UPDATE, DELETE", // compaction prunes and archives
	"tool_executions":   "SELECT, INSERT, UPDATE",
	"compaction_events": "SELECT, INSERT",
	"message_archive":   "SELECT, INSERT, UPDATE", // key rotation re-encrypts
	"run_events":        "SELECT, INSERT, UPDATE", // key rotation re-encrypts
	"session_waiters":   "SELECT, INSERT, UPDATE, DELETE",
	// The audit log: entries are appended, and erasure blanks their
	// content; heads are locked (FOR UPDATE) and moved.
	"audit_log":   "SELECT, INSERT, UPDATE",
	"audit_heads": "SELECT, INSERT, UPDATE",
	// Limits, their counters and usage, erased with their tenant.
	"tenant_limits":        "SELECT, INSERT, UPDATE, DELETE",
	"model_requests":       "SELECT, INSERT, DELETE",
	"model_request_counts": "SELECT, INSERT, UPDATE, DELETE",
	"tenant_usage":         "SELECT, INSERT, UPDATE, DELETE",
	"retention_policies":   "SELECT, INSERT, UPDATE, DELETE",
	// Data keys: made at a tenant's first sealed write and by rotations,
	// re-wrapped, and deleted with their tenant.
	"data_keys": "SELECT, INSERT, UPDATE, DELETE",
}

// River's tables (river_*) are River's queue, which its client inserts in,
// works, cleans and elects a leader in; river_migration it only reads.
const (
	riverTablePrefix     = "river_"
	riverTablePrivileges = "SELECT, INSERT, UPDATE, DELETE"
	riverMigrationTable  = "river_migration"
)

// appFunctions are the functions the application role calls: those of
// the narrow cross-tenant path (migrations 011 and 015), and the admission
// of model calls under a tenant's limits (migration 010).
var appFunctions = []string{
	"fail_stuck_runs(text, double precision)", "orphaned_run_chains(text, double precision)",
	"usage_anomalies(double precision)", "limited_tenants()",
	"audit_tenants()", "retention(text, integer)", "key_tenants()", "key_summary()",
	"admit_model_call(text, uuid)", "limit_exceeded(text, text, bigint, interval)",
}

// ValidateRoleName reports whether name can be quoted as a role to grant
// to: 1 to 63 bytes of UTF-8 without NUL, not PUBLIC or NONE (which
// GRANT reads as keywords, quoted or not) nor a reserved pg_ role.
func ValidateRoleName(name string) error {
	switch lower := strings.ToLower(name); {
	case name == "":
		return errors.New("role name is empty")
	case len(name) > 63:
		return fmt.Errorf("role name is %d bytes, over PostgreSQL's 63", len(name))
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return errors.New("role name is not valid UTF-8 without NUL")
	case lower == "public" || lower == "none" || strings.HasPrefix(lower, "pg_"):
		return fmt.Errorf("role name %q is reserved", name)
	}
	return nil
}

const appRoleSQL = `
SELECT r.rolsuper, r.rolbypassrls,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c
               WHERE c.relnamespace = n.oid AND pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER'))
       OR pg_catalog.pg_has_role(r.oid, n.nspowner, 'MEMBER'),
       ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c
             WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p') ORDER BY c.relname)
FROM pg_catalog.pg_roles r, pg_catalog.pg_namespace n
WHERE r.rolname = $1 AND n.nspname = $2`

// GrantAppRole grants role exactly the privileges the library needs at
// run time on the schema's tables, River's included, and nothing else:
// USAGE on the schema, the table privileges of appTablePrivileges, USAGE
// on the sequences, EXECUTE on appFunctions; no ownership, no
// DDL, no TRUNCATE. It first revokes what role held on the schema and its
// objects, so running it again, after a migration, leaves exactly that.
// It returns ErrUnfitRole for a role that does not exist, is a superuser,
// has BYPASSRLS (row-level security would not apply to it), or owns the
// schema or one of its tables or is a member of their owner (it could turn
// row-level security off), and ErrNotFound before Migrate. The caller
// must own the schema's objects.
func (s *Store) GrantAppRole(ctx context.Context, role string) error {
	if err := ValidateRoleName(role); err != nil {
		return fmt.Errorf("%w: %w", ErrUnfitRole, err)
	}
	return pgx.BeginFunc(ctx, s.noTenant(), func(tx pgx.Tx) error {
		// Concurrent grants on one object fail ("tuple concurrently
		// updated"): take turns with them and with migrations.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.advisoryKey()); err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		var super, bypass, owns bool
		var tables []string
		err := tx.QueryRow(ctx, appRoleSQL, role, s.schema).Scan(&super, &bypass, &owns, &tables)
		if errors.Is(err, pgx.ErrNoRows) {
			var roleExists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, role).Scan(&roleExists); err != nil {
				return fmt.Errorf("looking for role %q: %w", role, err)
			}
			if !roleExists {
				return fmt.Errorf("%w: role %q does not exist: create it first (CREATE ROLE ... LOGIN)", ErrUnfitRole, role)
			}
			return fmt.Errorf("schema %s: %w: migrate first", s.schema, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading role %q: %w", role, err)
		}
		switch {
		case super:
			return fmt.Errorf("%w: role %q is a superuser, which row-level security never applies to", ErrUnfitRole, role)
		case bypass:
			return fmt.Errorf("%w: role %q has BYPASSRLS, so row-level security does not apply to it", ErrUnfitRole, role)
		case owns:
			return fmt.Errorf("%w: role %q owns schema %s or its tables, or is a member of their owner, so it could turn row-level security off", ErrUnfitRole, role, s.schema)
		}
		for _, stmt := range s.grantStatements(role, tables) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("granting role %q: %w", role, err)
			}
		}
		return nil
	})
}

// grantStatements are the statements of GrantAppRole for role, given the
// schema's tables.
func (s *Store) grantStatements(role string, tables []string) []string {
	to := pgx.Identifier{role}.Sanitize()
	schema := pgx.Identifier{s.schema}.Sanitize()
	stmts := []string{
		"REVOKE ALL ON ALL TABLES IN SCHEMA " + schema + " FROM " + to,
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA " + schema + " FROM " + to,
		"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA " + schema + " FROM " + to,
		"REVOKE ALL ON SCHEMA " + schema + " FROM " + to,
		"GRANT USAGE ON SCHEMA " + schema + " TO " + to,
		"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + to,
	}
	for _, table := range tables {
		privileges, ok := appTablePrivileges[table]
		switch {
		case table == riverMigrationTable:
			privileges, ok = "SELECT", true
		case strings.HasPrefix(table, riverTablePrefix):
			privileges, ok = riverTablePrivileges, true
		}
		if ok {
			stmts = append(stmts, "GRANT "+privileges+" ON "+pgx.Identifier{s.schema, table}.Sanitize()+" TO "+to)
		}
	}
	for _, fn := range appFunctions {
		stmts = append(stmts, "GRANT EXECUTE ON FUNCTION "+schema+"."+fn+" TO "+to)
	}
	return stmts
}

// TableSecurity is the row-level security of a tenant table.
type TableSecurity struct {
	Table string
	// Enabled and Forced report ENABLE and FORCE ROW LEVEL SECURITY;
	// Policy, the tenant policy of migration 011.
	Enabled, Forced, Policy bool
}

const tenantTablesSQL = `
SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
       EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'agentpg_tenant')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> '` + settingsTable + `'
ORDER BY c.relname`

// settingsTable is the table with a tenant_id column that is no tenant
// table: the operator's retention periods by tenant id (” for the
// default), which hold no tenant's data (migration 011).
const settingsTable = "retention_policies"

// TenantTables returns the row-level security of the schema's tenant
// tables: those with a tenant_id column, settingsTable aside.
func (s *Store) TenantTables(ctx context.Context) ([]TableSecurity, error) {
	return queryAll(ctx, s.noTenant(), "tenant tables", tenantTablesSQL, func(row pgx.CollectableRow) (TableSecurity, error) {
		var t TableSecurity
		err := row.Scan(&t.Table, &t.Enabled, &t.Forced, &t.Policy)
		return t, err
	}, s.schema)
}

// Role describes the role a connection runs as.
type Role struct {
	Name                 string
	Superuser, BypassRLS bool
	// Owner reports that the role owns the schema or one of its tables,
	// or is a member of their owner.
	Owner bool
}

const currentRoleSQL = `
SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
       EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
               LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
               WHERE n.nspname = $1
                 AND (pg_catalog.pg_has_role(r.oid, n.nspowner, 'MEMBER')
                      OR pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')))
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`

// CurrentRole describes the role the store's connection runs as.
func (s *Store) CurrentRole(ctx context.Context) (Role, error) {
	var r Role
	err := s.noTenant().QueryRow(ctx, currentRoleSQL, s.schema).Scan(&r.Name, &r.Superuser, &r.BypassRLS, &r.Owner)
	if err != nil {
		return r, fmt.Errorf("reading the connection's role: %w", err)
	}
	return r, nil
}
