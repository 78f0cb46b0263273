package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg/internal/store"
)

// The global flags, defined on the root command for all commands.
const (
	flagDatabaseURL = "database-url"
	flagSchema      = "schema"
	flagTenant      = "tenant"
	flagJSON        = "json"
)

// globalFlags are the names of the global flags.
var globalFlags = []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}

// databaseFlags are the global flags of the commands that use the
// database.
var databaseFlags = []string{flagDatabaseURL, flagSchema}

// rootHelp describes agentpg, for the help of the root command.
const rootHelp = `agentpg sets up AgentPG's tables in PostgreSQL, shows AgentPG at work, talks
to Claude in stored sessions and inspects them.

--database-url, or else DATABASE_URL, selects the PostgreSQL database, as a URL
such as postgres://user@host:5432/dbname?sslmode=verify-full or as key=value
settings. Without either, agentpg uses the local server with trust
authentication: ` + defaultLocalDSN + `.
A command refuses the global flags it has no use for. The exit status is 0 on
success, 1 on failure and 2 for a mistake in the command line.`

// helpTemplate is the help of every command: usage, description,
// subcommands and flags.
const helpTemplate = `Usage: {{if .HasAvailableSubCommands}}{{.CommandPath}} <command> [flags]{{else}}{{.UseLine}}{{end}}
{{with (or .Long .Short)}}
{{. | trimTrailingWhitespaces}}
{{end}}{{if .HasExample}}
Examples:
{{.Example}}
{{end}}{{if .HasAvailableSubCommands}}
Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}
{{end}}{{if .HasAvailableLocalFlags}}
Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}
{{end}}{{if .HasAvailableInheritedFlags}}
Global flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}
{{end}}{{if .HasAvailableSubCommands}}
Run "{{.CommandPath}} <command> --help" for a command's flags and details.
{{end}}`

// rootCmd returns the command tree of agentpg, whose global flags set c's
// fields.
func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "agentpg",
		Short:         "Set up, demonstrate, use and inspect AgentPG",
		Long:          rootHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		// The command line is parsed and the command found: what goes
		// wrong from here on is no mistake in the command line, unless the
		// command says so with a usageError.
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			c.started = true
			c.tenantSet = cmd.Flags().Changed(flagTenant)
		},
	}
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	c.group(root)

	f := root.PersistentFlags()
	f.StringVar(&c.dbURL, flagDatabaseURL, "", "PostgreSQL `URL` (default: DATABASE_URL, else "+defaultLocalDSN+")")
	f.StringVar(&c.schema, flagSchema, defaultSchema, "PostgreSQL `schema` of AgentPG's tables")
	f.StringVar(&c.tenant, flagTenant, "", "`id` of the tenant (required by sessions, runs, approvals, audit list, limits, usage, erase and keys without --all; chat: \"default\", demo: \"demo\")")
	f.BoolVar(&c.json, flagJSON, false, "print JSON, for sessions, runs, approvals, audit, limits, usage, retention, erase, keys, doctor and version")

	root.AddCommand(
		c.migrateCmd(),
		c.demoCmd(),
		c.chatCmd(),
		c.serveCmd(),
		c.sessionsCmd(),
		c.runsCmd(),
		c.approvalsCmd(),
		c.limitsCmd(),
		c.usageCmd(),
		c.retentionCmd(),
		c.eraseCmd(),
		c.keysCmd(),
		c.auditCmd(),
		c.doctorCmd(),
		c.versionCmd(),
	)
	root.SetHelpCommand(helpCmd(root))
	// cobra's completion command, made now to be a group like the others.
	root.InitDefaultCompletionCmd()
	for _, cmd := range root.Commands() {
		if cmd.Name() == "completion" {
			cmd.Short = "generate the completion script of a shell"
			c.group(cmd)
		}
	}
	return root
}

// helpCmd returns "agentpg help", which, unlike cobra's, refuses an
// unknown command.
func helpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Long:  `Show the help of a command, such as "agentpg help sessions show".`,
		Args:  cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usageErrorf("unknown command %q", strings.Join(args, " "))
			}
			return cmd.Help()
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			if cmd, rest, err := root.Find(args); err == nil && len(rest) == 0 {
				for _, sub := range cmd.Commands() {
					if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
						names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// group completes cmd, a command that only holds subcommands: run without
// one, or with an unknown one, it is a usage error.
func (c *cli) group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs // checked below, with suggestions
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageErrorf("missing command")
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			return usageErrorf("unknown command %q (did you mean %q?)", args[0], s[0])
		}
		return usageErrorf("unknown command %q", args[0])
	}
	return cmd
}

// leaf completes cmd, a command without subcommands or arguments, to run
// run. uses names the global flags it uses, and it refuses the others; with
// --schema among them, it checks the schema's name first.
func (c *cli) leaf(cmd *cobra.Command, uses []string, run func(ctx context.Context) error) *cobra.Command {
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unexpected argument %q", args[0])
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		for _, name := range globalFlags {
			if !slices.Contains(uses, name) && cmd.Flags().Changed(name) {
				return usageErrorf("--%s does not apply to %q", name, cmd.CommandPath())
			}
		}
		if slices.Contains(uses, flagSchema) {
			if err := store.ValidateSchema(c.schema); err != nil {
				return &usageError{err}
			}
		}
		return run(cmd.Context())
	}
	return cmd
}

// tenantOr returns --tenant, or def when it is not given; a blank tenant,
// given or by default, is a usage error.
func (c *cli) tenantOr(def string) (string, error) {
	tenant := c.tenant
	if !c.tenantSet {
		tenant = def
	}
	if strings.TrimSpace(tenant) == "" {
		return "", usageErrorf("--tenant is required")
	}
	return tenant, nil
}
