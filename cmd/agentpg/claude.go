package main

import (
	"cmp"
	"fmt"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/spf13/cobra"
)

// defaultModel is the Claude model used without --model or ANTHROPIC_MODEL.
// (claude-sonnet-4-5 reached its end of life on 2026-11-30.)
const defaultModel = string(anthropic.ModelClaudeSonnet5_5)

// claudeHelp describes the choice of the model, for the usage of the
// commands that talk to it.
const claudeHelp = `ANTHROPIC_API_KEY lets agentpg talk to Claude. Without it, a built-in scripted
model answers instead, with canned answers derived from the conversation it is
sent. ANTHROPIC_MODEL sets the default of --model.`

// modelFlag defines the --model flag of cmd, whose default is
// ANTHROPIC_MODEL or defaultModel.
func (c *cli) modelFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("model", cmp.Or(c.getenv("ANTHROPIC_MODEL"), defaultModel), "Claude `model`")
}

// openClaude returns a client of Claude when ANTHROPIC_API_KEY is set.
// Without it, it says so on stderr and returns a client of the scripted
// model instead. stop releases the client.
func (c *cli) openClaude() (client *anthropic.Client, stop func(), err error) {
	if key := c.getenv("ANTHROPIC_API_KEY"); key != "" {
		// NewClient reads ANTHROPIC_API_KEY and the SDK's other settings
		// from the environment; the key is passed too so that c.getenv
		// decides, as it does everywhere else.
		claude := anthropic.NewClient(option.WithAPIKey(key))
		return &claude, func() {}, nil
	}
	srv, err := startScripted()
	if err != nil {
		return nil, nil, fmt.Errorf("starting the scripted model: %w", err)
	}
	fmt.Fprintln(c.stderr, "ANTHROPIC_API_KEY is not set: using the built-in scripted model (answers are canned).")
	return srv.Client(), srv.Close, nil
}
