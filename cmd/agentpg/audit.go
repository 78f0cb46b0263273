package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg/audit"
)

// auditCmd returns "agentpg audit" and its subcommands.
func (c *cli) auditCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "audit",
		Short: "list a tenant's audit log, verify the audit chains",
		Long: `Read the audit log: the entries an application records, and those an Agent
with Config.Audit.Enabled records of its tool calls, approvals, cancellations
and deletions. Each tenant's entries form a hash chain that "agentpg audit
verify" checks for any change made behind the log's back.`,
	})
	cmd.AddCommand(c.auditListCmd(), c.auditVerifyCmd())
	return cmd
}

// auditListHelp describes audit list, for its help.
const auditListHelp = `List the tenant's audit entries, oldest first, a page at a time: when more
follow, the last line gives the --after cursor of the next page. --since keeps
the entries from a time on: a duration back from now, such as 24h or 90m, or
a time, such as 2025-06-01 or 2025-06-01T12:00:00Z. Inputs are cut at 60
characters; an erased entry shows "(erased)".

With --json, it prints an object: "entries", an array of entries, each with
"seq", "timestamp", "action", "tool", "success", "user_id", "session_id",
"run_id", "actor", "input", "detail", "hash" and "erased_at" (null unless
erased); and "next", the cursor of the next page, "" on the last. Nothing is
cut in JSON.`

// auditListCmd returns "agentpg audit list".
func (c *cli) auditListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list a tenant's audit entries, oldest first",
		Long:  auditListHelp,
		Example: `  agentpg audit list --tenant acme --since 24h
  agentpg audit list --tenant acme --since 2025-06-01 --json`,
	}
	since := cmd.Flags().String("since", "", "list the entries from this `duration` ago or time on")
	page := pageFlags(cmd, "entries", 50)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		p, err := page()
		if err != nil {
			return err
		}
		opts := audit.ListOptions{Limit: p.Limit}
		if p.After != "" {
			if opts.AfterSeq, err = strconv.ParseInt(p.After, 10, 64); err != nil || opts.AfterSeq < 0 {
				return usageErrorf("--after %s is not a cursor of audit list", quote(p.After))
			}
		}
		if opts.Since, err = parseSince(*since, time.Now()); err != nil {
			return err
		}
		return c.auditList(ctx, tenant, opts)
	})
}

// parseSince parses --since: a duration back from now, or a time in
// RFC 3339 or as a date (UTC); "" is the zero time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateTime, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usageErrorf("--since %s is neither a duration such as 24h nor a time such as 2025-06-01", quote(s))
}

// auditEntryView is an audit entry, for --json.
type auditEntryView struct {
	Seq       int64      `json:"seq"`
	Timestamp time.Time  `json:"timestamp"`
	Action    string     `json:"action"`
	Tool      string     `json:"tool"`
	Success   bool       `json:"success"`
	UserID    string     `json:"user_id"`
	SessionID string     `json:"session_id"`
	RunID     string     `json:"run_id"`
	Actor     string     `json:"actor"`
	Input     string     `json:"input"`
	Detail    string     `json:"detail"`
	Hash      string     `json:"hash"`
	ErasedAt  *time.Time `json:"erased_at"`
}

// auditList lists the page of the tenant's entries that opts selects.
func (c *cli) auditList(ctx context.Context, tenant string, opts audit.ListOptions) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	entries, err := agent.AuditLog().List(ctx, tenant, opts)
	if err != nil {
		return auditFlagError(err)
	}
	next := ""
	if len(entries) == opts.Limit {
		next = strconv.FormatInt(entries[len(entries)-1].Seq, 10)
	}
	if c.json {
		out := struct {
			Entries []auditEntryView `json:"entries"`
			Next    string           `json:"next"`
		}{[]auditEntryView{}, next}
		for _, e := range entries {
			out.Entries = append(out.Entries, auditEntryView{e.Seq, e.Timestamp, e.Action, e.Tool, e.Success, e.UserID,
				e.SessionID, e.RunID, e.Actor, e.Input, e.Detail, e.Hash, timeOrNil(e.ErasedAt)})
		}
		return writeJSON(c.stdout, out)
	}
	if len(entries) == 0 {
		fmt.Fprintf(c.stdout, "Tenant %s has no such audit entries.\n", quote(tenant))
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTION\tTOOL\tOK\tUSER\tACTOR\tINPUT")
	for _, e := range entries {
		input := excerpt(e.Input, 60)
		if !e.ErasedAt.IsZero() {
			input = "(erased)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, formatTime(e.Timestamp), escapeLine(e.Action),
			escapeLine(orDash(e.Tool)), yesNo(e.Success), escapeLine(orDash(e.UserID)), escapeLine(orDash(e.Actor)), escapeLine(input))
	}
	tw.Flush()
	printNext(c.stdout, "entries", next)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// auditFlagError makes err a usage error when it is about an argument from
// the flags.
func auditFlagError(err error) error {
	if errors.Is(err, audit.ErrInvalidArgument) {
		return &usageError{err}
	}
	return err
}

// auditVerifyHelp describes audit verify, for its help.
const auditVerifyHelp = `Verify the audit chain of the tenant given with --tenant, or of every tenant:
that its entries follow each other from seq 1 without gaps, each holding the
hash of the one before; that no entry was changed, removed, reordered or
inserted; that erased entries were erased through the log, by a tombstone that
accounts for them; and that the chain ends at its recorded head. It prints
each chain's head (its last seq and hash): keep a copy elsewhere, as a rewrite
of a whole chain is caught only against it. The exit status is 1 when a
chain is broken.

With --json, it prints an object: "chains", an array, each with "tenant_id",
"intact", "head_seq", "head_hash", and, for a broken chain, "broken_at" (the
seq) and "reason".`

// auditVerifyCmd returns "agentpg audit verify".
func (c *cli) auditVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "verify the audit chain of a tenant, or of every tenant",
		Long:  auditVerifyHelp,
		Example: `  agentpg audit verify
  agentpg audit verify --tenant acme --json`,
	}
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		var tenants []string
		if c.tenantSet {
			tenant, err := c.tenantOr("")
			if err != nil {
				return err
			}
			tenants = []string{tenant}
		}
		return c.auditVerify(ctx, tenants)
	})
}

// chainView is the verification of a tenant's chain, for --json.
type chainView struct {
	TenantID string `json:"tenant_id"`
	Intact   bool   `json:"intact"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	BrokenAt *int64 `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// auditVerify verifies the chains of tenants, or of every tenant when
// nil.
func (c *cli) auditVerify(ctx context.Context, tenants []string) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	log := agent.AuditLog()
	if tenants == nil {
		if tenants, err = log.Tenants(ctx); err != nil {
			return err
		}
	}
	chains := []chainView{}
	broken := 0
	for _, tenant := range tenants {
		// The head first: entries appended meanwhile come after it.
		head, err := log.Head(ctx, tenant)
		if err != nil {
			return auditFlagError(err)
		}
		v := chainView{TenantID: tenant, Intact: true, HeadSeq: head.Seq, HeadHash: head.Hash}
		var chainErr *audit.ChainError
		switch err := log.Verify(ctx, tenant); {
		case errors.As(err, &chainErr):
			v.Intact, v.BrokenAt, v.Reason = false, &chainErr.Seq, chainErr.Reason
			broken++
		case err != nil:
			return auditFlagError(err)
		}
		chains = append(chains, v)
	}
	if c.json {
		if err := writeJSON(c.stdout, struct {
			Chains []chainView `json:"chains"`
		}{chains}); err != nil {
			return err
		}
	} else {
		c.printChains(chains)
	}
	if broken > 0 {
		return fmt.Errorf("%s of %s broken", count(broken, "audit chain"), count(len(chains), "audit chain"))
	}
	return nil
}

// printChains prints the verification of the chains, as text.
func (c *cli) printChains(chains []chainView) {
	if len(chains) == 0 {
		fmt.Fprintln(c.stdout, "The audit log has no entries.")
		return
	}
	for _, v := range chains {
		entries := fmt.Sprintf("%d entries", v.HeadSeq)
		if v.HeadSeq == 1 {
			entries = "1 entry"
		}
		if v.Intact {
			fmt.Fprintf(c.stdout, "Tenant %s: intact, %s, head %s\n", quote(v.TenantID), entries, orDash(v.HeadHash))
		} else {
			fmt.Fprintf(c.stdout, "Tenant %s: BROKEN at seq %d: %s\n", quote(v.TenantID), *v.BrokenAt, escapeLine(v.Reason))
		}
	}
}
