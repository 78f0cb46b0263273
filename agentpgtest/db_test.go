package agentpgtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg/internal/store"
)

func TestDBWithOptionsSchema(t *testing.T) {
	t.Parallel()
	const schema = "agentpgtest_custom"
	db := DBWithOptions(t, DBOptions{Schema: schema})
	ctx := t.Context()

	var tables []string
	rows, err := db.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, schema)
	if err == nil {
		tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"messages", "runs", "schema_migrations", "sessions", "tool_executions"} {
		if !contains(tables, want) {
			t.Errorf("schema %s has tables %v, want %s among them", schema, tables, want)
		}
	}
	var agentpg bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'agentpg')`).Scan(&agentpg); err != nil {
		t.Fatal(err)
	}
	if agentpg {
		t.Error(`the database has a schema "agentpg"`)
	}
	st, err := store.New(db, schema)
	if err != nil {
		t.Fatal(err)
	}
	if pending, err := st.Pending(ctx); err != nil || len(pending) > 0 {
		t.Errorf("Pending() = %v, %v; want no migration pending", pending, err)
	}

	// The template's name has the schema, and this process holds it.
	hash, err := migrationsHash()
	if err != nil {
		t.Fatal(err)
	}
	name := processTemplates.name(hash, schema)
	if !strings.HasSuffix(name, "_"+schema) {
		t.Errorf("template name %s does not end with the schema", name)
	}
	admin := connect(t, DatabaseURL())
	if !databaseExists(t, admin, name) {
		t.Errorf("template %s does not exist", name)
	}
	if lockFree(t, admin, name) {
		t.Errorf("the process holds no shared lock on template %s", name)
	}
}

// DBOptions.AppRole connects as a role of the database's own that
// row-level security binds, in the schema asked for, and drops the role
// with the database; OwnerDB looks behind its back.
func TestDBAppRole(t *testing.T) {
	t.Parallel()
	const schema = "agentpgtest_app"
	var role string
	t.Run("test", func(t *testing.T) {
		db := DBWithOptions(t, DBOptions{Schema: schema, AppRole: true})
		ctx := t.Context()
		var super, bypass bool
		err := db.QueryRow(ctx, `SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).
			Scan(&role, &super, &bypass)
		if err != nil || super || bypass || role != db.Config().ConnConfig.Database {
			t.Fatalf("connected as %q, superuser %v, BYPASSRLS %v, %v; want the database's own role, neither", role, super, bypass, err)
		}
		owner := OwnerDB(t, db)
		if _, err := owner.Exec(ctx, `INSERT INTO agentpgtest_app.sessions (id, tenant_id, identifier) VALUES (gen_random_uuid(), 'acme', 'x')`); err != nil {
			t.Fatal(err)
		}
		var seen int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM agentpgtest_app.sessions`).Scan(&seen); err != nil || seen != 0 {
			t.Errorf("without a tenant, the app role sees %d sessions (%v), want none", seen, err)
		}
	})
	conn, err := pgx.Connect(t.Context(), DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var exists bool
	if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil || exists {
		t.Errorf("role %s exists after its test (%v)", role, err)
	}
}

func TestDBDefaultSchema(t *testing.T) {
	t.Parallel()
	db := DB(t)
	var sessions *string
	if err := db.QueryRow(t.Context(), `SELECT to_regclass('agentpg.sessions')::text`).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions == nil {
		t.Error("DB has no table agentpg.sessions")
	}
}

func TestDBInvalidSchema(t *testing.T) {
	t.Parallel()
	r := runTB(t, func(tb testing.TB) { DBWithOptions(tb, DBOptions{Schema: "Not-A-Schema"}) })
	if !r.failed || r.skipped || !strings.Contains(r.msg, "DBOptions.Schema") || !strings.Contains(r.msg, "Not-A-Schema") {
		t.Errorf("DBWithOptions with an invalid schema: failed=%t skipped=%t message %q; want a failure naming the schema", r.failed, r.skipped, r.msg)
	}
}

// TestDBUnreachable cannot run in parallel: it changes DATABASE_URL.
func TestDBUnreachable(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5")
	r := runTB(t, func(tb testing.TB) { DB(tb) })
	if !r.failed || r.skipped || !strings.Contains(r.msg, "cannot reach PostgreSQL") {
		t.Errorf("DB without PostgreSQL: failed=%t skipped=%t message %q; want a failure", r.failed, r.skipped, r.msg)
	}
}

// TestTemplateLifecycle plays two test processes, a and b, sharing the
// templates of one migration set.
func TestTemplateLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := DatabaseURL()
	admin := connect(t, base)
	prefix := testPrefix(t, admin)
	hash := randomHash()
	a := &templateSet{prefix: prefix, migrate: markerMigration}
	b := &templateSet{prefix: prefix, migrate: markerMigration}

	s1, err := a.use(ctx, admin, base, hash, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.use(ctx, admin, base, hash, "s1"); err != nil || again != s1 {
		t.Fatalf("second use = %s, %v; want %s", again, err, s1)
	}
	if !isTemplate(t, admin, s1) {
		t.Fatalf("%s is not a template", s1)
	}
	if !hasMarker(t, admin, s1, "s1") {
		t.Fatalf("%s has no table s1.marker", s1)
	}
	if again, err := b.use(ctx, admin, base, hash, "s1"); err != nil || again != s1 {
		t.Fatalf("b's use = %s, %v; want %s", again, err, s1)
	}
	s2, err := b.use(ctx, admin, base, hash, "s2")
	if err != nil {
		t.Fatal(err)
	}
	if lockFree(t, admin, s1) || lockFree(t, admin, s2) {
		t.Fatal("a template in use has its lock free")
	}

	// a ends first: b still uses both templates.
	if !a.release(ctx) {
		t.Fatal("a.release() = false after use")
	}
	if err := a.dropUnused(ctx, base, hash); err != nil {
		t.Fatal(err)
	}
	if !databaseExists(t, admin, s1) || !databaseExists(t, admin, s2) {
		t.Fatal("a dropped a template b uses")
	}

	// b ends while another process holds s2: s1 goes, s2 stays.
	other := connect(t, base)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock_shared($1)`, lockKey(s2)); err != nil {
		t.Fatal(err)
	}
	b.release(ctx)
	if err := b.dropUnused(ctx, base, hash); err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, admin, s1) {
		t.Error("b left the unused template s1")
	}
	if !databaseExists(t, admin, s2) || !isTemplate(t, admin, s2) {
		t.Fatal("b dropped the template s2 another process holds")
	}

	// Once the other process is done, s2 goes too.
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock_shared($1)`, lockKey(s2)); err != nil {
		t.Fatal(err)
	}
	if err := a.dropUnused(ctx, base, hash); err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, admin, s2) {
		t.Error("the unused template s2 was left")
	}
	if a.release(ctx) {
		t.Error("a.release() = true with no use since the last")
	}

	// A use after release makes the template again.
	if again, err := a.use(ctx, admin, base, hash, "s1"); err != nil || again != s1 || !isTemplate(t, admin, s1) {
		t.Fatalf("use after release = %s, %v; want the template %s again", again, err, s1)
	}
	a.release(ctx)
	if err := a.dropUnused(ctx, base, hash); err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, admin, s1) {
		t.Error("the unused template s1 was left")
	}
}

// TestOldTemplatesDropped checks that making the template of a new
// migration set drops those of other sets, unless they are in use.
func TestOldTemplatesDropped(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := DatabaseURL()
	admin := connect(t, base)
	prefix := testPrefix(t, admin)
	s := &templateSet{prefix: prefix, migrate: markerMigration}
	t.Cleanup(func() { s.release(context.Background()) })
	current := randomHash()

	// Another process of an old migration set, using its template. (Making
	// it drops the templates of other sets: it comes first.)
	otherProcess := &templateSet{prefix: prefix, migrate: markerMigration}
	oldInUse, err := otherProcess.use(ctx, admin, base, randomHash(), "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otherProcess.release(context.Background()) })
	old := createTemplate(t, admin, s.name(randomHash(), "s"))
	oldUnnamedSchema := createTemplate(t, admin, fmt.Sprintf("%s%x", prefix, randomHash())) // before the schema option
	oldConnected := createTemplate(t, admin, s.name(randomHash(), "s"))
	sibling := createTemplate(t, admin, s.name(current, "other")) // same migrations, another schema
	unrelated := createTemplate(t, admin, prefix+"something_else")
	// A process of an earlier version, without locks, connected to its template.
	connect(t, withDatabase(base, oldConnected))

	name, err := s.use(ctx, admin, base, current, "s")
	if err != nil {
		t.Fatal(err)
	}
	if !isTemplate(t, admin, name) {
		t.Errorf("the new template %s was not made", name)
	}
	for _, gone := range []string{old, oldUnnamedSchema} {
		if databaseExists(t, admin, gone) {
			t.Errorf("the old template %s was left", gone)
		}
	}
	for _, kept := range []string{oldInUse, oldConnected, sibling, unrelated} {
		if !isTemplate(t, admin, kept) {
			t.Errorf("%s was dropped or unmarked as a template", kept)
		}
	}
}

func TestTemplateNames(t *testing.T) {
	t.Parallel()
	s := &templateSet{prefix: templatePrefix}
	const hash = 0x0123456789abcdef
	if got, want := s.name(hash, "agentpg"), "agentpg_template_0123456789abcdef_agentpg"; got != want {
		t.Errorf("name = %s, want %s", got, want)
	}
	long1 := strings.Repeat("a", 40) + "_one"
	long2 := strings.Repeat("a", 40) + "_two"
	n1, n2 := s.name(hash, long1), s.name(hash, long2)
	if len(n1) > maxIdentifier || len(n2) > maxIdentifier || n1 == n2 {
		t.Errorf("names for long schemas %s and %s: want distinct names of at most %d bytes", n1, n2, maxIdentifier)
	}
	for _, name := range []string{s.name(hash, "agentpg"), n1, "agentpg_template_123456789abcdef"} {
		if h, ok := s.hashOf(name); !ok || h != hash {
			t.Errorf("hashOf(%s) = %x, %t; want %x", name, h, ok, uint64(hash))
		}
	}
	for _, name := range []string{"agentpg_template_", "agentpg_template_xyz", "agentpg_template_0123_agentpg", "agentpg_test_0123456789abcdef", "test"} {
		if h, ok := s.hashOf(name); ok {
			t.Errorf("hashOf(%s) = %x, true; want false", name, h)
		}
	}
}

// markerMigration stands for the migrations: it makes a table marker in
// schema.
func markerMigration(ctx context.Context, conn *pgx.Conn, schema string) error {
	ident := pgx.Identifier{schema}.Sanitize()
	_, err := conn.Exec(ctx, "CREATE SCHEMA "+ident+"; CREATE TABLE "+ident+".marker ()")
	return err
}

// testPrefix returns a template name prefix of the test's own, and drops
// the databases named with it when the test ends.
func testPrefix(t *testing.T, admin *pgx.Conn) string {
	prefix := "agentpgtest_" + randomHex(4) + "_"
	t.Cleanup(func() {
		ctx := context.Background()
		names, err := databasesStartingWith(ctx, admin, prefix)
		if err != nil {
			t.Error(err)
		}
		for _, name := range names {
			ident := pgx.Identifier{name}.Sanitize()
			admin.Exec(ctx, "ALTER DATABASE "+ident+" WITH is_template false")
			if _, err := admin.Exec(ctx, "DROP DATABASE "+ident+" WITH (FORCE)"); err != nil {
				t.Errorf("dropping %s: %v", name, err)
			}
		}
	})
	return prefix
}

func randomHash() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// connect opens a connection closed when the test ends (after the cleanups
// registered later).
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func createTemplate(t *testing.T, admin *pgx.Conn, name string) string {
	t.Helper()
	ident := pgx.Identifier{name}.Sanitize()
	for _, sql := range []string{"CREATE DATABASE " + ident, "ALTER DATABASE " + ident + " WITH is_template true"} {
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func databaseExists(t *testing.T, admin *pgx.Conn, name string) bool {
	t.Helper()
	var exists bool
	if err := admin.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func isTemplate(t *testing.T, admin *pgx.Conn, name string) bool {
	t.Helper()
	var is bool
	if err := admin.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&is); err != nil {
		t.Fatal(err)
	}
	return is
}

// hasMarker reports whether a copy of the template has the table
// schema.marker.
func hasMarker(t *testing.T, admin *pgx.Conn, template, schema string) bool {
	t.Helper()
	ctx := t.Context()
	copyName := "agentpg_test_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+copyName+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(context.Background(), "DROP DATABASE "+copyName+" WITH (FORCE)")
	conn, err := pgx.Connect(ctx, withDatabase(DatabaseURL(), copyName))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var marker *string
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1)::text`, schema+".marker").Scan(&marker); err != nil {
		t.Fatal(err)
	}
	return marker != nil
}

// lockFree reports whether no session holds the lock of the template name.
func lockFree(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var free bool
	if err := conn.QueryRow(t.Context(), `SELECT pg_try_advisory_lock($1)`, lockKey(name)).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if free {
		conn.Exec(t.Context(), `SELECT pg_advisory_unlock($1)`, lockKey(name))
	}
	return free
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tbResult is what a function did with its testing.TB.
type tbResult struct {
	failed, skipped bool
	msg             string
}

// recordingTB records failures and skips instead of reporting them.
type recordingTB struct {
	testing.TB
	r *tbResult
}

func (tb recordingTB) Helper() {}
func (tb recordingTB) Fatal(args ...any) {
	tb.Fatalf("%s", fmt.Sprint(args...))
}
func (tb recordingTB) Fatalf(format string, args ...any) {
	tb.r.failed, tb.r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (tb recordingTB) Errorf(format string, args ...any) {
	tb.r.failed, tb.r.msg = true, fmt.Sprintf(format, args...)
}
func (tb recordingTB) FailNow()             { tb.r.failed = true; runtime.Goexit() }
func (tb recordingTB) Skip(...any)          { tb.SkipNow() }
func (tb recordingTB) Skipf(string, ...any) { tb.SkipNow() }
func (tb recordingTB) SkipNow()             { tb.r.skipped = true; runtime.Goexit() }

// runTB runs f with a recording testing.TB, in a goroutine of its own so
// that it can stop as FailNow does.
func runTB(t *testing.T, f func(testing.TB)) tbResult {
	var r tbResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(recordingTB{t, &r})
	}()
	<-done
	return r
}
