package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg/internal/store"
)

// migrateHelp describes migrate, for its usage.
const migrateHelp = `Create AgentPG's tables in the schema, or upgrade them. Running it again is
harmless.

Run it as the role that is to own the tables. With --app-role, it then grants
the role NAME, which must exist, exactly the privileges the application needs
at run time, and revokes any other it held in the schema: the application
connects as NAME, which row-level security binds to one tenant per statement.
NAME must not be a superuser, have BYPASSRLS, or own the tables (or be a member
of their owner). Pass --app-role with every migrate, so that the tables of an
upgrade are granted too. See docs/deployment.md.`

// migrateCmd returns "agentpg migrate".
func (c *cli) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "create or upgrade AgentPG's tables",
		Long:  migrateHelp,
	}
	appRole := cmd.Flags().String("app-role", "", "grant the application role `NAME` what it needs at run time")
	return c.leaf(cmd, databaseFlags, func(ctx context.Context) error {
		if cmd.Flags().Changed("app-role") {
			if err := store.ValidateRoleName(*appRole); err != nil {
				return usageErrorf("--app-role: %v", err)
			}
		}
		return c.migrate(ctx, *appRole)
	})
}

// migrate creates or upgrades AgentPG's tables, and grants appRole, unless
// "", its privileges.
func (c *cli) migrate(ctx context.Context, appRole string) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	st, err := store.New(db.pool, c.schema)
	if err != nil {
		return err
	}
	existed, err := st.SchemaExists(ctx)
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
	if appRole == "" {
		return nil
	}
	if err := agent.GrantAppRole(ctx, appRole); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Granted role %q what the application needs in schema %q, and nothing more.\n", appRole, c.schema)
	return nil
}
