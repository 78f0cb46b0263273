package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
)

// testDSN returns the test database's URL changed by change.
func testDSN(t *testing.T, change func(u *url.URL, query url.Values)) string {
	t.Helper()
	u, err := url.Parse(agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatalf("DATABASE_URL must be a URL for this test: %v", err)
	}
	query := u.Query()
	change(u, query)
	u.RawQuery = query.Encode()
	return u.String()
}

// plainDSN is the test database's URL with sslmode=disable, so that the
// connection is local and without TLS whatever the server offers.
func plainDSN(t *testing.T) string {
	return testDSN(t, func(_ *url.URL, query url.Values) { query.Set("sslmode", "disable") })
}

// wantCheck checks that out has the line of the check name, with status and
// every one of wants.
func wantCheck(t *testing.T, out, name string, status agentpg.CheckStatus, wants ...string) {
	t.Helper()
	for line := range strings.Lines(out) {
		got, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, name+"  ") {
			continue
		}
		if got != string(status) {
			t.Errorf("check %s is %s, want %s:\n%s", name, got, status, out)
		}
		wantContains(t, "the line of check "+name, line, wants...)
		return
	}
	t.Errorf("no line for check %s:\n%s", name, out)
}

// wantHidden checks that the output of res shows no part of secret, of five
// characters or more.
func wantHidden(t *testing.T, res result, secret string) {
	t.Helper()
	out := res.stdout + res.stderr
	for i := 0; i+5 <= len(secret); i++ {
		if part := secret[i : i+5]; strings.Contains(out, part) {
			t.Fatalf("the output shows %q, part of %q:\nstdout:\n%s\nstderr:\n%s", part, secret, res.stdout, res.stderr)
		}
	}
}

// appRoleDSN makes a login role with password ("" for none, as trust
// authentication allows) for the test, grants it
// the application's privileges in schema with agentpg migrate --app-role,
// and returns the test database's URL as that role, with sslmode=disable.
// The role, and what it was granted, go when the test ends.
func appRoleDSN(t *testing.T, schema, password string) string {
	t.Helper()
	role := loginRole(t, password)
	res := agentpgCLI(t, "migrate", "--schema", schema, "--app-role", role)
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, `Granted role "`+role+`" what the application needs in schema "`+schema+`"`)
	return roleDSN(t, role, password)
}

// loginRole makes a login role with password ("" for none) for the test,
// which drops it,
// and what it owns or was granted in the test database, when it ends.
func loginRole(t *testing.T, password string) string {
	t.Helper()
	role := "agentpg_cli_" + strings.ToLower(rand.Text()[:10])
	ident := pgx.Identifier{role}.Sanitize()
	conn, err := pgx.Connect(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	create := `CREATE ROLE ` + ident + ` LOGIN`
	if password != "" {
		create += ` PASSWORD '` + password + `'`
	}
	if _, err := conn.Exec(t.Context(), create); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, agentpgtest.DatabaseURL())
		if err != nil {
			t.Errorf("dropping role %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		for _, sql := range []string{`DROP OWNED BY ` + ident + ` CASCADE`, `DROP ROLE ` + ident} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Errorf("dropping role %s: %v", role, err)
			}
		}
	})
	return role
}

// roleDSN is the test database's URL as role, with sslmode=disable.
func roleDSN(t *testing.T, role, password string) string {
	return testDSN(t, func(u *url.URL, query url.Values) {
		u.User = url.UserPassword(role, password)
		if password == "" {
			u.User = url.User(role)
		}
		query.Set("sslmode", "disable")
	})
}

func TestDoctorMigrated(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	dsn := appRoleDSN(t, schema, "")
	res := invocation{env: map[string]string{"DATABASE_URL": dsn}}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "API key", agentpg.CheckWarn, "ANTHROPIC_API_KEY is not set", "scripted model")
	wantCheck(t, res.stdout, "database URL", agentpg.CheckOK, "from DATABASE_URL")
	wantCheck(t, res.stdout, "database", agentpg.CheckOK, "connected to postgres://")
	wantCheck(t, res.stdout, "TLS", agentpg.CheckWarn, "local connection without TLS", "sslmode=disable")
	wantCheck(t, res.stdout, "password", agentpg.CheckOK, "DATABASE_URL holds no password")
	wantCheck(t, res.stdout, "server version", agentpg.CheckOK, "PostgreSQL 1")
	wantCheck(t, res.stdout, "migrations", agentpg.CheckOK, `schema "`+schema+`" is up to date`)
	wantCheck(t, res.stdout, "row-level security", agentpg.CheckOK, `forced on the 15 tenant tables of schema "`+schema+`"`)
	wantCheck(t, res.stdout, "database role", agentpg.CheckOK, "not a superuser, no BYPASSRLS, owns none of the tables")
	wantCheck(t, res.stdout, "audit log", agentpg.CheckWarn, "no audit entries", "Config.Audit.Enabled")
	wantCheck(t, res.stdout, "retention", agentpg.CheckWarn, "no retention policy", "agentpg retention set --default --guide")
	wantCheck(t, res.stdout, "rate limits", agentpg.CheckWarn, "no tenant has rate limits")
	wantCheck(t, res.stdout, "usage anomalies", agentpg.CheckOK, "no tenant uses more than 3 times")
	wantCheck(t, res.stdout, "encryption at rest", agentpg.CheckOK, "no tenant has a data key, nor a session")
	wantContains(t, "stdout", res.stdout, "No check failed; 5 warnings.",
		"Checked by the application's Agent only (Agent.Checkup): tool schemas, PII filter, log redaction, encryption.")
	if res.stderr != "" {
		t.Errorf("stderr is not empty:\n%s", res.stderr)
	}

	// With a default retention policy and an audit entry, both pass; an
	// entry changed behind the triggers' back fails the audit check.
	wantCode(t, agentpgCLI(t, "retention", "set", "--default", "--guide", "--schema", schema), 0)
	pool, err := pgxpool.New(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log, err := audit.New(pool, audit.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Record(audit.Entry{TenantID: "acme", UserID: "u1", Action: "tool_call", Tool: "t", Input: "{}", Success: true}); err != nil {
		t.Fatal(err)
	}
	if err := log.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	res = invocation{env: map[string]string{"DATABASE_URL": dsn}}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "audit log", agentpg.CheckOK, "1 tenant, every chain intact")
	wantCheck(t, res.stdout, "retention", agentpg.CheckOK, "default policy set; 0 tenants with a policy of its own")
	wantCode(t, agentpgCLI(t, "limits", "set", "--tenant", "acme", "--requests-per-minute", "60", "--schema", schema), 0)
	if _, err := pool.Exec(t.Context(), `INSERT INTO `+schema+`.tenant_usage (tenant_id, day, model, input_tokens, output_tokens)
		SELECT 'acme', (now() AT TIME ZONE 'UTC')::date - d, 'claude-sonnet-5-5', CASE WHEN d = 0 THEN 50000 ELSE 1000 END, 0 FROM generate_series(0, 7) d`); err != nil {
		t.Fatal(err)
	}
	res = invocation{env: map[string]string{"DATABASE_URL": dsn}}.run(t, "doctor", "--schema", schema)
	wantCheck(t, res.stdout, "rate limits", agentpg.CheckOK, "1 tenant with limits")
	wantCheck(t, res.stdout, "usage anomalies", agentpg.CheckWarn, `1 tenant above 3 times their usual daily tokens today: "acme" (50.0 times)`)
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`SET LOCAL session_replication_role = replica`, `UPDATE ` + schema + `.audit_log SET success = false`} {
		if _, err := tx.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	res = invocation{env: map[string]string{"DATABASE_URL": dsn}}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 1)
	wantCheck(t, res.stdout, "audit log", agentpg.CheckFail, `the audit chain of tenant "acme" is broken`, "agentpg audit verify")
}

func TestDoctorUnmigrated(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)
	res := agentpgCLI(t, "doctor", "--schema", schema)
	wantCode(t, res, 1)
	wantCheck(t, res.stdout, "database", agentpg.CheckOK)
	wantCheck(t, res.stdout, "migrations", agentpg.CheckFail,
		`schema "`+schema+`" does not exist`, "run agentpg migrate --schema "+schema)
	wantCheck(t, res.stdout, "database role", agentpg.CheckFail, "is a superuser")
	wantContains(t, "stderr", res.stderr, "agentpg: 2 checks failed")
}

// As a superuser, or as the tables' owner, the database's second wall
// between tenants is down, or could be taken down.
func TestDoctorRole(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)
	res := agentpgCLI(t, "doctor", "--schema", schema)
	wantCode(t, res, 1)
	wantCheck(t, res.stdout, "database role", agentpg.CheckFail, "is a superuser, which row-level security never binds",
		"agentpg migrate --app-role app", "docs/deployment.md")

	// An owner that is not a superuser migrates and grants the app role.
	owner := loginRole(t, "owner-pw")
	conn, err := pgx.Connect(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `GRANT CREATE ON DATABASE `+pgx.Identifier{conn.Config().Database}.Sanitize()+
		` TO `+pgx.Identifier{owner}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	ownerEnv := map[string]string{"DATABASE_URL": roleDSN(t, owner, "owner-pw")}
	app := loginRole(t, "app-pw")
	res = invocation{env: ownerEnv}.run(t, "migrate", "--schema", schema, "--app-role", app)
	wantCode(t, res, 0)
	res = invocation{env: ownerEnv}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "row-level security", agentpg.CheckOK, "forced on the 15 tenant tables")
	wantCheck(t, res.stdout, "database role", agentpg.CheckWarn, `role "`+owner+`" owns schema "`+schema+`"`, "could turn it off")
	res = invocation{env: map[string]string{"DATABASE_URL": roleDSN(t, app, "app-pw")}}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "database role", agentpg.CheckOK, `role "`+app+`"`)

	// The owner may not make itself the app role; PUBLIC and no name at
	// all are mistakes in the command line.
	res = invocation{env: ownerEnv}.run(t, "migrate", "--schema", schema, "--app-role", owner)
	wantCode(t, res, 1)
	wantContains(t, "stderr", res.stderr, "invalid argument", "could turn row-level security off")
	for arg, want := range map[string]string{"public": `role name "public" is reserved`, "": "role name is empty"} {
		res = agentpgCLI(t, "migrate", "--schema", schema, "--app-role", arg)
		wantCode(t, res, 2)
		wantContains(t, "stderr", res.stderr, "--app-role: "+want)
	}
}

func TestDoctorPendingMigration(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	conn, err := pgx.Connect(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), "DELETE FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+
		" WHERE version = (SELECT max(version) FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+")")
	if err != nil {
		t.Fatal(err)
	}

	res := agentpgCLI(t, "doctor", "--schema", schema)
	wantCode(t, res, 1)
	wantCheck(t, res.stdout, "migrations", agentpg.CheckFail, `schema "`+schema+`" lacks 1 of`, "run agentpg migrate --schema "+schema)
}

func TestDoctorAPIKey(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	dsn := appRoleDSN(t, schema, "")
	for _, tc := range []struct {
		key    string
		status agentpg.CheckStatus
		want   string
	}{
		{"sk-ant-secret-123", agentpg.CheckOK, "ANTHROPIC_API_KEY is set, from the environment"},
		{"sk-ant-secret-123\n", agentpg.CheckWarn, "white space"},
		{"not-a-key-secret-456", agentpg.CheckWarn, "does not look like an Anthropic API key"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			res := invocation{env: map[string]string{"DATABASE_URL": dsn, "ANTHROPIC_API_KEY": tc.key}}.run(t, "doctor", "--schema", schema)
			wantCode(t, res, 0)
			wantCheck(t, res.stdout, "API key", tc.status, tc.want)
			wantHidden(t, res, strings.TrimSpace(tc.key))
		})
	}
}

func TestDoctorPasswordInURL(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	const password = "hunter2-doctor"
	dsn := appRoleDSN(t, schema, password)
	res := invocation{env: map[string]string{"DATABASE_URL": dsn}}.run(t, "doctor", "--schema", schema)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "database", agentpg.CheckOK, "connected to postgres://")
	wantCheck(t, res.stdout, "password", agentpg.CheckWarn, "DATABASE_URL holds a password", "secret manager or PGPASSFILE")
	wantHidden(t, res, password)

	// On the command line, a password is worse: any user can read it.
	res = invocation{env: map[string]string{"DATABASE_URL": ""}}.run(t, "doctor", "--schema", schema, "--database-url", dsn)
	wantCode(t, res, 0)
	wantCheck(t, res.stdout, "database URL", agentpg.CheckOK, "from --database-url")
	wantCheck(t, res.stdout, "password", agentpg.CheckWarn, "--database-url holds a password", "process list", "secret manager or PGPASSFILE")
	wantHidden(t, res, password)
}

func TestDoctorUnreachable(t *testing.T) {
	t.Parallel()
	const password = "s3cret-pw"
	for _, tc := range []struct {
		name string
		inv  invocation
	}{
		{"url", invocation{env: map[string]string{"DATABASE_URL": "postgres://root:" + password + "@127.0.0.1:1/test?sslmode=disable"}}},
		// Without DATABASE_URL, doctor checks the local server and never
		// starts a throwaway cluster.
		{"local", invocation{env: map[string]string{"DATABASE_URL": ""}, localServer: "127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := tc.inv.run(t, "doctor")
			wantCode(t, res, 1)
			wantCheck(t, res.stdout, "database", agentpg.CheckFail, "connecting to postgres://root@127.0.0.1:1/test")
			if tc.name == "local" {
				wantCheck(t, res.stdout, "database URL", agentpg.CheckWarn,
					"DATABASE_URL is not set: using the default postgres://root@127.0.0.1:1/test?sslmode=disable")
				wantCheck(t, res.stdout, "password", agentpg.CheckOK, "the default URL holds no password")
			}
			wantContains(t, "stdout", res.stdout, "Not checked, for want of a connection: TLS, server version, migrations, row-level security, database role, audit log, retention, rate limits, usage anomalies, encryption at rest.")
			wantContains(t, "stderr", res.stderr, "agentpg: 1 check failed")
			wantHidden(t, res, password)
			if strings.Contains(res.stdout+res.stderr, "throwaway") {
				t.Errorf("doctor started a throwaway cluster:\n%s", res.stderr)
			}
		})
	}
}

func TestDoctorCommandLine(t *testing.T) {
	t.Parallel()
	res := agentpgCLI(t, "--help")
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, "doctor", "check the deployment")

	res = agentpgCLI(t, "doctor", "--help")
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, "Usage: agentpg doctor", "ok, warn or fail", "--schema", "DATABASE_URL", "ANTHROPIC_API_KEY")

	for _, args := range [][]string{{"doctor", "--schema", "Not-Valid"}, {"doctor", "now"}, {"doctor", "--tenant", "t"}} {
		res = agentpgCLI(t, args...)
		wantCode(t, res, 2)
		wantContains(t, "stderr", res.stderr, `see "agentpg doctor --help"`)
	}
}

func TestDoctorJSON(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)
	res := agentpgCLI(t, "doctor", "--json", "--schema", schema)
	wantCode(t, res, 1)
	var got struct {
		Checks []struct {
			Name, Status, Detail, Fix string
		}
		Unmigrated, Application []string
		Failed, Warnings        int
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, res.stdout)
	}
	if got.Failed != 2 || len(got.Checks) != 8 ||
		strings.Join(got.Unmigrated, ",") != "row-level security,audit log,retention,rate limits,usage anomalies,encryption at rest" {
		t.Errorf("doctor --json = %+v, want 8 checks, 2 failed, 5 not checked", got)
	}
	for i, name := range []string{"migrations", "database role"} {
		c := got.Checks[len(got.Checks)-2+i]
		if c.Name != name || c.Status != "fail" || c.Detail == "" || c.Fix == "" {
			t.Errorf("check %+v, want %s failing, with a detail and a fix", c, name)
		}
	}
	if c := got.Checks[0]; c.Name != "API key" || c.Status != "warn" || !strings.Contains(c.Fix, "secret manager") {
		t.Errorf("check %+v, want the API key's warning with its fix", c)
	}
	if strings.Join(got.Application, ",") != "tool schemas,PII filter,log redaction,encryption" {
		t.Errorf("doctor --json: application checks %q", got.Application)
	}
	wantContains(t, "stderr", res.stderr, "agentpg: 2 checks failed")
}

func TestSSLMode(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]string{
		"host=db.example.com sslmode=disable":            "disable",
		"host=db.example.com sslmode=allow":              "allow",
		"host=db.example.com sslmode=prefer":             "prefer",
		"host=db.example.com sslmode=require":            "require",
		"host=db.example.com sslmode=verify-ca":          "verify-ca",
		"host=db.example.com sslmode=verify-full":        "verify-full",
		"postgres://u@db.example.com/x?ssl=true":         "require",
		"host=a.example.com,b.example.com sslmode=allow": "allow",
		"host=/tmp,db.example.com sslmode=prefer":        "prefer",
		"host=/tmp sslmode=verify-full":                  "", // pgx ignores sslmode on sockets
	} {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if got := sslMode(cfg); got != want {
			t.Errorf("sslMode(%s) = %q, want %q", dsn, got, want)
		}
	}
}

func TestTLSFinding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ssl, local bool
		mode       string
		status     agentpg.CheckStatus
		want       string
	}{
		{false, true, "disable", agentpg.CheckWarn, "local connection without TLS (sslmode=disable never encrypts)"},
		{false, true, "", agentpg.CheckWarn, "local connection without TLS;"},
		{false, true, "prefer", agentpg.CheckWarn, "local connection without TLS (sslmode=prefer falls back to plaintext silently and does not verify the server)"},
		// Below require, a connection that happens to use TLS is no
		// better: the next one may not, and none verifies the server.
		{true, true, "prefer", agentpg.CheckWarn, "TLSv1.3, but sslmode=prefer falls back to plaintext silently and does not verify the server; use sslmode=verify-full"},
		{true, true, "allow", agentpg.CheckWarn, "sslmode=allow connects in plaintext unless the server insists on TLS, and does not verify the server"},
		{false, false, "prefer", agentpg.CheckFail, "connection without TLS (sslmode=prefer falls back to plaintext silently and does not verify the server); use sslmode=verify-full"},
		{true, false, "prefer", agentpg.CheckWarn, "sslmode=prefer falls back to plaintext silently and does not verify the server; use sslmode=verify-full"},
		{true, false, "require", agentpg.CheckWarn, "TLSv1.3, but sslmode=require encrypts but does not verify the server's certificate; use sslmode=verify-full"},
		{true, true, "require", agentpg.CheckOK, "TLSv1.3 (sslmode=require encrypts but does not verify the server's certificate)"},
		{true, false, "verify-ca", agentpg.CheckOK, "TLSv1.3 (sslmode=verify-ca verifies the server's certificate, not its host name)"},
		{true, false, "verify-full", agentpg.CheckOK, "TLSv1.3 (sslmode=verify-full verifies the server's certificate and host name)"},
		{true, true, "", agentpg.CheckOK, "TLSv1.3"},
	} {
		version := ""
		if tc.ssl {
			version = "TLSv1.3"
		}
		got := tlsFinding(tc.ssl, version, tc.local, tc.mode)
		if text := got.Detail + "; " + got.Fix; got.Status != tc.status || !strings.Contains(text, tc.want) {
			t.Errorf("tlsFinding(%v, %q, %v, %q) = %s %q, want %s containing %q", tc.ssl, version, tc.local, tc.mode, got.Status, text, tc.status, tc.want)
		}
	}
}

func TestVersionFinding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		num     int
		version string
		status  agentpg.CheckStatus
	}{
		{90624, "9.6.24", agentpg.CheckFail},
		{120022, "12.22", agentpg.CheckFail},
		{140017, "14.17", agentpg.CheckFail},
		{150000, "15.0", agentpg.CheckOK},
		{170004, "17.4 (Debian 17.4-1)", agentpg.CheckOK},
	} {
		got := versionFinding(tc.num, tc.version)
		if got.Status != tc.status || !strings.Contains(got.Detail, "PostgreSQL "+tc.version) {
			t.Errorf("versionFinding(%d, %q) = %s %q, want %s", tc.num, tc.version, got.Status, got.Detail, tc.status)
		}
	}
}

func TestHasPassword(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]bool{
		"postgres://root:pw@db/test":                        true,
		"postgresql://root:p%40w@db1:5432,db2:5432/test":    true,
		"postgres://root@db/test?sslmode=disable&password=": false,
		"postgres://root@db/test?password=pw":               true,
		"postgres://root@db/test?pass%77ord=pw":             true,
		"postgres://root:@db/test":                          false,
		"postgres://root@db/test?application_name=password": false,
		"postgres://db/test":                                false,
		"host=db user=root password=pw":                     true,
		"host=db user=root password = 'a b\\' c'":           true,
		"host=db password='' user=root":                     false,
		"host=db application_name='x password=y' user=root": false,
		"host=db application_name=password user=root":       false,
		"host=db user=root":                                 false,
	} {
		if got := hasPassword(dsn); got != want {
			t.Errorf("hasPassword(%s) = %v, want %v", dsn, got, want)
		}
	}
}
