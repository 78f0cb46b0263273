package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// eraseCmd returns "agentpg erase".
func (c *cli) eraseCmd() *cobra.Command {
	var identifier string
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:   "erase",
		Short: "delete everything of a tenant, or of one end user of it",
		Long: `Delete every row of --tenant: its sessions with their messages, archive, runs,
tool calls, events and nested agents' sessions, and its settings. With
--identifier, only the session of that end user and what is stored under
it. Runs still going fail at their next write.

It prints what it deletes; with --dry-run it deletes nothing, and without
--yes it only prints what it would delete.`,
		Example: `  agentpg erase --tenant acme --identifier user-42 --dry-run
  agentpg erase --tenant acme --identifier user-42 --yes`,
	}
	cmd.Flags().StringVar(&identifier, "identifier", "", "the end user's session `identifier`")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	cmd.Flags().BoolVar(&yes, "yes", false, "delete: without it, only print what would be deleted")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		agent, db, err := c.storageAgent(ctx)
		if err != nil {
			return err
		}
		defer db.close()
		counts, err := agent.PreviewErasure(ctx, tenant, identifier)
		if err != nil {
			return flagError(err)
		}
		erase := yes && !dryRun
		if erase {
			if identifier != "" {
				err = agent.EraseIdentifier(ctx, tenant, identifier)
			} else {
				err = agent.EraseTenant(ctx, tenant)
			}
			if err != nil {
				return flagError(err)
			}
		}
		if c.json {
			return writeJSON(c.stdout, struct {
				Erased bool                  `json:"erased"`
				Counts agentpg.ErasureCounts `json:"counts"`
			}{erase, counts})
		}
		whose := "tenant " + quote(tenant)
		if identifier != "" {
			whose = "identifier " + quote(identifier) + " of " + whose
		}
		verb := "Erased"
		if !erase {
			verb = "Would erase"
		}
		fmt.Fprintf(c.stdout, "%s %s: %s, %s, %s, %s, %s, %s.\n", verb, whose,
			count(int(counts.Sessions), "session"), count(int(counts.Messages), "message"),
			count(int(counts.ArchivedMessages), "archived message"), count(int(counts.Runs), "run"),
			count(int(counts.ToolCalls), "tool call"), count(int(counts.RunEvents), "run event"))
		if !erase && !dryRun {
			fmt.Fprintln(c.stdout, "Nothing was deleted: add --yes to erase.")
		}
		return nil
	})
}
