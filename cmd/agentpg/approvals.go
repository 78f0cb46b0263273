package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// The statuses of the tool ledger that approvals work with.
const (
	callAwaitingApproval = "awaiting_approval"
	callApproved         = "approved"
)

// approvalsCmd returns "agentpg approvals" and its subcommands.
func (c *cli) approvalsCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "approvals",
		Short: "list the tool calls awaiting approval, approve or deny one",
		Long: `Decide the tool calls that wait for a person: those of the tools an application
names in Config.ApprovalRequired. A run whose model calls one pauses, its
session released, until every such call of the step is approved or denied;
then "agentpg runs resume", or a worker of the application, continues it.`,
	})
	cmd.AddCommand(c.approvalsListCmd(), c.decideCmd(true), c.decideCmd(false))
	return cmd
}

// pendingView is a tool call awaiting approval, for --json.
type pendingView struct {
	ToolUseID string          `json:"tool_use_id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

// approvalsListHelp describes approvals list, for its help.
const approvalsListHelp = `List the tenant's runs awaiting approval, oldest first, a page of runs at a
time, each with its session and the tool calls that wait for a decision: the
tool's name, the tool_use id (for --call) and the input the model gave it,
cut at 2000 bytes.

With --json, it prints an object: "runs", an array of runs as runs list --json
prints them, each with "session_identifier" and "pending", the calls awaiting
approval, each with "tool_use_id", "name" and "input"; and "next", the cursor
of the next page, "" on the last.`

// approvalsListCmd returns "agentpg approvals list".
func (c *cli) approvalsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "list the runs awaiting approval and their pending tool calls",
		Long:    approvalsListHelp,
		Example: `  agentpg approvals list --tenant acme`,
	}
	page := pageFlags(cmd, "runs", 20)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		opts, err := page()
		if err != nil {
			return err
		}
		return c.approvalsList(ctx, tenant, opts)
	})
}

// approvalsList lists the page of the tenant's runs awaiting approval that
// opts selects, with their pending calls.
func (c *cli) approvalsList(ctx context.Context, tenant string, opts agentpg.ListOptions) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	page, err := agent.ListRuns(ctx, tenant, agentpg.RunFilter{Status: agentpg.RunAwaitingApproval}, opts)
	if err != nil {
		return flagError(err)
	}
	type runPending struct {
		runInfoView
		SessionIdentifier string        `json:"session_identifier"`
		Pending           []pendingView `json:"pending"`
	}
	out := struct {
		Runs []runPending `json:"runs"`
		Next string       `json:"next"`
	}{[]runPending{}, page.Next}
	for _, r := range page.Items {
		session, err := agent.LoadSession(ctx, tenant, r.SessionID)
		if err != nil {
			return fmt.Errorf("loading the session of run %s: %w", escapeLine(r.ID), err)
		}
		ledger, err := session.ToolCalls(ctx, r.ID)
		if err != nil {
			return fmt.Errorf("reading the tool calls of run %s: %w", escapeLine(r.ID), err)
		}
		rp := runPending{newRunInfoView(r), session.Identifier, []pendingView{}}
		for _, tc := range ledger {
			if tc.Status == callAwaitingApproval {
				rp.Pending = append(rp.Pending, pendingView{tc.ToolUseID, tc.Name, newLedgerView(tc).Input})
			}
		}
		out.Runs = append(out.Runs, rp)
	}
	if c.json {
		return writeJSON(c.stdout, out)
	}
	if len(out.Runs) == 0 {
		fmt.Fprintf(c.stdout, "No run of tenant %s awaits approval.\n", quote(tenant))
		return nil
	}
	for i, r := range out.Runs {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "Run %s, session %s (%s), since %s: ",
			escapeLine(r.ID), escapeLine(r.SessionIdentifier), escapeLine(r.SessionID), formatTime(r.CreatedAt))
		if len(r.Pending) == 0 {
			fmt.Fprintf(c.stdout, "every call decided; \"agentpg runs resume --id %s\", or a worker of the application, continues it\n", escapeLine(r.ID))
			continue
		}
		fmt.Fprintf(c.stdout, "%s awaiting approval\n", count(len(r.Pending), "tool call"))
		for _, p := range r.Pending {
			fmt.Fprintf(c.stdout, "  %s, --call %s, input:\n", escapeLine(p.Name), escapeLine(p.ToolUseID))
			printShown(c.stdout, blockIndent, string(p.Input))
		}
	}
	fmt.Fprintln(c.stdout, "\nDecide with: agentpg approvals approve|deny --run <run> --call <tool_use id> [--note <text>]")
	printNext(c.stdout, "runs", page.Next)
	return nil
}

// decideCmd returns "agentpg approvals approve", or with approve false
// "agentpg approvals deny".
func (c *cli) decideCmd(approve bool) *cobra.Command {
	verb, long := "approve", `Approve a tool call awaiting approval: the call runs when the run is resumed.
--note says who decided and why; it is stored in the tool ledger.`
	if !approve {
		verb, long = "deny", `Deny a tool call awaiting approval: it does not run, and the model is told that
a person denied it, with --note, when the run is resumed. Give a --note (who
decided, and why): it is all the model learns of the reason.`
	}
	long += `

Once every pending call of the run is decided, "agentpg runs resume --id <run>"
(or a worker of the application) continues the run. agentpg cannot run the
application's tools: a run with approved calls is best resumed by the
application.`
	cmd := &cobra.Command{
		Use:     verb + " --run <run> --call <tool_use id>",
		Short:   verb + " a tool call awaiting approval",
		Long:    long,
		Example: "  agentpg approvals " + verb + " --tenant acme --run 0190f0e4-... --call toolu_01A... --note \"alice: checked with the customer\"",
	}
	runID := cmd.Flags().String("run", "", "the `id` of the run")
	call := cmd.Flags().String("call", "", "the tool_use `id` of the call, as approvals list prints it")
	note := cmd.Flags().String("note", "", "who decided and why, as `text` (reaches the model on deny)")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *runID == "" {
			return usageErrorf("--run is required")
		}
		if *call == "" {
			return usageErrorf("--call is required")
		}
		return c.decide(ctx, tenant, *runID, *call, approve, *note)
	})
}

// decide approves or denies the call of the tenant's run, with note, and
// tells what is next.
func (c *cli) decide(ctx context.Context, tenant, runID, call string, approve bool, note string) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	// The library lets the calls of a run that ended be decided, to no
	// effect: refuse, rather than report a decision that changes nothing.
	run, err := agent.GetRun(ctx, tenant, runID)
	if errors.Is(err, agentpg.ErrRunNotFound) {
		return runNotFound(tenant, runID)
	}
	if err != nil {
		return flagError(err)
	}
	switch run.Status {
	case agentpg.RunCompleted, agentpg.RunFailed, agentpg.RunCancelled:
		return fmt.Errorf("run %s has ended (%s): its tool calls are no longer awaiting approval", escapeLine(runID), escapeLine(run.Status))
	}
	err = agent.DecideToolCall(ctx, tenant, runID, call, approve, note)
	if errors.Is(err, agentpg.ErrRunNotFound) || errors.Is(err, agentpg.ErrNotPending) {
		return decideError(ctx, agent, tenant, runID, call, err)
	}
	if err != nil {
		return flagError(err)
	}
	decided := "Approved"
	if !approve {
		decided = "Denied"
	}
	fmt.Fprintf(c.stdout, "%s tool call %s of run %s.\n", decided, escapeLine(call), escapeLine(runID))
	if !approve && strings.TrimSpace(note) == "" {
		fmt.Fprintln(c.stderr, "No --note: the model is told only that a person denied the call.")
	}

	_, _, ledger, err := loadRun(ctx, agent, tenant, runID)
	if err != nil {
		return err
	}
	var pending, approved int
	for _, tc := range ledger {
		switch tc.Status {
		case callAwaitingApproval:
			pending++
		case callApproved:
			approved++
		}
	}
	if pending > 0 {
		fmt.Fprintf(c.stdout, "Run %s has %s still awaiting a decision.\n", escapeLine(runID), count(pending, "tool call"))
		return nil
	}
	fmt.Fprintf(c.stdout, "Every pending call of run %s is decided: \"agentpg runs resume --tenant %s --id %s\", or a worker of the application, continues it.\n",
		escapeLine(runID), escapeLine(tenant), escapeLine(runID))
	if approved > 0 {
		fmt.Fprintln(c.stdout, "(agentpg cannot run the application's tools: to run the approved calls, resume it from the application.)")
	}
	return nil
}

// decideError tells why deciding call of the tenant's run failed with err,
// ErrRunNotFound or ErrNotPending: no such run, no such call, or a call
// that does not wait for a decision.
func decideError(ctx context.Context, agent *agentpg.Agent, tenant, runID, call string, err error) error {
	_, _, ledger, lerr := loadRun(ctx, agent, tenant, runID)
	if lerr != nil {
		return lerr // the run is not found, most likely
	}
	for _, tc := range ledger {
		if tc.ToolUseID != call {
			continue
		}
		if errors.Is(err, agentpg.ErrNotPending) {
			return fmt.Errorf("tool call %s of run %s is not awaiting approval: it is %s", escapeLine(call), escapeLine(runID), escapeLine(tc.Status))
		}
		break
	}
	if errors.Is(err, agentpg.ErrNotPending) {
		return fmt.Errorf("tool call %s of run %s is not awaiting approval", escapeLine(call), escapeLine(runID))
	}
	return fmt.Errorf("run %s has no tool call %s", escapeLine(runID), escapeLine(call))
}
