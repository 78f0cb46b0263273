package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"

	"github.com/agentpg/agentpg/agentpgtest"
)

// result is the outcome of one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// invocation runs the command in-process. Its environment holds the test
// process's DATABASE_URL and env, and nothing else: never the developer's
// ANTHROPIC_API_KEY, so that the scripted model answers.
type invocation struct {
	stdin       string
	env         map[string]string
	localServer string // defaultLocalServer if empty
}

func (inv invocation) run(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr strings.Builder
	c := &cli{
		stdin:  strings.NewReader(inv.stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(key string) string {
			if v, ok := inv.env[key]; ok {
				return v
			}
			if key == "DATABASE_URL" {
				return os.Getenv(key)
			}
			return ""
		},
		localServer: cmp.Or(inv.localServer, defaultLocalServer),
	}
	code := c.run(t.Context(), args)
	return result{code, stdout.String(), stderr.String()}
}

// agentpgCLI runs the command with args and no input.
func agentpgCLI(t *testing.T, args ...string) result {
	t.Helper()
	return invocation{}.run(t, args...)
}

// testSchema returns the name of a schema of the test's own, which it drops
// when the test ends.
func testSchema(t *testing.T) string {
	name := "agentpg_cli_" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, agentpgtest.DatabaseURL())
		if err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
		}
	})
	return name
}

// migrated returns a migrated schema of the test's own.
func migrated(t *testing.T) string {
	t.Helper()
	schema := testSchema(t)
	res := agentpgCLI(t, "migrate", "--schema", schema)
	wantCode(t, res, 0)
	return schema
}

func wantCode(t *testing.T, res result, code int) {
	t.Helper()
	if res.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, code, res.stdout, res.stderr)
	}
}

// wantContains checks that out, which the test names, holds every one of
// wants.
func wantContains(t *testing.T, name, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("%s does not contain %q:\n%s", name, want, out)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--help"}, []string{"migrate", "demo", "chat", "sessions"}},
		{[]string{"help"}, []string{"migrate", "demo", "chat", "sessions"}},
		{[]string{"migrate", "--help"}, []string{"-schema", "DATABASE_URL", localDSN(defaultLocalServer)}},
		{[]string{"demo", "-h"}, []string{"-schema", "-tenant", "-model", "DATABASE_URL", "throwaway cluster", "ANTHROPIC_API_KEY"}},
		{[]string{"chat", "--help"}, []string{"-schema", "-tenant", "-session", "-model", "/history", "/quit", "ANTHROPIC_API_KEY"}},
		{[]string{"sessions", "--help"}, []string{"list", "show"}},
		{[]string{"sessions", "list", "--help"}, []string{"-tenant", "-limit", "-schema"}},
		{[]string{"sessions", "show", "-help"}, []string{"-tenant", "-id", "-identifier", "-schema"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := agentpgCLI(t, tc.args...)
			wantCode(t, res, 0)
			wantContains(t, "stdout", res.stdout, append(tc.wants, "Usage: agentpg")...)
			if res.stderr != "" {
				t.Errorf("stderr is not empty:\n%s", res.stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage: agentpg <command>"},
		{[]string{"launch"}, `unknown command "launch"`},
		{[]string{"migrate", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"migrate", "now"}, `unexpected argument "now"`},
		{[]string{"demo", "--tenant", " "}, "--tenant is required"},
		{[]string{"chat", "--tenant", ""}, "--tenant is required"},
		{[]string{"sessions"}, "Usage: agentpg sessions <command>"},
		{[]string{"sessions", "drop"}, `unknown command "drop"`},
		{[]string{"sessions", "list"}, "--tenant is required"},
		{[]string{"sessions", "list", "--tenant", "t", "--limit", "0"}, "--limit must be at least 1"},
		{[]string{"sessions", "list", "--tenant", "t", "--limit", "many"}, `invalid value "many" for flag -limit`},
		{[]string{"sessions", "show", "--tenant", "t"}, "give one of --id and --identifier"},
		{[]string{"sessions", "show", "--tenant", "t", "--id", "x", "--identifier", "y"}, "give one of --id and --identifier"},
		// Checked by agentpg.New, once connected.
		{[]string{"migrate", "--schema", "Not-Valid"}, `schema "Not-Valid" must match`},
		{[]string{"sessions", "list", "--tenant", "t", "--schema", "1st"}, `schema "1st" must match`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := agentpgCLI(t, tc.args...)
			wantCode(t, res, 2)
			wantContains(t, "stderr", res.stderr, tc.want, "Usage: agentpg")
		})
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)

	res := agentpgCLI(t, "migrate", "--schema", schema)
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, `Created schema "`+schema+`"`, "postgres://")

	res = agentpgCLI(t, "migrate", "--schema", schema)
	wantCode(t, res, 0)
	wantContains(t, "stdout", res.stdout, `Schema "`+schema+`"`, "up to date")
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	const password = "s3cret-pw"
	for _, tc := range []struct {
		name, url, want string
	}{
		{"url", "postgres://root:" + password + "@127.0.0.1:1/test?sslmode=disable", "connecting to postgres://root@127.0.0.1:1/test"},
		{"query password", "postgres://root@127.0.0.1:1/test?password=" + password, "connecting to postgres://root@127.0.0.1:1/test"},
		{"key-value", "host=127.0.0.1 port=1 user=root password=" + password, "connecting to postgres://root@127.0.0.1:1/"},
		{"malformed", "postgres://root:" + password + "@127.0.0.1:port/test", "cannot parse"},
	} {
		for _, args := range [][]string{
			{"migrate"},
			{"demo"},
			{"chat"},
			{"sessions", "list", "--tenant", "t"},
		} {
			t.Run(tc.name+"/"+args[0], func(t *testing.T) {
				t.Parallel()
				res := invocation{env: map[string]string{"DATABASE_URL": tc.url}}.run(t, args...)
				wantCode(t, res, 1)
				wantContains(t, "stderr", res.stderr, tc.want)
				if strings.Contains(res.stdout+res.stderr, password) {
					t.Errorf("the output shows the password:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
				}
			})
		}
	}
}

// testAgent returns an Agent on the test database and schema, with a client
// of a scripted server of the test's own, for preparing and inspecting what
// the command works on.
func testAgent(t *testing.T, schema string, opts ...agentpg.Option) (*agentpg.Agent, *agentpgtest.Server) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	srv := agentpgtest.NewServer(t)
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: srv.Client(), Model: "claude-test", Schema: schema}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return agent, srv
}
