package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/keys"
)

// keysEnv is the environment variable that holds the key-encryption keys
// (keys.FromEnv).
const keysEnv = "AGENTPG_KEYS"

// keys returns the key-encryption keys of AGENTPG_KEYS, or nil when it is
// not set: content is then stored, and read, in plaintext.
func (c *cli) keys() (keys.Provider, error) {
	value := c.getenv(keysEnv)
	if value == "" {
		return nil, nil
	}
	p, err := keys.Parse(value)
	if err != nil {
		return nil, &usageError{fmt.Errorf("%s: %w", keysEnv, err)}
	}
	return p, nil
}

// keysCmd returns "agentpg keys" and its subcommands.
func (c *cli) keysCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "keys",
		Short: "show and rotate the keys that encrypt content at rest",
		Long: `With AGENTPG_KEYS set ("id1:base64,id2:base64", the last one current; make a key
with: head -c 32 /dev/urandom | base64), every agentpg command, and every
Agent with Config.Keys, stores content encrypted under per-tenant data keys
that those key-encryption keys wrap (docs/encryption.md).`,
	})
	cmd.AddCommand(c.keysStatusCmd(), c.keysRotateCmd())
	return cmd
}

// keysStatusCmd returns "agentpg keys status".
func (c *cli) keysStatusCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show each tenant's data keys, their age and the rows they seal",
		Long: `Show the data keys of --tenant, or with --all of every tenant with a key or a
session: each version, the key-encryption key that wraps it, its age, whether
the rotation onto it finished, and how many rows it seals; and the rows still
in plaintext (written before AGENTPG_KEYS was set: "keys rotate" encrypts
them). It needs no keys.`,
		Example: `  agentpg keys status --tenant acme
  agentpg keys status --all --json`,
	}
	cmd.Flags().BoolVar(&all, "all", false, "every tenant")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		agent, db, tenants, err := c.keyTenants(ctx, all)
		if err != nil {
			return err
		}
		defer db.close()
		statuses := make([]agentpg.KeyStatus, 0, len(tenants))
		for _, tenant := range tenants {
			st, err := agent.KeyStatus(ctx, tenant)
			if err != nil {
				return flagError(err)
			}
			statuses = append(statuses, st)
		}
		if c.json {
			return writeJSON(c.stdout, statuses)
		}
		w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "TENANT\tVERSION\tKEK\tAGE\tROTATED\tROWS")
		for _, st := range statuses {
			for _, k := range st.Keys {
				rotated := "no (rotation unfinished: run keys rotate)"
				if k.RotatedAt != nil {
					rotated = "yes"
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\n", st.TenantID, k.Version, k.KEKID,
					time.Since(k.CreatedAt).Round(time.Second), rotated, k.Rows)
			}
			if st.PlaintextRows > 0 || len(st.Keys) == 0 {
				fmt.Fprintf(w, "%s\tplaintext\t-\t-\t-\t%d\n", st.TenantID, st.PlaintextRows)
			}
		}
		return w.Flush()
	})
}

// keysRotateCmd returns "agentpg keys rotate".
func (c *cli) keysRotateCmd() *cobra.Command {
	var all, rewrapOnly bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "give tenants new data keys and re-encrypt their rows",
		Long: `Give --tenant (or with --all every tenant with a key or a session) a new data
key and re-encrypt its rows with it, in batches, while runs go on; rows still
in plaintext are encrypted too. Data keys wrapped by another key-encryption
key than the current one (the last of AGENTPG_KEYS) are re-wrapped first:
after appending a new key to AGENTPG_KEYS, this is the whole rotation of the
key-encryption key. It prints its progress. Killed, it leaves every row
readable, and running it again finishes the same rotation. With --rewrap-only
it only re-wraps data keys under the current key-encryption key, touching no
content: a rotation of the key-encryption key alone, done in seconds.`,
		Example: `  AGENTPG_KEYS="k2026a:...,k2026b:..." agentpg keys rotate --all
  AGENTPG_KEYS="k2026a:...,k2026b:..." agentpg keys rotate --all --rewrap-only`,
	}
	cmd.Flags().BoolVar(&all, "all", false, "every tenant")
	cmd.Flags().BoolVar(&rewrapOnly, "rewrap-only", false, "re-wrap data keys under the current key-encryption key, re-encrypt nothing")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		if c.getenv(keysEnv) == "" {
			return usageErrorf("%s is not set: there are no keys to rotate to", keysEnv)
		}
		agent, db, tenants, err := c.keyTenants(ctx, all)
		if err != nil {
			return err
		}
		defer db.close()
		rotated := map[string]int{}
		for _, tenant := range tenants {
			if rewrapOnly {
				n, err := agent.RewrapKeys(ctx, tenant)
				if err != nil {
					return err
				}
				rotated[tenant] = n
				if !c.json {
					fmt.Fprintf(c.stdout, "%s: %s re-wrapped.\n", tenant, count(n, "data key"))
				}
				continue
			}
			n, err := agent.RotateKeysProgress(ctx, tenant, func(rows int) {
				if !c.json {
					fmt.Fprintf(c.stdout, "%s: %d rows re-encrypted\n", tenant, rows)
				}
			})
			if err != nil {
				return err
			}
			rotated[tenant] = n
			if !c.json {
				fmt.Fprintf(c.stdout, "%s: rotated (%d rows).\n", tenant, n)
			}
		}
		if c.json {
			return writeJSON(c.stdout, rotated)
		}
		return nil
	})
}

// keyTenants opens the storage agent and returns the tenants a keys
// command visits: --tenant, or with all every tenant with a key or a
// session.
func (c *cli) keyTenants(ctx context.Context, all bool) (*agentpg.Agent, *database, []string, error) {
	if all == c.tenantSet {
		return nil, nil, nil, usageErrorf("give --tenant or --all")
	}
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if !all {
		return agent, db, []string{c.tenant}, nil
	}
	tenants, err := agent.KeyTenants(ctx)
	if err != nil {
		db.close()
		return nil, nil, nil, err
	}
	return agent, db, tenants, nil
}
