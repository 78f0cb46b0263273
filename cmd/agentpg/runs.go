package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/tool"
)

// runStatuses are the statuses of a run, for --status.
var runStatuses = []string{
	agentpg.RunQueued, agentpg.RunRunning, agentpg.RunAwaitingApproval,
	agentpg.RunCompleted, agentpg.RunFailed, agentpg.RunCancelled,
}

// runsCmd returns "agentpg runs" and its subcommands.
func (c *cli) runsCmd() *cobra.Command {
	cmd := c.group(&cobra.Command{
		Use:   "runs",
		Short: "list a tenant's runs, show, cancel or resume one",
		Long: `Inspect and steer the runs stored in the schema, tenant by tenant: list them,
show one with its tool calls and events, cancel one, or resume one that was
interrupted or whose tool calls were all approved or denied.`,
	})
	cmd.AddCommand(c.runsListCmd(), c.runsShowCmd(), c.runsCancelCmd(), c.runsResumeCmd())
	return cmd
}

// runInfoView is a run, for --json.
type runInfoView struct {
	ID          string        `json:"id"`
	SessionID   string        `json:"session_id"`
	ParentRunID string        `json:"parent_run_id,omitempty"`
	Status      string        `json:"status"`
	Stuck       bool          `json:"stuck"`
	Model       string        `json:"model"`
	StopReason  string        `json:"stop_reason"`
	Error       string        `json:"error"`
	ErrorClass  string        `json:"error_class"`
	Iterations  int           `json:"iterations"`
	Usage       agentpg.Usage `json:"usage"`
	CreatedAt   time.Time     `json:"created_at"`
	StartedAt   *time.Time    `json:"started_at"`
	FinishedAt  *time.Time    `json:"finished_at"`
}

// newRunInfoView returns the view of r.
func newRunInfoView(r agentpg.RunInfo) runInfoView {
	return runInfoView{ID: r.ID, SessionID: r.SessionID, ParentRunID: r.ParentRunID, Status: r.Status, Stuck: r.Stuck,
		Model: r.Model, StopReason: r.StopReason, Error: r.Error, ErrorClass: r.ErrorClass, Iterations: r.Iterations,
		Usage: r.Usage, CreatedAt: r.CreatedAt, StartedAt: timeOrNil(r.StartedAt), FinishedAt: timeOrNil(r.FinishedAt)}
}

// timeOrNil returns &t, or nil for the zero time, which JSON shows as null.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// formatTimeOr formats t, or returns none for the zero time.
func formatTimeOr(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return formatTime(t)
}

// runStatus returns the status of r as shown in text: with "stuck" for a
// running run that no process holds.
func runStatus(r agentpg.RunInfo) string {
	if r.Stuck {
		return r.Status + " (stuck)"
	}
	return r.Status
}

// runsListHelp describes runs list, for its help.
const runsListHelp = `List the tenant's runs, oldest first, a page at a time: when more follow, the
last line gives the --after cursor of the next page. --status keeps the runs in
one status: ` + "queued, running, awaiting_approval, completed, failed or cancelled" + `;
--stuck keeps the running runs that no process holds (their process went away):
"agentpg runs resume" continues one.

With --json, it prints an object: "runs", an array of runs, each with "id",
"session_id", "parent_run_id" (for the run of an agent called as a tool),
"status", "stuck", "model", "stop_reason", "error", "error_class",
"iterations", "usage", "created_at", "started_at" (null while queued) and
"finished_at" (null until it ends); and "next", the cursor of the next page,
"" on the last.`

// runsListCmd returns "agentpg runs list".
func (c *cli) runsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list a tenant's runs, oldest first",
		Long:  runsListHelp,
		Example: `  agentpg runs list --tenant acme --status failed
  agentpg runs list --tenant acme --stuck --json`,
	}
	status := cmd.Flags().String("status", "", "list only the runs in this `status`")
	stuck := cmd.Flags().Bool("stuck", false, "list only the running runs that no process holds")
	page := pageFlags(cmd, "runs", 20)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *status != "" && !slices.Contains(runStatuses, *status) {
			return usageErrorf("--status must be one of %s, not %q", strings.Join(runStatuses, ", "), *status)
		}
		if *stuck {
			if *status != "" && *status != agentpg.RunRunning {
				return usageErrorf("--stuck lists running runs: it does not go with --status %s", *status)
			}
			*status = agentpg.RunRunning
		}
		opts, err := page()
		if err != nil {
			return err
		}
		return c.runsList(ctx, tenant, agentpg.RunFilter{Status: *status}, *stuck, opts)
	})
}

// runsList lists the page of the tenant's runs that filter and opts
// select; with stuck, only those no process holds.
func (c *cli) runsList(ctx context.Context, tenant string, filter agentpg.RunFilter, stuck bool, opts agentpg.ListOptions) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	page, err := agent.ListRuns(ctx, tenant, filter, opts)
	if err != nil {
		return flagError(err)
	}
	runs := page.Items
	if stuck {
		runs = slices.DeleteFunc(runs, func(r agentpg.RunInfo) bool { return !r.Stuck })
	}
	if c.json {
		out := struct {
			Runs []runInfoView `json:"runs"`
			Next string        `json:"next"`
		}{[]runInfoView{}, page.Next}
		for _, r := range runs {
			out.Runs = append(out.Runs, newRunInfoView(r))
		}
		return writeJSON(c.stdout, out)
	}
	if len(runs) == 0 {
		if page.Next == "" {
			fmt.Fprintf(c.stdout, "Tenant %s has no such runs.\n", quote(tenant))
		} else {
			fmt.Fprintln(c.stdout, "No such runs on this page.")
		}
		printNext(c.stdout, "runs", page.Next)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSESSION\tSTATUS\tMODEL\tMODEL CALLS\tTOKENS\tSTARTED\tERROR CLASS")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
			escapeLine(r.ID), escapeLine(r.SessionID), escapeLine(runStatus(r)), escapeLine(r.Model), r.Iterations,
			r.Usage.InputTokens+r.Usage.OutputTokens, formatTimeOr(r.StartedAt, "-"), escapeLine(cmp.Or(r.ErrorClass, "-")))
	}
	tw.Flush()
	printNext(c.stdout, "runs", page.Next)
	return nil
}

// ledgerView is a row of the tool ledger, for --json.
type ledgerView struct {
	ToolUseID    string          `json:"tool_use_id"`
	Name         string          `json:"name"`
	Status       string          `json:"status"`
	Input        json.RawMessage `json:"input"`
	Output       string          `json:"output"`
	IsError      bool            `json:"is_error"`
	DecisionNote string          `json:"decision_note"`
	StartedAt    *time.Time      `json:"started_at"`
	FinishedAt   *time.Time      `json:"finished_at"`
}

// newLedgerView returns the view of the ledger row tc.
func newLedgerView(tc agentpg.ToolCall) ledgerView {
	input := tc.Input
	if len(input) == 0 {
		input = json.RawMessage("null")
	}
	return ledgerView{tc.ToolUseID, tc.Name, tc.Status, input, tc.Output, tc.IsError, tc.DecisionNote,
		timeOrNil(tc.StartedAt), timeOrNil(tc.FinishedAt)}
}

// runsShowHelp describes runs show, for its help.
const runsShowHelp = `Show a run of the tenant: its status, model, usage and times, and its tool
ledger: each tool call with its status (started, completed, awaiting_approval,
approved or denied), input, output and the note of the person who decided it.
Inputs and outputs are cut at 2000 bytes.

--follow then prints the run's events, from its first, as they happen, until
it ends: text, tool calls and results, approvals, retries, and the end. A run
awaiting approval ends only once its calls are decided and it is resumed;
interrupt agentpg to stop following.

With --json, it prints an object: "run", as runs list --json prints a run, and
"tool_calls", the ledger, each with "tool_use_id", "name", "status", "input",
"output", "is_error", "decision_note", "started_at" and "finished_at" (null
when not yet). With --json and --follow, it prints the events only, one JSON
object a line, each with "seq", "kind" and the fields of its kind: "text",
"tool_use_id", "tool_name", "input", "is_error", "status", "stop_reason",
"error", "usage". Nothing is cut in JSON.`

// runsShowCmd returns "agentpg runs show".
func (c *cli) runsShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show --id <run>",
		Short: "show a run with its tool calls, or follow its events",
		Long:  runsShowHelp,
		Example: `  agentpg runs show --tenant acme --id 0190f0e4-...
  agentpg runs show --tenant acme --id 0190f0e4-... --follow`,
	}
	id := cmd.Flags().String("id", "", "the run's `id`")
	follow := cmd.Flags().Bool("follow", false, "print the run's events until it ends")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant, flagJSON}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *id == "" {
			return usageErrorf("--id is required")
		}
		return c.runsShow(ctx, tenant, *id, *follow)
	})
}

// runNotFound is the error for a run that the tenant does not have.
func runNotFound(tenant, id string) error {
	return fmt.Errorf("tenant %s has no run %s", quote(tenant), escapeLine(id))
}

// loadRun returns the tenant's run id, its session and its tool ledger.
func loadRun(ctx context.Context, agent *agentpg.Agent, tenant, id string) (*agentpg.RunInfo, *agentpg.Session, []agentpg.ToolCall, error) {
	run, err := agent.GetRun(ctx, tenant, id)
	if errors.Is(err, agentpg.ErrRunNotFound) {
		return nil, nil, nil, runNotFound(tenant, id)
	}
	if err != nil {
		return nil, nil, nil, flagError(err)
	}
	session, err := agent.LoadSession(ctx, tenant, run.SessionID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading the session of run %s: %w", escapeLine(id), err)
	}
	ledger, err := session.ToolCalls(ctx, run.ID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the tool calls of run %s: %w", escapeLine(id), err)
	}
	return run, session, ledger, nil
}

// runsShow shows the tenant's run id and its ledger, then, with follow,
// its events.
func (c *cli) runsShow(ctx context.Context, tenant, id string, follow bool) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	run, session, ledger, err := loadRun(ctx, agent, tenant, id)
	if err != nil {
		return err
	}
	switch {
	case c.json && follow:
	case c.json:
		out := struct {
			Run       runInfoView  `json:"run"`
			ToolCalls []ledgerView `json:"tool_calls"`
		}{newRunInfoView(*run), []ledgerView{}}
		for _, tc := range ledger {
			out.ToolCalls = append(out.ToolCalls, newLedgerView(tc))
		}
		return writeJSON(c.stdout, out)
	default:
		printRunInfo(c.stdout, run, session)
		fmt.Fprintln(c.stdout)
		printLedger(c.stdout, ledger)
	}
	if !follow {
		return nil
	}
	if !c.json {
		fmt.Fprintln(c.stdout, "\nEvents:")
	}
	for e, err := range agent.RunEvents(ctx, tenant, run.ID, 0) {
		if err != nil {
			return fmt.Errorf("following run %s: %w", escapeLine(run.ID), err)
		}
		if c.json {
			if err := writeEventJSON(c.stdout, e); err != nil {
				return err
			}
		} else {
			printEvent(c.stdout, e)
		}
	}
	return nil
}

// printRunInfo prints run, of session, a field a line.
func printRunInfo(w io.Writer, run *agentpg.RunInfo, session *agentpg.Session) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Run\t%s\nSession\t%s (%s)\nStatus\t%s\n", escapeLine(run.ID),
		escapeLine(session.Identifier), escapeLine(session.ID), escapeLine(runStatus(*run)))
	if run.ParentRunID != "" {
		fmt.Fprintf(tw, "Parent run\t%s\n", escapeLine(run.ParentRunID))
	}
	fmt.Fprintf(tw, "Model\t%s\nStop reason\t%s\nModel calls\t%d\n", escapeLine(run.Model),
		escapeLine(cmp.Or(run.StopReason, "-")), run.Iterations)
	u := run.Usage
	fmt.Fprintf(tw, "Tokens\t%d input, %d output, %d cache read, %d cache write\n",
		u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens)
	fmt.Fprintf(tw, "Created\t%s\nStarted\t%s\nFinished\t%s\n", formatTime(run.CreatedAt),
		formatTimeOr(run.StartedAt, "-"), formatTimeOr(run.FinishedAt, "-"))
	if run.Error != "" {
		fmt.Fprintf(tw, "Error\t%s (%s)\n", escapeLine(run.Error), escapeLine(cmp.Or(run.ErrorClass, "unclassified")))
	}
	tw.Flush()
}

// printLedger prints the tool ledger of a run, a call at a time, inputs
// and outputs cut at maxShownBytes.
func printLedger(w io.Writer, ledger []agentpg.ToolCall) {
	fmt.Fprintf(w, "Tool calls (%d):\n", len(ledger))
	for _, tc := range ledger {
		status := tc.Status
		if tc.Status == "completed" && tc.IsError {
			status += ", error"
		}
		took := ""
		if !tc.StartedAt.IsZero() && !tc.FinishedAt.IsZero() {
			took = ", " + formatDuration(tc.FinishedAt.Sub(tc.StartedAt))
		}
		fmt.Fprintf(w, "%s%s (%s): %s%s\n", blockIndent[:2], escapeLine(tc.Name), escapeLine(tc.ToolUseID), escapeLine(status), took)
		fmt.Fprintf(w, "%sinput:\n", blockIndent)
		printShown(w, bodyIndent, string(tc.Input))
		if tc.Output != "" {
			fmt.Fprintf(w, "%soutput:\n", blockIndent)
			printShown(w, bodyIndent, tc.Output)
		}
		if tc.DecisionNote != "" {
			fmt.Fprintf(w, "%snote: %s\n", blockIndent, escapeLine(tc.DecisionNote))
		}
	}
}

// eventView is an event, for --json --follow.
type eventView struct {
	Seq        int64           `json:"seq"`
	Kind       string          `json:"kind"`
	Text       string          `json:"text,omitempty"`
	ToolUseID  string          `json:"tool_use_id,omitempty"`
	ToolName   string          `json:"tool_name,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	IsError    bool            `json:"is_error,omitempty"`
	Status     string          `json:"status,omitempty"`
	StopReason string          `json:"stop_reason,omitempty"`
	Error      string          `json:"error,omitempty"`
	Usage      *agentpg.Usage  `json:"usage,omitempty"`
}

// writeEventJSON writes e to w as one line of JSON.
func writeEventJSON(w io.Writer, e agentpg.Event) error {
	v := eventView{Seq: e.Seq, Kind: string(e.Kind), Text: e.Text, ToolUseID: e.ToolUseID, ToolName: e.ToolName,
		Input: e.Input, IsError: e.IsError, Status: e.Status, StopReason: e.StopReason, Error: e.Error}
	if e.Kind == agentpg.EventRunEnd {
		v.Usage = &e.Usage
	}
	if len(v.Input) > 0 && !json.Valid(v.Input) {
		v.Input = nil
	}
	out, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the event: %w", err)
	}
	_, err = w.Write(append(escapeJSON(out), '\n'))
	return err
}

// printEvent prints e on one line, escaped.
func printEvent(w io.Writer, e agentpg.Event) {
	call := func() string { return escapeLine(cmp.Or(e.ToolName, "?")) + " (" + escapeLine(e.ToolUseID) + ")" }
	var line string
	switch e.Kind {
	case agentpg.EventText:
		line = "text: " + escapeLine(e.Text)
	case agentpg.EventThinking:
		line = "thinking: " + escapeLine(e.Text)
	case agentpg.EventToolCall:
		line = "tool call " + call() + ", input: " + escapeLine(string(e.Input))
	case agentpg.EventToolResult:
		outcome := "ok"
		if e.IsError {
			outcome = "error"
		}
		line = "tool result of " + call() + ", " + outcome + ": " + escapeLine(e.Text)
	case agentpg.EventApproval:
		line = "approval of " + call() + ": " + escapeLine(e.Status)
		if e.Error != "" {
			line += ": " + escapeLine(e.Error)
		}
	case agentpg.EventRetry:
		line = "retry: " + escapeLine(e.Text)
	case agentpg.EventRunEnd:
		line = "run end: " + escapeLine(e.Status)
		if e.StopReason != "" {
			line += ", stop reason " + escapeLine(e.StopReason)
		}
		line += fmt.Sprintf(", %d input and %d output tokens", e.Usage.InputTokens, e.Usage.OutputTokens)
		if e.Error != "" {
			line += ": " + escapeLine(e.Error)
		}
	default:
		line = escapeLine(string(e.Kind))
	}
	fmt.Fprintf(w, "  #%d %s\n", e.Seq, line)
}

// runsCancelCmd returns "agentpg runs cancel".
func (c *cli) runsCancelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel --id <run>",
		Short: "cancel a run that has not ended",
		Long: `Cancel a run of the tenant. A queued run, one awaiting approval, or one whose
process went away is cancelled at once; a running one stops at its next step
boundary, in its own process. Cancelling a run that ended fails.`,
		Example: `  agentpg runs cancel --tenant acme --id 0190f0e4-...`,
	}
	id := cmd.Flags().String("id", "", "the run's `id`")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *id == "" {
			return usageErrorf("--id is required")
		}
		return c.runsCancel(ctx, tenant, *id)
	})
}

// runsCancel cancels the tenant's run id.
func (c *cli) runsCancel(ctx context.Context, tenant, id string) error {
	agent, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	defer db.close()
	err = agent.CancelRun(ctx, tenant, id)
	switch {
	case errors.Is(err, agentpg.ErrRunNotFound):
		return runNotFound(tenant, id)
	case errors.Is(err, agentpg.ErrRunFinished):
		status := "ended"
		if run, err := agent.GetRun(ctx, tenant, id); err == nil {
			status = run.Status
		}
		return fmt.Errorf("run %s has already ended (%s): there is nothing to cancel", escapeLine(id), escapeLine(status))
	case err != nil:
		return flagError(err)
	}
	run, err := agent.GetRun(ctx, tenant, id)
	if err == nil && run.Status != agentpg.RunCancelled {
		fmt.Fprintf(c.stdout, "Run %s is asked to stop: its process stops it at its next step boundary.\n", escapeLine(id))
		return nil
	}
	fmt.Fprintf(c.stdout, "Cancelled run %s.\n", escapeLine(id))
	return nil
}

// runsResumeHelp describes runs resume, for its help.
const runsResumeHelp = `Resume a run of the tenant here, from its last committed step, and print its
answer: a run interrupted by a crash (stuck), one whose tool calls awaiting
approval are all decided, or a queued one. For a run that ended, it prints how
it ended.

agentpg cannot run the tools of the application that made the run: it offers
the model stand-ins, by name, that tell it they are unavailable. A call
already completed or denied keeps its stored result; but an approved call
(or another call of its step) would run the stand-in and fail, so resume
refuses such a run unless --without-tools is given: resume it from the
application, or a worker of it, to run the tools. The run goes on with its own
model unless --model says otherwise.`

// runsResumeCmd returns "agentpg runs resume".
func (c *cli) runsResumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resume --id <run>",
		Short: "resume an interrupted run, or one whose approvals are decided",
		Long:  runsResumeHelp + "\n\n" + claudeHelp,
		Example: `  agentpg runs resume --tenant acme --id 0190f0e4-...
  agentpg runs resume --tenant acme --id 0190f0e4-... --without-tools`,
	}
	id := cmd.Flags().String("id", "", "the run's `id`")
	model := cmd.Flags().String("model", "", "Claude `model` (default: the run's)")
	withoutTools := cmd.Flags().Bool("without-tools", false, "resume even though approved tool calls will fail as unavailable")
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("")
		if err != nil {
			return err
		}
		if *id == "" {
			return usageErrorf("--id is required")
		}
		return c.runsResume(ctx, tenant, *id, *model, *withoutTools)
	})
}

// runsResume resumes the tenant's run id with model, or the run's, and
// prints its answer.
func (c *cli) runsResume(ctx context.Context, tenant, id, model string, withoutTools bool) error {
	storage, db, err := c.storageAgent(ctx)
	if err != nil {
		return err
	}
	run, _, ledger, err := loadRun(ctx, storage, tenant, id)
	db.close()
	if err != nil {
		return err
	}
	switch run.Status {
	case agentpg.RunCompleted, agentpg.RunFailed, agentpg.RunCancelled:
		return c.printEnded(run)
	}
	var pending, approved []string
	for _, tc := range ledger {
		switch tc.Status {
		case "awaiting_approval":
			pending = append(pending, tc.ToolUseID)
		case "approved":
			approved = append(approved, tc.Name+" ("+tc.ToolUseID+")")
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("run %s still awaits a decision on %s: %s; decide with \"agentpg approvals approve\" or \"deny\" first",
			escapeLine(id), count(len(pending), "tool call"), escapeLine(strings.Join(pending, ", ")))
	}
	if len(approved) > 0 && !withoutTools {
		return fmt.Errorf("run %s would now run its approved tool calls %s, which agentpg cannot run: resume it from the application, or give --without-tools to have them fail as unavailable",
			escapeLine(id), escapeLine(strings.Join(approved, ", ")))
	}

	agent, _, _, release, err := c.modelAgent(ctx, false, agentpg.Config{Model: cmp.Or(model, run.Model, defaultModel)})
	if err != nil {
		return err
	}
	defer release()
	session, err := agent.LoadSession(ctx, tenant, run.SessionID)
	if err != nil {
		return fmt.Errorf("loading the session of run %s: %w", escapeLine(id), err)
	}
	if err := c.offerStandIns(ctx, agent, session); err != nil {
		return err
	}
	res, err := agent.ResumeRun(ctx, tenant, id)
	switch {
	case errors.Is(err, agentpg.ErrRunNotFound):
		return runNotFound(tenant, id)
	case errors.Is(err, agentpg.ErrApprovalPending):
		return fmt.Errorf("run %s awaits a decision on tool calls: see \"agentpg approvals list\"", escapeLine(id))
	case errors.Is(err, agentpg.ErrSessionBusy):
		return fmt.Errorf("another process is running the session of run %s: try again once it is done", escapeLine(id))
	case err != nil:
		return fmt.Errorf("run %s failed: %w", escapeLine(id), err)
	}
	if res.StopReason == agentpg.StopAwaitingApproval {
		fmt.Fprintf(c.stdout, "Run %s awaits approval of %s again: see \"agentpg approvals list\".\n",
			escapeLine(id), count(len(res.PendingApprovals), "tool call"))
		return nil
	}
	fmt.Fprintf(c.stdout, "Run %s completed (%s, %s):\n%s\n", escapeLine(id), escapeLine(res.StopReason),
		count(res.Iterations, "model call"), escapeText(res.Text))
	return nil
}

// printEnded tells how run, which ended, ended: an error unless it
// completed.
func (c *cli) printEnded(run *agentpg.RunInfo) error {
	if run.Status != agentpg.RunCompleted {
		return fmt.Errorf("run %s has already ended: %s: %s", escapeLine(run.ID), escapeLine(run.Status),
			escapeLine(cmp.Or(run.Error, "no reason given")))
	}
	fmt.Fprintf(c.stdout, "Run %s has already completed (%s); \"agentpg runs show\" shows it.\n",
		escapeLine(run.ID), escapeLine(cmp.Or(run.StopReason, "-")))
	return nil
}

// offerStandIns offers the model, as unavailable, the tools that the
// session's messages call: the Messages API refuses a conversation with
// tool_use blocks unless the request defines tools, and agentpg cannot run
// the application's tools.
func (c *cli) offerStandIns(ctx context.Context, agent *agentpg.Agent, session *agentpg.Session) error {
	names, err := toolNames(ctx, session)
	if err != nil {
		return err
	}
	registry := agent.Executor().Registry()
	for _, name := range names {
		if err := registry.Register(standIn(name)); err != nil {
			return fmt.Errorf("offering the tool %s as unavailable: %w", escapeLine(name), err)
		}
	}
	if len(names) > 0 {
		fmt.Fprintf(c.stderr, "This session used tools that agentpg cannot run (%s): they are offered to the model as unavailable.\n",
			escapeLine(strings.Join(names, ", ")))
	}
	return nil
}

// standIn is a tool that agentpg runs resume offers by name only.
type standIn string

var _ tool.Tool = standIn("")

// Name returns the tool's name.
func (s standIn) Name() string { return string(s) }

// Description tells the model not to call the tool.
func (s standIn) Description() string {
	return "Not available now: this conversation called " + string(s) +
		" earlier, but the process resuming it cannot run it. Do not call it; answer without it."
}

// InputSchema accepts any object.
func (s standIn) InputSchema() tool.ToolSchema { return tool.ToolSchema{Type: "object"} }

// Execute fails: the tool is not available.
func (s standIn) Execute(context.Context, json.RawMessage) (string, error) {
	return "", fmt.Errorf("%s is not available: the run was resumed by agentpg runs resume, which cannot run it", string(s))
}
