package agentpgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

var templates sync.Map // template database name -> *sync.Once-guarded error

// DB returns a connection pool on a database of the test's own, cloned from
// a template in which AgentPG's migrations (schema "agentpg") have run. The
// database is dropped when the test ends. Tests using DB can run in
// parallel.
//
// DB fails the test, never skips it, when PostgreSQL cannot be reached: a
// suite that skips without a database is a green build that tested nothing.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	base := DatabaseURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("agentpgtest: cannot reach PostgreSQL at %s (set DATABASE_URL): %v", redactURL(base), err)
	}
	defer admin.Close(ctx)

	template, err := migratedTemplate(ctx, admin, base)
	if err != nil {
		t.Fatalf("agentpgtest: preparing the template database: %v", err)
	}
	name := "agentpg_test_" + randomHex(8)
	create := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize())
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("agentpgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, base, name) })

	pool, err := pgxpool.New(ctx, withDatabase(base, name))
	if err != nil {
		t.Fatalf("agentpgtest: connecting to %s: %v", name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migratedTemplate returns the name of a template database holding the
// current migrations, creating it once per set of migrations. A session
// advisory lock makes concurrent test processes wait for one creator.
func migratedTemplate(ctx context.Context, admin *pgx.Conn, base string) (string, error) {
	migrations, err := store.Migrations()
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	for _, m := range migrations {
		fmt.Fprintf(h, "%d\x00%s\x00", m.Version, m.SQL)
	}
	name := fmt.Sprintf("agentpg_template_%x", h.Sum64())

	once, _ := templates.LoadOrStore(name, sync.OnceValue(func() error {
		return createTemplate(ctx, admin, base, name)
	}))
	return name, once.(func() error)()
}

func createTemplate(ctx context.Context, admin *pgx.Conn, base, name string) error {
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(hashtext('agentpgtest-template'))`); err != nil {
		return err
	}
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('agentpgtest-template'))`)

	var exists bool
	err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists)
	if err != nil || exists {
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
	st, err := store.New(conn, store.DefaultSchema)
	if err == nil {
		_, err = st.Migrate(ctx)
	}
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH is_template true")
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
