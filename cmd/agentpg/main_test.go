package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"runtime"
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
	global := []string{"--database-url", "--schema", "--tenant", "--json", "DATABASE_URL", localDSN(defaultLocalServer)}
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--help"}, []string{"Usage: agentpg <command> [flags]", "migrate", "demo", "chat", "sessions", "doctor", "version", "completion"}},
		{[]string{"-h"}, []string{"Usage: agentpg <command> [flags]", "sessions"}},
		{[]string{"help"}, []string{"Usage: agentpg <command> [flags]", "migrate", "demo", "chat", "sessions"}},
		{[]string{"help", "sessions", "list"}, []string{"Usage: agentpg sessions list [flags]", "--limit"}},
		{[]string{"migrate", "--help"}, []string{"Usage: agentpg migrate [flags]"}},
		{[]string{"demo", "-h"}, []string{"Usage: agentpg demo [flags]", "--model", "throwaway cluster", "ANTHROPIC_API_KEY"}},
		{[]string{"chat", "--help"}, []string{"Usage: agentpg chat [flags]", "--session", "--model", "/history", "/quit", "ANTHROPIC_API_KEY"}},
		{[]string{"sessions", "--help"}, []string{"Usage: agentpg sessions <command> [flags]", "list", "show"}},
		{[]string{"sessions", "list", "--help"}, []string{"Usage: agentpg sessions list [flags]", "--limit"}},
		{[]string{"sessions", "show", "--help"}, []string{"Usage: agentpg sessions show", "--id", "--identifier"}},
		{[]string{"audit", "--help"}, []string{"Usage: agentpg audit <command> [flags]", "list", "verify"}},
		{[]string{"audit", "list", "--help"}, []string{"Usage: agentpg audit list [flags]", "--since", "--limit", "--after"}},
		{[]string{"doctor", "--help"}, []string{"Usage: agentpg doctor [flags]", "ok, warn or fail"}},
		{[]string{"version", "--help"}, []string{"Usage: agentpg version [flags]"}},
		{[]string{"completion", "--help"}, []string{"bash", "zsh", "fish", "powershell"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := agentpgCLI(t, tc.args...)
			wantCode(t, res, 0)
			wantContains(t, "stdout", res.stdout, append(tc.wants, global...)...)
			if res.stderr != "" {
				t.Errorf("stderr is not empty:\n%s", res.stderr)
			}
		})
	}
}

// TestUsageErrors checks that a mistake in the command line is told in one
// line on stderr, which points to the command's help, with exit status 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `agentpg: missing command; see "agentpg --help"`},
		{[]string{"launch"}, `agentpg: unknown command "launch"; see "agentpg --help"`},
		{[]string{"sesions"}, `agentpg: unknown command "sesions" (did you mean "sessions"?); see "agentpg --help"`},
		{[]string{"--bogus"}, `agentpg: unknown flag --bogus; see "agentpg --help"`},
		{[]string{"migrate", "--bogus"}, `agentpg: unknown flag --bogus; see "agentpg migrate --help"`},
		{[]string{"migrate", "-x"}, `agentpg: unknown flag -x; see "agentpg migrate --help"`},
		{[]string{"migrate", "now"}, `agentpg: unexpected argument "now"; see "agentpg migrate --help"`},
		{[]string{"migrate", "--schema"}, `agentpg: flag --schema needs a value; see "agentpg migrate --help"`},
		{[]string{"migrate", "--tenant", "t"}, `agentpg: --tenant does not apply to "agentpg migrate"; see "agentpg migrate --help"`},
		{[]string{"migrate", "--json"}, `agentpg: --json does not apply to "agentpg migrate"; see "agentpg migrate --help"`},
		{[]string{"version", "--schema", "x"}, `agentpg: --schema does not apply to "agentpg version"; see "agentpg version --help"`},
		{[]string{"demo", "--tenant", " "}, `agentpg: --tenant is required; see "agentpg demo --help"`},
		{[]string{"chat", "--tenant", ""}, `agentpg: --tenant is required; see "agentpg chat --help"`},
		{[]string{"sessions"}, `agentpg: missing command; see "agentpg sessions --help"`},
		{[]string{"sessions", "drop"}, `agentpg: unknown command "drop"; see "agentpg sessions --help"`},
		{[]string{"sessions", "list", "--foo"}, `agentpg: unknown flag --foo; see "agentpg sessions list --help"`},
		{[]string{"sessions", "list"}, `agentpg: --tenant is required; see "agentpg sessions list --help"`},
		{[]string{"sessions", "list", "--tenant", "t", "--limit", "0"}, `agentpg: --limit must be from 1 to 1000, not 0; see "agentpg sessions list --help"`},
		{[]string{"sessions", "list", "--tenant", "t", "--limit", "many"}, `agentpg: invalid value "many" for --limit: invalid syntax; see "agentpg sessions list --help"`},
		{[]string{"sessions", "show", "--tenant", "t"}, `agentpg: give one of --id and --identifier; see "agentpg sessions show --help"`},
		{[]string{"sessions", "show", "--tenant", "t", "--id", "x", "--identifier", "y"}, `agentpg: give one of --id and --identifier; see "agentpg sessions show --help"`},
		{[]string{"migrate", "--schema", "Not-Valid"}, `agentpg: schema "Not-Valid" must match`},
		{[]string{"sessions", "list", "--tenant", "t", "--schema", "1st"}, `agentpg: schema "1st" must match`},
		{[]string{"completion", "tcsh"}, `agentpg: unknown command "tcsh"`},
		{[]string{"help", "launch"}, `agentpg: unknown command "launch"; see "agentpg help --help"`},
		{[]string{"help", "sessions", "drop"}, `agentpg: unknown command "sessions drop"; see "agentpg help --help"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := agentpgCLI(t, tc.args...)
			wantCode(t, res, 2)
			wantContains(t, "stderr", res.stderr, tc.want)
			if strings.Count(res.stderr, "\n") != 1 || !strings.HasSuffix(res.stderr, "--help\"\n") {
				t.Errorf("stderr is not one line ending in the help's command:\n%s", res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout is not empty:\n%s", res.stdout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	res := agentpgCLI(t, "version")
	wantCode(t, res, 0)
	if want := "agentpg (devel), built with " + runtime.Version() + "\n"; res.stdout != want {
		t.Errorf("version prints %q, want %q", res.stdout, want)
	}

	res = agentpgCLI(t, "version", "--json")
	wantCode(t, res, 0)
	var got struct{ Version, Go string }
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("version --json: %v\n%s", err, res.stdout)
	}
	if got.Version != "(devel)" || got.Go != runtime.Version() {
		t.Errorf("version --json = %+v", got)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		res := agentpgCLI(t, "completion", shell)
		wantCode(t, res, 0)
		wantContains(t, "completion "+shell, res.stdout, "agentpg")
	}
	// The shells ask the command itself for the completions.
	for _, args := range [][]string{{"sessions", ""}, {"help", "sessions", ""}} {
		res := agentpgCLI(t, append([]string{"__complete"}, args...)...)
		wantCode(t, res, 0)
		wantContains(t, "__complete "+strings.Join(args, " "), res.stdout, "list", "show")
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
				// From DATABASE_URL, and from --database-url, which wins.
				for _, inv := range []struct {
					env  map[string]string
					args []string
				}{
					{map[string]string{"DATABASE_URL": tc.url}, args},
					{map[string]string{"DATABASE_URL": plainDSN(t)}, append([]string{"--database-url", tc.url}, args...)},
				} {
					res := invocation{env: inv.env}.run(t, inv.args...)
					wantCode(t, res, 1)
					wantContains(t, "stderr", res.stderr, tc.want)
					if strings.Contains(res.stdout+res.stderr, password) {
						t.Errorf("the output shows the password:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
					}
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
