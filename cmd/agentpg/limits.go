package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// limitsCmd returns "agentpg limits" and its subcommands.
func (c *cli) limitsCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "limits",
		Short: "show or set a tenant's limits on model calls",
		Long: `Show or set a tenant's limits on model calls, held in the database for every
process: requests (model calls) per minute and input and output tokens per UTC
day, for the tenant altogether and for each of its sessions on its own. A run
that a limit refuses fails with an error that says when to retry.`,
	})
	cmd.AddCommand(c.limitsShowCmd(), c.limitsSetCmd())
	return cmd
}

// limitsView is a tenant's limits, for --json; 0 is no limit.
type limitsView struct {
	Tenant                   string `json:"tenant"`
	RequestsPerMinute        int    `json:"requests_per_minute"`
	TokensPerDay             int64  `json:"tokens_per_day"`
	SessionRequestsPerMinute int    `json:"session_requests_per_minute"`
	SessionTokensPerDay      int64  `json:"session_tokens_per_day"`
}

// limitsShowHelp describes limits show, for its help.
const limitsShowHelp = `Show the tenant's limits; "none" for a limit not set.

With --json, it prints an object with "tenant", "requests_per_minute",
"tokens_per_day", "session_requests_per_minute" and "session_tokens_per_day",
0 for a limit not set.`

// limitsShowCmd returns "agentpg limits show".
func (c *cli) limitsShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "show",
		Short:   "show a tenant's limits",
		Long:    limitsShowHelp,
		Example: `  agentpg limits show --tenant acme`,
	}
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		return c.limits(ctx, nil)
	})
}

// limits prints the limits of --tenant, after changing them with change
// unless it is nil.
func (c *cli) limits(ctx context.Context, change func(*agentpg.TenantLimits)) error {
	tenant, err := c.tenantOr("")
	if err != nil {
		return err
	}
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	limits, err := agent.GetTenantLimits(ctx, tenant)
	if err != nil {
		return flagError(err)
	}
	if change != nil {
		change(&limits)
		if err := agent.SetTenantLimits(ctx, tenant, limits); err != nil {
			return flagError(err)
		}
	}
	return c.printLimits(tenant, limits)
}

// printLimits prints the tenant's limits.
func (c *cli) printLimits(tenant string, l agentpg.TenantLimits) error {
	if c.json {
		return writeJSON(c.stdout, limitsView{tenant, l.RequestsPerMinute, l.TokensPerDay,
			l.PerSession.RequestsPerMinute, l.PerSession.TokensPerDay})
	}
	orNone := func(v int64) string {
		if v == 0 {
			return "none"
		}
		return fmt.Sprint(v)
	}
	fmt.Fprintf(c.stdout, "Limits of tenant %s:\n", quote(tenant))
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  requests per minute\t%s\n", orNone(int64(l.RequestsPerMinute)))
	fmt.Fprintf(tw, "  tokens per day\t%s\n", orNone(l.TokensPerDay))
	fmt.Fprintf(tw, "  requests per minute, each session\t%s\n", orNone(int64(l.PerSession.RequestsPerMinute)))
	fmt.Fprintf(tw, "  tokens per day, each session\t%s\n", orNone(l.PerSession.TokensPerDay))
	return tw.Flush()
}

// limitsSetHelp describes limits set, for its help.
const limitsSetHelp = `Set the tenant's limits: the flags given replace those limits, the others stay
as they are; 0 removes a limit. Requests are model calls, each call of a run's
tool loop included, counted in any 60 seconds; tokens are input and output
tokens as the API counts them, per UTC day. Runs under way meet the new limits
at their next model call. It prints the limits as "limits show" does.`

// limitsSetCmd returns "agentpg limits set".
func (c *cli) limitsSetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set",
		Short: "set a tenant's limits",
		Long:  limitsSetHelp,
		Example: `  agentpg limits set --tenant acme --requests-per-minute 60 --tokens-per-day 2000000
  agentpg limits set --tenant acme --session-requests-per-minute 10
  agentpg limits set --tenant acme --tokens-per-day 0`,
	}
	f := cmd.Flags()
	rpm := f.Int("requests-per-minute", 0, "the tenant's model calls in any minute (`n`, 0: no limit)")
	tpd := f.Int64("tokens-per-day", 0, "the tenant's input and output tokens per UTC day (`n`, 0: no limit)")
	sessionRPM := f.Int("session-requests-per-minute", 0, "each session's model calls in any minute (`n`, 0: no limit)")
	sessionTPD := f.Int64("session-tokens-per-day", 0, "each session's input and output tokens per UTC day (`n`, 0: no limit)")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		if !f.Changed("requests-per-minute") && !f.Changed("tokens-per-day") &&
			!f.Changed("session-requests-per-minute") && !f.Changed("session-tokens-per-day") {
			return usageErrorf("give at least one limit to set, such as --requests-per-minute")
		}
		return c.limits(ctx, func(l *agentpg.TenantLimits) {
			if f.Changed("requests-per-minute") {
				l.RequestsPerMinute = *rpm
			}
			if f.Changed("tokens-per-day") {
				l.TokensPerDay = *tpd
			}
			if f.Changed("session-requests-per-minute") {
				l.PerSession.RequestsPerMinute = *sessionRPM
			}
			if f.Changed("session-tokens-per-day") {
				l.PerSession.TokensPerDay = *sessionTPD
			}
		})
	})
}

// usageDayView is a day's usage of a model, for --json.
type usageDayView struct {
	Day      string        `json:"day"`
	Model    string        `json:"model"`
	Requests int64         `json:"requests"`
	Usage    agentpg.Usage `json:"usage"`
	CostUSD  float64       `json:"cost_usd"`
	Priced   bool          `json:"priced"`
}

// usageHelp describes usage, for its help.
const usageHelp = `Show the tenant's usage of the last --days UTC days, today included, day by
day and model by model: model calls (compaction summaries included), tokens
and their cost in US dollars at AgentPG's default list prices, which may be out
of date ("-" for a model without a price). An application sets the prices it
pays with Config.Prices; agentpg cannot know them.

With --json, it prints an object: "tenant", "from" and "to" (UTC days),
"days", an array with "day", "model", "requests", "usage", "cost_usd" and
"priced"; and "total_cost_usd".`

// maxUsageDays bounds --days.
const maxUsageDays = 3660

// usageCmd returns "agentpg usage".
func (c *cli) usageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "show a tenant's model calls, tokens and cost per day",
		Long:  usageHelp,
		Example: `  agentpg usage --tenant acme
  agentpg usage --tenant acme --days 30 --json`,
	}
	days := cmd.Flags().Int("days", 7, "how many UTC days to show, today included (`n`)")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *days < 1 || *days > maxUsageDays {
			return usageErrorf("--days must be between 1 and %d, not %d", maxUsageDays, *days)
		}
		return c.usage(ctx, tenant, *days)
	})
}

// usage prints the tenant's usage of the last days UTC days.
func (c *cli) usage(ctx context.Context, tenant string, days int) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	to := time.Now().UTC()
	from := to.AddDate(0, 0, 1-days)
	rows, err := agent.TenantUsage(ctx, tenant, from, to)
	if err != nil {
		return flagError(err)
	}
	var total float64
	for _, r := range rows {
		total += r.Cost
	}
	if c.json {
		out := struct {
			Tenant       string         `json:"tenant"`
			From         string         `json:"from"`
			To           string         `json:"to"`
			Days         []usageDayView `json:"days"`
			TotalCostUSD float64        `json:"total_cost_usd"`
		}{tenant, from.Format(time.DateOnly), to.Format(time.DateOnly), []usageDayView{}, total}
		for _, r := range rows {
			out.Days = append(out.Days, usageDayView{r.Day.Format(time.DateOnly), r.Model, r.Requests, r.Usage, r.Cost, r.Priced})
		}
		return writeJSON(c.stdout, out)
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.stdout, "Tenant %s used no model from %s to %s (UTC).\n", quote(tenant),
			from.Format(time.DateOnly), to.Format(time.DateOnly))
		return nil
	}
	fmt.Fprintf(c.stdout, "Usage of tenant %s from %s to %s (UTC):\n", quote(tenant),
		from.Format(time.DateOnly), to.Format(time.DateOnly))
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY (UTC)\tMODEL\tMODEL CALLS\tINPUT\tOUTPUT\tCACHE READ\tCACHE WRITE\tCOST (USD)")
	for _, r := range rows {
		cost := "-"
		if r.Priced {
			cost = fmt.Sprintf("%.4f", r.Cost)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Day.Format(time.DateOnly), escapeLine(r.Model), r.Requests,
			r.Usage.InputTokens, r.Usage.OutputTokens, r.Usage.CacheReadInputTokens, r.Usage.CacheCreationInputTokens, cost)
	}
	fmt.Fprintf(tw, "total\t\t\t\t\t\t\t%.4f\n", total)
	return tw.Flush()
}
