package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// demoHelp describes the demo, for its usage.
const demoHelp = `Show AgentPG's persistence in a conversation of three prompts: tell the model
your name and ask a question; then load the session again, by its identifier
and with a new Agent, and ask for your name: the answer can only come from the
history stored in PostgreSQL. The answers stream in as they arrive. demo first
migrates the schema, then creates a session with a fresh identifier.`

// clusterHelp describes the throwaway cluster of the demo, for its usage.
const clusterHelp = `When neither --database-url nor DATABASE_URL is set and nothing answers at
` + defaultLocalServer + `, demo starts a throwaway cluster with the installed initdb and
postgres (as the OS user postgres when agentpg runs as root) in a temporary
directory, listening on a Unix socket there only, and removes it on exit.`

// The demo's conversation. The last prompt goes to the session loaded again
// by a new Agent.
const (
	demoSystemPrompt = "You are the assistant of the AgentPG demo. Answer in one or two short sentences."
	demoIntroduce    = "Hi! My name is Ada. Please remember it."
	demoQuestion     = "Why is it useful that this conversation is stored in PostgreSQL?"
	demoRecall       = "What is my name?"
)

// demoCmd returns "agentpg demo".
func (c *cli) demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "a three-prompt conversation that survives a reload",
		Long:  demoHelp + "\n\n" + clusterHelp + "\n\n" + claudeHelp,
	}
	model := c.modelFlag(cmd)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("demo")
		if err != nil {
			return err
		}
		return c.demo(ctx, tenant, *model)
	})
}

// demo runs the demonstration conversation in a new session of tenant.
func (c *cli) demo(ctx context.Context, tenant, model string) error {
	agent, cfg, db, release, err := c.modelAgent(ctx, true, agentpg.Config{Model: model, SystemPrompt: demoSystemPrompt})
	if err != nil {
		return err
	}
	defer release()
	if err := agent.Migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Migrated schema %q in %s.\n", c.schema, db.name)

	identifier := newIdentifier("demo")
	session, err := agent.NewSession(ctx, tenant, identifier, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Created session %s (id %s) of tenant %s.\n\n", identifier, session.ID, quote(tenant))
	for _, prompt := range []string{demoIntroduce, demoQuestion} {
		if err := c.demoAsk(ctx, session, prompt, leaseTTL(cfg)); err != nil {
			return err
		}
	}

	// The new Agent shares nothing with the first but the database.
	agent, err = agentpg.New(cfg)
	if err != nil {
		return err
	}
	session, err = agent.LoadSessionByIdentifier(ctx, tenant, identifier)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Loaded session %s again, by identifier, with a new Agent.\n\n", identifier)
	if err := c.demoAsk(ctx, session, demoRecall, leaseTTL(cfg)); err != nil {
		return err
	}

	t, err := loadTranscript(ctx, session, agentpg.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "The session holds %d stored messages.\n", len(t.Messages))
	printRuns(c.stdout, t.Runs)
	if db.cluster == nil {
		fmt.Fprintf(c.stdout, "\nSee it again with: %s\n", c.showCommand(session))
	}
	return nil
}

// demoAsk shows prompt and runs it in the session, streaming the answer.
func (c *cli) demoAsk(ctx context.Context, session *agentpg.Session, prompt string, leaseTTL time.Duration) error {
	fmt.Fprintf(c.stdout, "you: %s\n", prompt)
	if err := c.ask(ctx, session, prompt, leaseTTL); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	return nil
}
