// Command agentpg sets up AgentPG's tables in PostgreSQL, shows AgentPG at
// work, talks to Claude in stored sessions and inspects them.
//
// Usage:
//
//	agentpg <command> [flags]
//
// The commands are:
//
//	migrate          create or upgrade AgentPG's tables
//	demo             a three-prompt conversation that survives a reload
//	chat             talk in a stored session, line by line from stdin
//	sessions list    list a tenant's sessions, most recently active first
//	sessions show    show a session: a page of its messages, tool calls included, and their runs
//	runs list        list a tenant's runs, oldest first (--status, --stuck)
//	runs show        show a run with its tool calls, or follow its events (--follow)
//	runs cancel      cancel a run that has not ended
//	runs resume      resume an interrupted run, or one whose approvals are decided
//	approvals list   list the runs awaiting approval and their pending tool calls
//	approvals approve  approve a tool call awaiting approval
//	approvals deny   deny a tool call awaiting approval
//	audit list       list a tenant's audit entries, oldest first (--since)
//	audit verify     verify the audit chain of a tenant, or of every tenant
//	limits show      show a tenant's limits on model calls
//	limits set       set a tenant's requests per minute and tokens per day
//	usage            show a tenant's model calls, tokens and cost per day
//	doctor           check the deployment: API key, database, TLS, migrations
//	version          print agentpg's version and the Go version it was built with
//	completion       generate the completion script of a shell
//	help             help about any command
//
// The global flags, which every command takes where they apply (a command
// refuses those it has no use for):
//
//	--database-url URL  the PostgreSQL database (default: DATABASE_URL, else
//	                    postgres://root@127.0.0.1:5432/test?sslmode=disable)
//	--schema name       the schema of AgentPG's tables (default "agentpg")
//	--tenant id         the tenant, for demo, chat, sessions, runs, approvals,
//	                    audit, limits and usage
//	--json              machine-readable output, for sessions, runs, approvals
//	                    (list), audit, limits, usage, doctor and version
//
// When nothing answers at the default database, demo starts a throwaway
// cluster of its own. ANTHROPIC_API_KEY lets demo and chat talk to Claude;
// without it, a built-in scripted model gives canned answers. The exit
// status is 0 on success, 1 on failure and 2 for a mistake in the command
// line, which is told in one line. Run "agentpg <command> --help" for the
// details.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status: 0 on success,
// 1 on failure and 2 for a mistake in the command line.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, localServer: defaultLocalServer}
	return c.run(ctx, args)
}

// cli is one invocation of the command: its streams, its environment, the
// address of the local PostgreSQL it falls back to and its global flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// localServer is the address of the PostgreSQL used when neither
	// --database-url nor DATABASE_URL is set: defaultLocalServer, but for
	// tests.
	localServer string

	// The global flags.
	dbURL, schema, tenant string
	json                  bool
	// tenantSet reports whether --tenant was given.
	tenantSet bool

	// started is set once the command line is parsed and the command
	// starts: an error before is a mistake in the command line.
	started bool
}

// run runs the command line args, reports any error on stderr and returns
// the exit status.
func (c *cli) run(ctx context.Context, args []string) int {
	root := c.rootCmd()
	root.SetArgs(append([]string{}, args...)) // never nil, which would make cobra read os.Args
	cmd, err := root.ExecuteContextC(ctx)
	if cmd == nil {
		cmd = root
	}
	var usage *usageError
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return 0
	case !c.started || errors.As(err, &usage):
		fmt.Fprintf(c.stderr, "agentpg: %s; see \"%s --help\"\n", escapeLine(usageMessage(err)), cmd.CommandPath())
		return 2
	case ctx.Err() != nil:
		fmt.Fprintln(c.stderr, "agentpg: interrupted")
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		c.printError(err)
		fmt.Fprintln(c.stderr, `(has "agentpg migrate" run for this schema?)`)
	default:
		c.printError(err)
	}
	return 1
}

// printError reports err on stderr as "agentpg: " and its message,
// escaped: it may quote the database or the model.
func (c *cli) printError(err error) {
	fmt.Fprintf(c.stderr, "agentpg: %s\n", escapeText(message(err)))
}

// message returns the message of err without the prefix "agentpg: " of
// the library's errors, which the command line shows already.
func message(err error) string {
	return strings.TrimPrefix(err.Error(), "agentpg: ")
}

// usageError is a mistake in the command line found by a command.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usageError with the message of fmt.Errorf.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// usageMessage tells err, a mistake in the command line, on one line, in
// the words agentpg uses for its own mistakes rather than pflag's.
func usageMessage(err error) string {
	var notExist *pflag.NotExistError
	var noValue *pflag.ValueRequiredError
	var invalid *pflag.InvalidValueError
	var numErr *strconv.NumError
	switch {
	case errors.As(err, &notExist) && notExist.GetSpecifiedShortnames() != "":
		return "unknown flag -" + notExist.GetSpecifiedName()
	case errors.As(err, &notExist):
		return "unknown flag --" + notExist.GetSpecifiedName()
	case errors.As(err, &noValue):
		return "flag --" + noValue.GetFlag().Name + " needs a value"
	case errors.As(err, &invalid) && errors.As(err, &numErr):
		return fmt.Sprintf("invalid value %q for --%s: %v", invalid.GetValue(), invalid.GetFlag().Name, numErr.Err)
	case errors.As(err, &invalid):
		return fmt.Sprintf("invalid value %q for --%s: %v", invalid.GetValue(), invalid.GetFlag().Name, errors.Unwrap(invalid))
	}
	return strings.Join(strings.Fields(message(err)), " ")
}
