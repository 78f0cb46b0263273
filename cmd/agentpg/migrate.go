package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// migrateCmd returns "agentpg migrate".
func (c *cli) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "create or upgrade AgentPG's tables",
		Long:  "Create AgentPG's tables in the schema, or upgrade them. Running it again is harmless.",
	}
	return c.leaf(cmd, databaseFlags, c.migrate)
}

// migrate creates or upgrades AgentPG's tables.
func (c *cli) migrate(ctx context.Context) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	existed, err := schemaExists(ctx, db.pool, c.schema)
	if err != nil {
		return err
	}
	if err := agent.Migrate(ctx); err != nil {
		return err
	}
	if existed {
		fmt.Fprintf(c.stdout, "Schema %q in %s: AgentPG's tables are up to date.\n", c.schema, db.name)
	} else {
		fmt.Fprintf(c.stdout, "Created schema %q in %s with AgentPG's tables.\n", c.schema, db.name)
	}
	return nil
}
