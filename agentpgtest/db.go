package agentpgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/internal/store"
)

// DefaultDatabaseURL is the server DB connects to when DATABASE_URL is unset:
// the local PostgreSQL with trust authentication.
const DefaultDatabaseURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// DatabaseURL returns DATABASE_URL, or DefaultDatabaseURL when it is unset.
func DatabaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// DBOptions configures [DBWithOptions].
type DBOptions struct {
	// Schema is the schema AgentPG's migrations run in, as
	// agentpg.Config.Schema; "" means "agentpg".
	Schema string
	// AppRole connects the pool as an application role made for the
	// database, as a deployment would (docs/deployment.md): not a
	// superuser, without BYPASSRLS, owner of nothing, with the privileges
	// agentpg's Agent.GrantAppRole grants. Row-level security applies to
	// it, so a statement sent without its tenant sees no rows. The role,
	// named after the database and given a random password, is dropped
	// with the database. The role of [DatabaseURL] needs CREATEROLE.
	AppRole bool
}

// DB returns a connection pool on a database of the test's own, cloned from
// a template in which AgentPG's migrations (schema "agentpg") have run. The
// database is dropped when the test ends. Tests using DB can run in
// parallel.
//
// DB fails the test, never skips it, when PostgreSQL cannot be reached: a
// suite that skips without a database is a green build that tested nothing.
//
// DB is DBWithOptions with no options; see there for the templates it
// leaves, and [Main] for dropping them.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return DBWithOptions(t, DBOptions{})
}

// DBWithOptions is [DB] with options: with opts.Schema, the database has
// AgentPG's tables in that schema (and no "agentpg" schema), for testing an
// agent configured with the same agentpg.Config.Schema. An invalid schema
// fails the test. The role of [DatabaseURL] needs CREATEDB.
//
// # Templates
//
// The first call of a process for a schema creates, unless it exists, a
// template database named agentpg_template_<hash of the migrations>_<schema>
// (a long schema is cut, and a hash of it added) and runs the migrations in
// it; every test's database is a copy of it. Creating a template also drops
// the templates of other migration sets (left by other versions of AgentPG)
// that no process holds or is connected to.
//
// Templates are shared by the test processes on one server (go test ./...
// runs a process per package, in parallel), so none may drop a template
// that another is about to copy. A process therefore holds, from its first
// use of a template until [Main] ends or the process exits, a shared
// advisory lock on a key derived from the template's name, on a connection
// of its own, taken before it looks for the template. A template is dropped
// only by a session that gets that lock exclusively with
// pg_try_advisory_lock, that is, when no process is using it; a process
// that wants it meanwhile waits for the drop, then makes it again.
// Without Main, the templates of the current migrations stay on the server
// for the next run.
func DBWithOptions(t testing.TB, opts DBOptions) *pgxpool.Pool {
	t.Helper()
	schema := opts.Schema
	if schema == "" {
		schema = store.DefaultSchema
	}
	if err := store.ValidateSchema(schema); err != nil {
		t.Fatalf("agentpgtest: invalid DBOptions.Schema: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	base := DatabaseURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("agentpgtest: cannot reach PostgreSQL at %s (set DATABASE_URL): %v", redactURL(base), err)
	}
	defer admin.Close(ctx)

	hash, err := migrationsHash()
	if err != nil {
		t.Fatalf("agentpgtest: reading the migrations: %v", err)
	}
	template, err := processTemplates.use(ctx, admin, base, hash, schema)
	if err != nil {
		t.Fatalf("agentpgtest: preparing the template database: %v", err)
	}
	name := testDatabasePrefix + randomHex(8)
	create := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize())
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("agentpgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		dropDatabase(t, base, name)
		if opts.AppRole {
			dropRole(t, base, name)
		}
	})
	dsn := withDatabase(base, name)
	if opts.AppRole {
		if dsn, err = appRole(ctx, admin, dsn, name, schema); err != nil {
			t.Fatalf("agentpgtest: making the application role of %s: %v", name, err)
		}
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("agentpgtest: connecting to %s: %v", name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// OwnerDB returns a pool on the database of db, a pool of [DB] or
// [DBWithOptions], as the role of [DatabaseURL], which owns its tables: for
// a test whose agent uses an application role (DBOptions.AppRole) to look
// behind its back. With the default URL that role is a superuser, which
// row-level security does not bind. The pool is closed when the test ends.
func OwnerDB(t testing.TB, db *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(DatabaseURL())
	if err != nil {
		t.Fatalf("agentpgtest: DATABASE_URL: %v", err)
	}
	cfg.ConnConfig.Database = db.Config().ConnConfig.Database
	owner, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("agentpgtest: connecting to %s: %v", cfg.ConnConfig.Database, err)
	}
	t.Cleanup(owner.Close)
	return owner
}

// appRole makes the application role name for the database of dsn (made
// after the database, so that Main never takes it for an orphan), grants
// it what GrantAppRole grants in schema, and returns dsn with it as user.
func appRole(ctx context.Context, admin *pgx.Conn, dsn, name, schema string) (string, error) {
	password := randomHex(16)
	_, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+
		" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '"+password+"'")
	if err != nil {
		return "", err
	}
	owner, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer owner.Close(ctx)
	st, err := store.New(owner, schema)
	if err != nil {
		return "", err
	}
	if err := st.GrantAppRole(ctx, name); err != nil {
		return "", err
	}
	return withUser(dsn, name, password), nil
}

// Main runs the tests and then drops the template databases of the current
// migrations (see [DBWithOptions]) that no other process is using. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { agentpgtest.Main(m) }
//
// When TestMain returns, the testing package exits with the result of the
// tests. Main releases this process's locks on the templates before trying
// to drop them, of whatever schema: the last process of a run to end with
// Main drops them all, and a process still running keeps those it uses.
// Main does not connect to PostgreSQL when no test called DB, and reports a
// failure to drop on standard error without failing the tests.
func Main(m *testing.M) {
	m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !processTemplates.release(ctx) {
		return
	}
	hash, err := migrationsHash()
	if err == nil {
		err = processTemplates.dropUnused(ctx, DatabaseURL(), hash)
	}
	if err == nil {
		err = dropOrphanRoles(ctx, DatabaseURL())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentpgtest: dropping the template databases: %v\n", err)
	}
}

// testDatabasePrefix begins the names of the tests' databases, and of
// their application roles.
const testDatabasePrefix = "agentpg_test_"

// templatePrefix begins the names of the template databases.
const templatePrefix = "agentpg_template_"

// processTemplates are the templates DB uses.
var processTemplates = &templateSet{prefix: templatePrefix, migrate: migrate}

// migrate runs AgentPG's migrations in schema.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	st, err := store.New(conn, schema)
	if err != nil {
		return err
	}
	_, err = st.Migrate(ctx)
	return err
}

// migrationsHash identifies the current set of migrations.
func migrationsHash() (uint64, error) {
	migrations, err := store.Migrations()
	if err != nil {
		return 0, err
	}
	h := fnv.New64a()
	for _, m := range migrations {
		fmt.Fprintf(h, "%d\x00%s\x00", m.Version, m.SQL)
	}
	return h.Sum64(), nil
}

// templateSet is the template databases a process uses: their names begin
// with prefix, followed by the hash of a migration set in 16 hex digits, an
// underscore and the schema. Names that begin with prefix and a hash, not
// followed by an underscore, were made by earlier versions, which had no
// schema option.
type templateSet struct {
	prefix  string
	migrate func(ctx context.Context, conn *pgx.Conn, schema string) error

	mu    sync.Mutex
	conn  *pgx.Conn               // holds a shared lock on each template in ready
	ready map[string]func() error // template name -> its creation, run once
}

// maxIdentifier is the longest name PostgreSQL keeps (NAMEDATALEN - 1).
const maxIdentifier = 63

// name returns the name of the template with the migrations of hash in
// schema. A schema too long to fit is cut, and a hash of it added.
func (s *templateSet) name(hash uint64, schema string) string {
	name := fmt.Sprintf("%s%016x_%s", s.prefix, hash, schema)
	if len(name) <= maxIdentifier {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(schema))
	keep := max(0, maxIdentifier-len(s.prefix)-16-1-9)
	return fmt.Sprintf("%s%016x_%s_%08x", s.prefix, hash, schema[:keep], h.Sum32())
}

// hashOf returns the migration hash a template's name holds, and false for
// the names of other databases.
func (s *templateSet) hashOf(name string) (uint64, bool) {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(s.prefix) + `(?:([0-9a-f]{1,16})|([0-9a-f]{16})_.+)$`)
	m := re.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	h, err := strconv.ParseUint(m[1]+m[2], 16, 64)
	return h, err == nil
}

// lockKey is the advisory lock key of the template name: its users hold it
// shared; whoever drops it holds it exclusively.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentpgtest-template-use:" + name))
	return int64(h.Sum64())
}

// createLock serializes the creation of templates, across processes.
const createLock = `hashtext('agentpgtest-template')`

// use returns the name of the template with the migrations of hash in
// schema, creating it if needed. The first use of a template in the process
// takes its shared lock, before looking for it.
func (s *templateSet) use(ctx context.Context, admin *pgx.Conn, base string, hash uint64, schema string) (string, error) {
	name := s.name(hash, schema)
	s.mu.Lock()
	ready, ok := s.ready[name]
	if !ok {
		if err := s.hold(ctx, base, name); err != nil {
			s.mu.Unlock()
			return "", err
		}
		// The creation runs at most once, with the context and connection
		// of the first user, which waits for it like any other.
		ready = sync.OnceValue(func() error { return s.create(ctx, admin, base, hash, name, schema) })
		s.ready[name] = ready
	}
	s.mu.Unlock()
	return name, ready()
}

// hold takes the shared lock of the template name. s.mu is held.
func (s *templateSet) hold(ctx context.Context, base, name string) error {
	if s.conn == nil {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		s.conn = conn
		s.ready = make(map[string]func() error)
	}
	if _, err := s.conn.Exec(ctx, `SELECT pg_advisory_lock_shared($1)`, lockKey(name)); err != nil {
		return fmt.Errorf("locking template %s: %w", name, err)
	}
	return nil
}

// create makes the template name, with the migrations of hash in schema,
// unless it exists. It also drops the unused templates of other migration
// sets.
func (s *templateSet) create(ctx context.Context, admin *pgx.Conn, base string, hash uint64, name, schema string) error {
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(`+createLock+`)`); err != nil {
		return err
	}
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+createLock+`)`)

	var exists bool
	err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists)
	if err != nil || exists {
		return err
	}
	if err := s.dropStale(ctx, admin, hash); err != nil {
		return err
	}
	// A template left half-made by a killed process is not marked as a
	// template; start it again.
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, withDatabase(base, name))
	if err != nil {
		return err
	}
	err = s.migrate(ctx, conn, schema)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH is_template true")
	return err
}

// dropStale drops the templates of migration sets other than hash that no
// process is using.
func (s *templateSet) dropStale(ctx context.Context, conn *pgx.Conn, hash uint64) error {
	names, err := databasesStartingWith(ctx, conn, s.prefix)
	if err != nil {
		return err
	}
	for _, name := range names {
		if h, ok := s.hashOf(name); ok && h != hash {
			if err := dropUnusedTemplate(ctx, conn, name); err != nil {
				return fmt.Errorf("dropping old template %s: %w", name, err)
			}
		}
	}
	return nil
}

// release releases the process's locks on its templates; a later use takes
// them again. It reports whether the process had used any.
func (s *templateSet) release(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return false
	}
	// Unlock explicitly: the server may not have ended the session yet
	// when Close returns.
	s.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	s.conn.Close(ctx)
	s.conn, s.ready = nil, nil
	return true
}

// dropUnused drops the templates of the migrations of hash, whatever their
// schema, that no process is using.
func (s *templateSet) dropUnused(ctx context.Context, base string, hash uint64) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	names, err := databasesStartingWith(ctx, conn, fmt.Sprintf("%s%016x_", s.prefix, hash))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := dropUnusedTemplate(ctx, conn, name); err != nil {
			return fmt.Errorf("dropping template %s: %w", name, err)
		}
	}
	return nil
}

func databasesStartingWith(ctx context.Context, conn *pgx.Conn, prefix string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`, prefix)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// dropUnusedTemplate drops the database name if its lock can be taken
// exclusively, and nobody is connected to it. It ignores a database in use
// or not ours to drop.
func dropUnusedTemplate(ctx context.Context, conn *pgx.Conn, name string) error {
	var free bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey(name)).Scan(&free); err != nil || !free {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockKey(name))

	// Leave a database with sessions at once: DROP DATABASE would wait 5
	// seconds for them to end, then fail.
	var isTemplate, connected bool
	err := conn.QueryRow(ctx, `SELECT datistemplate, EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
		FROM pg_database d WHERE datname = $1`, name).Scan(&isTemplate, &connected)
	if errors.Is(err, pgx.ErrNoRows) || connected {
		return nil
	} else if err != nil {
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	// PostgreSQL refuses to drop a database marked as a template.
	if isTemplate {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH is_template false"); err != nil {
			return ignoreNotOurs(err)
		}
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident)
	if err != nil && isTemplate {
		conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH is_template true")
	}
	return ignoreNotOurs(err)
}

// ignoreNotOurs returns err unless it says that the database is in use
// ("being accessed by other users") or that we may not change it.
func ignoreNotOurs(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42501") {
		return nil
	}
	return err
}

func dropDatabase(t testing.TB, base, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Errorf("agentpgtest: dropping %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("agentpgtest: dropping %s: %v", name, err)
	}
}

func dropRole(t testing.TB, base, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Errorf("agentpgtest: dropping role %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Errorf("agentpgtest: dropping role %s: %v", name, err)
	}
}

// dropOrphanRoles drops the roles named after a test database (the
// application roles of DBOptions.AppRole), or after one and an underscore
// (roles a test made for its database), whose database is gone: those of
// test processes killed before their cleanup. A role is made after its
// database and dropped after it, so a role without its database is no
// test's.
func dropOrphanRoles(ctx context.Context, base string) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT rolname::text FROM pg_roles r
		WHERE starts_with(rolname, $1) AND NOT EXISTS (
			SELECT 1 FROM pg_database WHERE datname = r.rolname OR starts_with(r.rolname, datname || '_'))`, testDatabasePrefix)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("dropping role %s: %w", name, err)
		}
	}
	return nil
}

// withUser returns the connection string dsn with user and password.
func withUser(dsn, user, password string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	return dsn + " user=" + user + " password=" + password
}

// withDatabase returns the connection string base with its database
// replaced by name.
func withDatabase(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

// redactURL hides a password in a connection URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
