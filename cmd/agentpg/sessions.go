package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/agentpg/agentpg"
)

// sessionsCommands are the subcommands of "agentpg sessions".
var sessionsCommands = []command{
	{"list", "list a tenant's sessions, most recently active first", (*cli).sessionsList},
	{"show", "show a session with its messages and runs", (*cli).sessionsShow},
}

// sessions runs the subcommands that inspect sessions.
func (c *cli) sessions(ctx context.Context, args []string) error {
	return c.dispatch(ctx, "agentpg sessions", sessionsCommands, args)
}

// sessionsList lists a tenant's sessions.
func (c *cli) sessionsList(ctx context.Context, args []string) error {
	fs := newFlagSet("sessions list", "--tenant <id> [flags]",
		"List the tenant's sessions, most recently active first.", databaseHelp)
	schema := schemaFlag(fs)
	tenant := tenantFlag(fs, "")
	limit := fs.Int("limit", 20, "list at most `n` sessions")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := c.requireTenant(fs, *tenant); err != nil {
		return err
	}
	if *limit < 1 {
		return c.usageError(fs, fmt.Errorf("--limit must be at least 1, got %d", *limit))
	}

	agent, db, err := c.storageAgent(ctx, fs, *schema)
	if err != nil {
		return err
	}
	defer db.close()
	page, err := agent.ListSessions(ctx, *tenant, agentpg.ListOptions{Limit: *limit})
	sessions := page.Items
	if err != nil {
		return err
	}
	if len(sessions) == 0 {
		fmt.Fprintf(c.stdout, "Tenant %q has no sessions.\n", *tenant)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tID\tCREATED")
	for _, s := range sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Identifier, s.ID, formatTime(s.CreatedAt))
	}
	return tw.Flush()
}

// sessionsShow shows a session with its messages and runs.
func (c *cli) sessionsShow(ctx context.Context, args []string) error {
	fs := newFlagSet("sessions show", "--tenant <id> (--id <id> | --identifier <identifier>) [flags]",
		"Show a session of the tenant with its messages and runs.", databaseHelp)
	schema := schemaFlag(fs)
	tenant := tenantFlag(fs, "")
	id := fs.String("id", "", "the session's `id`")
	identifier := fs.String("identifier", "", "the session's `identifier`")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := c.requireTenant(fs, *tenant); err != nil {
		return err
	}
	if (*id == "") == (*identifier == "") {
		return c.usageError(fs, errors.New("give one of --id and --identifier"))
	}

	agent, db, err := c.storageAgent(ctx, fs, *schema)
	if err != nil {
		return err
	}
	defer db.close()
	var session *agentpg.Session
	if *id != "" {
		session, err = agent.LoadSession(ctx, *tenant, *id)
	} else {
		session, err = agent.LoadSessionByIdentifier(ctx, *tenant, *identifier)
	}
	if errors.Is(err, agentpg.ErrSessionNotFound) {
		return fmt.Errorf("tenant %q has no session %s", *tenant, cmp.Or(*id, *identifier))
	}
	if err != nil {
		return err
	}
	msgsPage, err := session.Messages(ctx, agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	msgs := msgsPage.Items
	if err != nil {
		return err
	}
	runsPage, err := session.Runs(ctx, agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	runs := runsPage.Items
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Session\t%s\nID\t%s\nTenant\t%s\nCreated\t%s\n",
		session.Identifier, session.ID, session.TenantID, formatTime(session.CreatedAt))
	if session.ParentID != "" {
		fmt.Fprintf(tw, "Parent\t%s\n", session.ParentID)
	}
	if len(session.Metadata) > 0 {
		metadata, _ := json.Marshal(session.Metadata) // it was decoded from JSON
		fmt.Fprintf(tw, "Metadata\t%s\n", metadata)
	}
	tw.Flush()
	fmt.Fprintln(c.stdout)
	printMessages(c.stdout, msgs, runs)
	fmt.Fprintln(c.stdout)
	printRuns(c.stdout, runs)
	return nil
}

// tenantFlag defines the --tenant flag.
func tenantFlag(fs *flag.FlagSet, value string) *string {
	return fs.String("tenant", value, "`id` of the tenant owning the sessions")
}

// requireTenant rejects a blank --tenant.
func (c *cli) requireTenant(fs *flag.FlagSet, tenant string) error {
	if strings.TrimSpace(tenant) == "" {
		return c.usageError(fs, errors.New("--tenant is required"))
	}
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
		text := cmp.Or(excerpt(m.Text(), 100), "(no text)")
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
			formatTime(r.StartedAt), r.Status, cmp.Or(r.StopReason, "-"), r.Iterations,
			u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, excerpt(r.Error, 80))
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
