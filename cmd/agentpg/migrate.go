package main

import (
	"context"
	"fmt"
)

// migrate creates or upgrades AgentPG's tables.
func (c *cli) migrate(ctx context.Context, args []string) error {
	fs := newFlagSet("migrate", "[flags]",
		"Create AgentPG's tables in the schema, or upgrade them. Running it again is harmless.", databaseHelp)
	schema := schemaFlag(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}

	agent, db, err := c.storageAgent(ctx, fs, *schema)
	if err != nil {
		return err
	}
	defer db.close()
	existed, err := schemaExists(ctx, db.pool, *schema)
	if err != nil {
		return err
	}
	if err := agent.Migrate(ctx); err != nil {
		return err
	}
	if existed {
		fmt.Fprintf(c.stdout, "Schema %q in %s: AgentPG's tables are up to date.\n", *schema, db.name)
	} else {
		fmt.Fprintf(c.stdout, "Created schema %q in %s with AgentPG's tables.\n", *schema, db.name)
	}
	return nil
}
