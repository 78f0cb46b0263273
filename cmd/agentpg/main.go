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
//	sessions list    list a tenant's sessions
//	sessions show    show a session with its messages and runs
//	doctor           check the deployment: API key, database, TLS, migrations
//
// DATABASE_URL selects the database; without it, agentpg uses the local
// server at postgres://root@127.0.0.1:5432/test?sslmode=disable. When nothing
// answers there, demo starts a throwaway cluster of its own. ANTHROPIC_API_KEY
// lets demo and chat talk to Claude; without it, a built-in scripted model
// gives canned answers. Run "agentpg <command> --help" for the details.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgconn"
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

// cli is one invocation of the command: its streams, its environment and
// the address of the local PostgreSQL it falls back to.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// localServer is the address of the PostgreSQL used when DATABASE_URL
	// is unset: defaultLocalServer, but for tests.
	localServer string
}

// errUsage reports a mistake in the command line, already explained on
// stderr.
var errUsage = errors.New("usage error")

// command is a command, or a subcommand, of agentpg.
type command struct {
	name    string
	summary string
	run     func(c *cli, ctx context.Context, args []string) error
}

// commands are agentpg's commands.
var commands = []command{
	{"migrate", "create or upgrade AgentPG's tables", (*cli).migrate},
	{"demo", "a three-prompt conversation that survives a reload", (*cli).demo},
	{"chat", "talk in a stored session, line by line from stdin", (*cli).chat},
	{"sessions", "list a tenant's sessions, or show one", (*cli).sessions},
	{"doctor", "check the deployment: API key, database, TLS, migrations", (*cli).doctor},
}

// run runs the command line args, reports any error on stderr and returns
// the exit status.
func (c *cli) run(ctx context.Context, args []string) int {
	err := c.dispatch(ctx, "agentpg", commands, args)
	var pgErr *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case ctx.Err() != nil:
		fmt.Fprintln(c.stderr, "agentpg: interrupted")
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		fmt.Fprintf(c.stderr, "agentpg: %s\n(has \"agentpg migrate\" run for this schema?)\n", message(err))
	default:
		fmt.Fprintf(c.stderr, "agentpg: %s\n", message(err))
	}
	return 1
}

// dispatch runs the command of cmds named by args[0] with the rest of args.
// prog is the command line that led to cmds, such as "agentpg sessions".
func (c *cli) dispatch(ctx context.Context, prog string, cmds []command, args []string) error {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prog)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, cmd := range cmds {
			fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nRun \"%s <command> --help\" for the command's flags and environment.\n", prog)
	}
	if len(args) == 0 {
		usage(c.stderr)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(c.stdout)
		return flag.ErrHelp
	}
	for _, cmd := range cmds {
		if cmd.name == args[0] {
			return cmd.run(c, ctx, args[1:])
		}
	}
	fmt.Fprintf(c.stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage(c.stderr)
	return errUsage
}

// newFlagSet returns the flag set of "agentpg <name>", whose usage shows the
// synopsis, the paragraphs of the description and the flags.
func newFlagSet(name, synopsis string, description ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("agentpg "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s %s\n\n%s\n\nFlags:\n", fs.Name(), synopsis, strings.Join(description, "\n\n"))
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, which must hold only flags. Asked for help, it prints
// the usage on stdout and returns flag.ErrHelp; a mistake is explained on
// stderr, as errUsage.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fs.Usage()
		return err
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		return c.usageError(fs, err)
	}
	return nil
}

// usageError explains err, a mistake in the command line of fs, with the
// usage on stderr, and returns errUsage.
func (c *cli) usageError(fs *flag.FlagSet, err error) error {
	fmt.Fprintf(c.stderr, "%s: %s\n\n", fs.Name(), message(err))
	fs.SetOutput(c.stderr)
	fs.Usage()
	return errUsage
}

// message returns the message of err without the prefix "agentpg: " of
// the library's errors, which the command line shows already.
func message(err error) string {
	return strings.TrimPrefix(err.Error(), "agentpg: ")
}

// schemaFlag defines the --schema flag.
func schemaFlag(fs *flag.FlagSet) *string {
	return fs.String("schema", defaultSchema, "PostgreSQL `schema` of AgentPG's tables")
}
