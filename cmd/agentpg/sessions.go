package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// sessionsCmd returns "agentpg sessions" and its subcommands.
func (c *cli) sessionsCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "sessions",
		Short: "list a tenant's sessions, or show one",
		Long:  "Inspect the sessions stored in the schema, tenant by tenant.",
	})
	cmd.AddCommand(c.sessionsListCmd(), c.sessionsShowCmd())
	return cmd
}

// sessionsListHelp describes sessions list, for its help.
const sessionsListHelp = `List the tenant's sessions, most recently active first, a page at a time: when
more follow, the last line gives the --after cursor of the next page.

With --json, it prints an object: "sessions", an array of sessions, each with
"id", "tenant_id", "identifier", "parent_id" (absent for a top-level session),
"metadata", "created_at" and "updated_at" (RFC 3339 times); and "next", the
cursor of the next page, "" on the last.`

// sessionsListCmd returns "agentpg sessions list".
func (c *cli) sessionsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list a tenant's sessions, most recently active first",
		Long:  sessionsListHelp,
	}
	page := pageFlags(cmd, "sessions", 20)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		opts, err := page()
		if err != nil {
			return err
		}
		return c.sessionsList(ctx, tenant, opts)
	})
}

// pageFlags adds --limit (default def, at most MaxPageSize) and --after to
// cmd, for a listing of what, and returns the func that reads them as
// ListOptions, or a usage error.
func pageFlags(cmd *cobra.Command, what string, def int) func() (agentpg.ListOptions, error) {
	limit := cmd.Flags().Int("limit", def, fmt.Sprintf("list at most `n` %s (at most %d)", what, agentpg.MaxPageSize))
	after := cmd.Flags().String("after", "", "list the page after this `cursor`, printed by the previous page")
	return func() (agentpg.ListOptions, error) {
		if *limit < 1 || *limit > agentpg.MaxPageSize {
			return agentpg.ListOptions{}, usageErrorf("--limit must be from 1 to %d, not %d", agentpg.MaxPageSize, *limit)
		}
		return agentpg.ListOptions{After: *after, Limit: *limit}, nil
	}
}

// flagError makes err, from the library, a usage error when it is one of
// the arguments, which come from the flags: a tenant or a cursor.
func flagError(err error) error {
	if errors.Is(err, agentpg.ErrInvalidArgument) {
		return &usageError{err}
	}
	return err
}

// sessionView is a session, for --json.
type sessionView struct {
	ID         string         `json:"id"`
	TenantID   string         `json:"tenant_id"`
	Identifier string         `json:"identifier"`
	ParentID   string         `json:"parent_id,omitempty"`
	Metadata   map[string]any `json:"metadata"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
}

// newSessionView returns the view of s.
func newSessionView(s *agentpg.Session) sessionView {
	v := sessionView{s.ID, s.TenantID, s.Identifier, s.ParentID, s.Metadata, s.CreatedAt, s.UpdatedAt}
	if v.Metadata == nil {
		v.Metadata = map[string]any{}
	}
	return v
}

// sessionsList lists the page of the tenant's sessions that opts selects.
func (c *cli) sessionsList(ctx context.Context, tenant string, opts agentpg.ListOptions) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	page, err := agent.ListSessions(ctx, tenant, opts)
	if err != nil {
		return flagError(err)
	}
	if c.json {
		out := struct {
			Sessions []sessionView `json:"sessions"`
			Next     string        `json:"next"`
		}{[]sessionView{}, page.Next}
		for _, s := range page.Items {
			out.Sessions = append(out.Sessions, newSessionView(s))
		}
		return writeJSON(c.stdout, out)
	}
	if len(page.Items) == 0 {
		fmt.Fprintf(c.stdout, "Tenant %s has no sessions.\n", quote(tenant))
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tID\tCREATED\tLAST ACTIVE")
	for _, s := range page.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", escapeLine(s.Identifier), escapeLine(s.ID), formatTime(s.CreatedAt), formatTime(s.UpdatedAt))
	}
	tw.Flush()
	printNext(c.stdout, "sessions", page.Next)
	return nil
}

// showCommand returns the command line that shows session, escaped.
func (c *cli) showCommand(session *agentpg.Session) string {
	return fmt.Sprintf("agentpg sessions show --schema %s --tenant %s --identifier %s",
		c.schema, escapeLine(session.TenantID), escapeLine(session.Identifier))
}

// printNext tells the cursor of the next page of a listing of what, if
// there is one.
func printNext(w io.Writer, what, next string) {
	if next != "" {
		fmt.Fprintf(w, "\nMore %s follow: run again with --after %s\n", what, escapeLine(next))
	}
}

// sessionsShowHelp describes sessions show, for its help.
const sessionsShowHelp = `Show a session of the tenant: a page of its messages, oldest first, and the
runs they belong to. Each message shows its blocks: text, thinking, tool calls
with their input, tool results with their output and whether they failed (and
how long the call took, from the tool ledger); texts, inputs and outputs are cut
at 2000 bytes. When more messages follow, the last line gives the --after
cursor of the next page.

With --json, it prints an object with:
  "session"   the session, as sessions list --json prints it;
  "messages"  the page of messages, each with "id", "run_id", "seq", "role",
              "created_at", "run_failed" (its run failed: the model never saw
              it), "usage" (of an answer, else null) and "content", an array
              of blocks, each with "type" and, by type:
                text: "text"; thinking: "text"; tool_use: "id", "name",
                "input"; tool_result: "tool_use_id", "name" (when known),
                "is_error", "output"; other types: nothing more;
  "next"      the cursor of the next page, "" on the last;
  "runs"      the runs of those messages, oldest first, each with "id",
              "parent_run_id" (for the run of an agent called as a tool),
              "status", "model", "stop_reason", "error", "iterations",
              "usage", "started_at", "finished_at" (null while running) and
              "tool_calls", the tool ledger: "tool_use_id", "name", "input",
              "output", "is_error", "started_at", "finished_at".
Nothing is cut in JSON.`

// sessionsShowCmd returns "agentpg sessions show".
func (c *cli) sessionsShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show (--id <id> | --identifier <identifier>)",
		Short: "show a session: a page of its messages, tool calls included, and their runs",
		Long:  sessionsShowHelp,
	}
	id := cmd.Flags().String("id", "", "the session's `id`")
	identifier := cmd.Flags().String("identifier", "", "the session's `identifier`")
	page := pageFlags(cmd, "messages", agentpg.DefaultPageSize)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if (*id == "") == (*identifier == "") {
			return usageErrorf("give one of --id and --identifier")
		}
		opts, err := page()
		if err != nil {
			return err
		}
		return c.sessionsShow(ctx, tenant, *id, *identifier, opts)
	})
}

// sessionsShow shows the tenant's session with id, or else identifier: the
// page of its messages that opts selects, and their runs.
func (c *cli) sessionsShow(ctx context.Context, tenant, id, identifier string, opts agentpg.ListOptions) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	var session *agentpg.Session
	if id != "" {
		session, err = agent.LoadSession(ctx, tenant, id)
	} else {
		session, err = agent.LoadSessionByIdentifier(ctx, tenant, identifier)
	}
	if errors.Is(err, agentpg.ErrSessionNotFound) {
		return fmt.Errorf("tenant %s has no session %s", quote(tenant), escapeLine(cmp.Or(id, identifier)))
	}
	if err != nil {
		return flagError(err)
	}
	t, err := loadTranscript(ctx, session, opts)
	if err != nil {
		return flagError(err)
	}
	if c.json {
		return writeJSON(c.stdout, struct {
			Session sessionView `json:"session"`
			*transcript
		}{newSessionView(session), t})
	}

	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Session\t%s\nID\t%s\nTenant\t%s\nCreated\t%s\nLast active\t%s\n",
		escapeLine(session.Identifier), escapeLine(session.ID), escapeLine(session.TenantID),
		formatTime(session.CreatedAt), formatTime(session.UpdatedAt))
	if session.ParentID != "" {
		fmt.Fprintf(tw, "Parent\t%s\n", escapeLine(session.ParentID))
	}
	if len(session.Metadata) > 0 {
		metadata, _ := json.Marshal(session.Metadata) // it was decoded from JSON
		fmt.Fprintf(tw, "Metadata\t%s\n", escapeJSON(metadata))
	}
	tw.Flush()
	fmt.Fprintln(c.stdout)
	t.printMessages(c.stdout)
	fmt.Fprintln(c.stdout)
	printRuns(c.stdout, t.Runs)
	printNext(c.stdout, "messages", t.Next)
	return nil
}
