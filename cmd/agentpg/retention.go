package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// retentionCmd returns "agentpg retention" and its subcommands.
func (c *cli) retentionCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "retention",
		Short: "set, show and apply how long each tenant's data is kept",
		Long: `Retention policies say how long a tenant's data is kept: sessions not updated
for a period (with everything stored under them), messages compaction
archived, and the events of runs that ended. The default policy applies to
tenants without one of their own; a tenant's policy replaces it as a whole.
Workers ("agentpg serve") apply the policies every hour; "agentpg retention
run" applies them now.`,
	})
	cmd.AddCommand(c.retentionSetCmd(), c.retentionShowCmd(), c.retentionRunCmd())
	return cmd
}

// retentionSetCmd returns "agentpg retention set".
func (c *cli) retentionSetCmd() *cobra.Command {
	var sessions, archive, events string
	var asDefault, guide bool
	cmd := &cobra.Command{
		Use:   "set",
		Short: "set a tenant's retention policy, or the default",
		Long: `Set the retention policy of --tenant, or with --default the policy of every
tenant without one of its own. Periods are Go durations ("36h") or days
("90d"); 0, or a period not given, keeps that data forever. --guide sets the
security guide's policy: sessions 90 days, archive 30 days.`,
		Example: `  agentpg retention set --default --guide
  agentpg retention set --tenant acme --sessions 30d --archive 7d --run-events 1d`,
	}
	f := cmd.Flags()
	f.StringVar(&sessions, "sessions", "0", "keep sessions not updated for this long (`period`)")
	f.StringVar(&archive, "archive", "0", "keep archived messages this long (`period`)")
	f.StringVar(&events, "run-events", "0", "keep the events of ended runs this long (`period`)")
	f.BoolVar(&asDefault, "default", false, "set the default policy instead of a tenant's")
	f.BoolVar(&guide, "guide", false, "the security guide's policy: sessions 90d, archive 30d")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant := ""
		if !asDefault {
			var err error
			if tenant, err = c.tenantOr(""); err != nil {
				return usageErrorf("--tenant or --default is required")
			}
		} else if c.tenantSet {
			return usageErrorf("--default and --tenant exclude each other")
		}
		p := agentpg.GuideRetention
		if !guide {
			var err error
			if p, err = parsePolicy(sessions, archive, events); err != nil {
				return err
			}
		} else if f.Changed("sessions") || f.Changed("archive") || f.Changed("run-events") {
			return usageErrorf("--guide sets every period")
		}
		agent, db, err := c.storageAgent(ctx)
		if err != nil {
			return err
		}
		defer db.close()
		if err := agent.SetRetention(ctx, tenant, p); err != nil {
			return flagError(err)
		}
		fmt.Fprintf(c.stdout, "Retention of %s: %s.\n", policyOwner(tenant), describePolicy(p))
		return nil
	})
}

// retentionShowCmd returns "agentpg retention show".
func (c *cli) retentionShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "show the retention policies",
		Long: `Show the default retention policy and every tenant's own. With --json, an
object by tenant ("" is the default), each with "sessions", "archive" and
"run_events" in seconds, 0 for forever.`,
	}
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagJSON}, func(ctx context.Context) error {
		agent, db, err := c.storageAgent(ctx)
		if err != nil {
			return err
		}
		defer db.close()
		policies, err := agent.RetentionPolicies(ctx)
		if err != nil {
			return err
		}
		if c.json {
			type view struct {
				Sessions  float64 `json:"sessions"`
				Archive   float64 `json:"archive"`
				RunEvents float64 `json:"run_events"`
			}
			out := map[string]view{}
			for tenant, p := range policies {
				out[tenant] = view{p.Sessions.Seconds(), p.Archive.Seconds(), p.RunEvents.Seconds()}
			}
			return writeJSON(c.stdout, out)
		}
		if _, ok := policies[""]; !ok {
			fmt.Fprintln(c.stdout, "No default policy: tenants without one of their own keep everything.")
		}
		for _, tenant := range slices.Sorted(maps.Keys(policies)) {
			fmt.Fprintf(c.stdout, "%s: %s\n", policyOwner(tenant), describePolicy(policies[tenant]))
		}
		return nil
	})
}

// retentionRunCmd returns "agentpg retention run".
func (c *cli) retentionRunCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "delete what the retention policies say has expired, now",
		Long: `Delete, for every tenant, what its retention policy (or the default) says has
expired, in batches, and print how much went, by tenant. With --dry-run it
prints what would go and deletes nothing. Several processes may run it at
once: each skips what another is deleting.`,
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be deleted, delete nothing")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagJSON}, func(ctx context.Context) error {
		agent, db, err := c.storageAgent(ctx)
		if err != nil {
			return err
		}
		defer db.close()
		apply := agent.ApplyRetention
		if dryRun {
			apply = agent.PreviewRetention
		}
		report, err := apply(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.stdout, report)
		}
		verb := "Deleted"
		if dryRun {
			verb = "Would delete"
		}
		fmt.Fprintf(c.stdout, "%s %s.\n", verb, describeCounts(report.RetentionCounts))
		for _, tenant := range slices.Sorted(maps.Keys(report.Tenants)) {
			fmt.Fprintf(c.stdout, "  %s: %s\n", quote(tenant), describeCounts(report.Tenants[tenant]))
		}
		return nil
	})
}

// parsePolicy parses the periods of retention set.
func parsePolicy(sessions, archive, events string) (agentpg.RetentionPolicy, error) {
	var p agentpg.RetentionPolicy
	for _, f := range []struct {
		flag, value string
		into        *time.Duration
	}{{"--sessions", sessions, &p.Sessions}, {"--archive", archive, &p.Archive}, {"--run-events", events, &p.RunEvents}} {
		d, err := parsePeriod(f.value)
		if err != nil {
			return p, usageErrorf("%s: %v", f.flag, err)
		}
		*f.into = d
	}
	return p, nil
}

// parsePeriod parses a Go duration, or a whole number of days ("90d").
func parsePeriod(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a period such as 90d or 36h", s)
	}
	return d, nil
}

// policyOwner names whose policy it is.
func policyOwner(tenant string) string {
	if tenant == "" {
		return "the default"
	}
	return "tenant " + quote(tenant)
}

// describePolicy describes p for people.
func describePolicy(p agentpg.RetentionPolicy) string {
	return fmt.Sprintf("sessions %s, archive %s, run events %s", period(p.Sessions), period(p.Archive), period(p.RunEvents))
}

// period describes a retention period: in days when it is whole days.
func period(d time.Duration) string {
	switch {
	case d == 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return count(int(d/(24*time.Hour)), "day")
	}
	return d.String()
}

// describeCounts describes what retention deletes.
func describeCounts(c agentpg.RetentionCounts) string {
	return fmt.Sprintf("%s, %s, %s", count(int(c.Sessions), "session"),
		count(int(c.ArchivedMessages), "archived message"), count(int(c.RunEvents), "run event"))
}
