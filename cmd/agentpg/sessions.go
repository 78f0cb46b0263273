package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

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

// sessionsListCmd returns "agentpg sessions list".
func (c *cli) sessionsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list a tenant's sessions, most recently active first",
		Long:  "List the tenant's sessions, most recently active first.",
	}
	limit := cmd.Flags().Int("limit", 20, "list at most `n` sessions")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if err := checkLimit(*limit); err != nil {
			return err
		}
		return c.sessionsList(ctx, tenant, *limit)
	})
}

// checkLimit checks the value of a --limit flag.
func checkLimit(limit int) error {
	if limit < 1 || limit > agentpg.MaxPageSize {
		return usageErrorf("--limit must be from 1 to %d, not %d", agentpg.MaxPageSize, limit)
	}
	return nil
}

// sessionsList lists the tenant's sessions.
func (c *cli) sessionsList(ctx context.Context, tenant string, limit int) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	page, err := agent.ListSessions(ctx, tenant, agentpg.ListOptions{Limit: limit})
	if err != nil {
		return err
	}
	sessions := page.Items
	if len(sessions) == 0 {
		fmt.Fprintf(c.stdout, "Tenant %s has no sessions.\n", quote(tenant))
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tID\tCREATED")
	for _, s := range sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", escapeLine(s.Identifier), escapeLine(s.ID), formatTime(s.CreatedAt))
	}
	return tw.Flush()
}

// sessionsShowCmd returns "agentpg sessions show".
func (c *cli) sessionsShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show (--id <id> | --identifier <identifier>)",
		Short: "show a session with its messages and runs",
		Long:  "Show a session of the tenant with its messages and runs.",
	}
	id := cmd.Flags().String("id", "", "the session's `id`")
	identifier := cmd.Flags().String("identifier", "", "the session's `identifier`")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if (*id == "") == (*identifier == "") {
			return usageErrorf("give one of --id and --identifier")
		}
		return c.sessionsShow(ctx, tenant, *id, *identifier)
	})
}

// sessionsShow shows the tenant's session with id, or else identifier,
// with its messages and runs.
func (c *cli) sessionsShow(ctx context.Context, tenant, id, identifier string) error {
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
		return fmt.Errorf("tenant %q has no session %s", tenant, cmp.Or(id, identifier))
	}
	if err != nil {
		return err
	}
	msgsPage, err := session.Messages(ctx, agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil {
		return err
	}
	msgs := msgsPage.Items
	runsPage, err := session.Runs(ctx, agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil {
		return err
	}
	runs := runsPage.Items

	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Session\t%s\nID\t%s\nTenant\t%s\nCreated\t%s\n",
		escapeLine(session.Identifier), escapeLine(session.ID), escapeLine(session.TenantID), formatTime(session.CreatedAt))
	if session.ParentID != "" {
		fmt.Fprintf(tw, "Parent\t%s\n", escapeLine(session.ParentID))
	}
	if len(session.Metadata) > 0 {
		metadata, _ := json.Marshal(session.Metadata) // it was decoded from JSON
		fmt.Fprintf(tw, "Metadata\t%s\n", escapeJSON(metadata))
	}
	tw.Flush()
	fmt.Fprintln(c.stdout)
	printMessages(c.stdout, msgs, runs)
	fmt.Fprintln(c.stdout)
	printRuns(c.stdout, runs)
	return nil
}

// newIdentifier returns a fresh session identifier, such as "demo-k3j5x2ab".
func newIdentifier(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// printMessages lists msgs, a line each: sequence number, role and the start
// of the text. It marks the messages of failed runs, which are left out of
// the conversation sent to the model.
func printMessages(w io.Writer, msgs []agentpg.Message, runs []agentpg.RunInfo) {
	failed := make(map[string]bool)
	for _, r := range runs {
		failed[r.ID] = r.Status == "failed"
	}
	fmt.Fprintf(w, "Messages (%d):\n", len(msgs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range msgs {
		text := cmp.Or(escapeLine(excerpt(m.Text(), 100)), "(no text)")
		if failed[m.RunID] {
			text += "  [failed run: not sent to the model]"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\n", m.Seq, m.Role, text)
	}
	tw.Flush()
}

// printRuns lists runs, a line each, with their usage in tokens.
func printRuns(w io.Writer, runs []agentpg.RunInfo) {
	fmt.Fprintf(w, "Runs (%d):\n", len(runs))
	if len(runs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STARTED\tSTATUS\tSTOP REASON\tCALLS\tINPUT\tOUTPUT\tCACHE READ\tCACHE WRITE\tERROR")
	for _, r := range runs {
		u := r.Usage
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n",
			formatTime(r.StartedAt), escapeLine(r.Status), escapeLine(cmp.Or(r.StopReason, "-")), r.Iterations,
			u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, escapeLine(excerpt(r.Error, 80)))
	}
	tw.Flush()
}

// formatTime formats t for people, in the local time zone.
func formatTime(t time.Time) string {
	return t.Local().Format(time.DateTime)
}

// excerpt returns s on one line, cut to n characters.
func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
