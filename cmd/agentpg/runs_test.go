package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// transferInput is the input of the test's tool that needs approval.
type transferInput struct {
	To string `json:"to"`
}

// approvalAgent returns an Agent on the test database and schema whose
// "transfer" tool needs approval, with a scripted server of the test's own.
func approvalAgent(t *testing.T, schema string) (*agentpg.Agent, *agentpgtest.Server) {
	t.Helper()
	transfer, err := tool.NewFunc("transfer", "Moves money.", func(_ context.Context, in transferInput) (string, error) {
		return "moved to " + in.To, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	srv := agentpgtest.NewServer(t)
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: srv.Client(), Model: "claude-test", Schema: schema,
		Tools: []tool.Tool{transfer}, ApprovalRequired: []string{"transfer"}})
	if err != nil {
		t.Fatal(err)
	}
	return agent, srv
}

// pausedRun makes a session of tenant acme, identifier ident, whose run
// called transfer once for each of to, ids toolu_1, toolu_2..., and waits
// for approval. It returns the run's id.
func pausedRun(t *testing.T, schema, ident string, to ...string) string {
	t.Helper()
	agent, srv := approvalAgent(t, schema)
	session, err := agent.NewSession(t.Context(), "acme", ident, nil)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []agentpgtest.Block
	for i, city := range to {
		blocks = append(blocks, agentpgtest.ToolUse("toolu_"+string(rune('1'+i)), "transfer", map[string]any{"to": city}))
	}
	srv.Push(agentpgtest.Blocks(blocks...))
	res, err := session.Run(t.Context(), "pay")
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != agentpg.StopAwaitingApproval {
		t.Fatalf("the run does not await approval: %+v", res)
	}
	return res.RunID
}

// noRawEscape checks that out holds no raw escape character.
func noRawEscape(t *testing.T, name, out string) {
	t.Helper()
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("%s prints a raw escape character:\n%q", name, out)
	}
}

func TestRunsAndApprovals(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	runID := pausedRun(t, schema, "pay-1", "Oslo", "Rome")
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema, "--tenant", "acme")...)
	}

	// The run and its calls await a decision.
	res := cli("approvals", "list")
	wantCode(t, res, 0)
	wantContains(t, "approvals list", res.stdout, "Run "+runID+", session pay-1", "2 tool calls awaiting approval",
		"transfer, --call toolu_1, input:", "Oslo", "transfer, --call toolu_2, input:", "Rome", "agentpg approvals approve|deny")
	res = cli("approvals", "list", "--json")
	wantCode(t, res, 0)
	var pending struct {
		Runs []struct {
			ID                string `json:"id"`
			Status            string `json:"status"`
			SessionIdentifier string `json:"session_identifier"`
			Pending           []struct {
				ToolUseID string          `json:"tool_use_id"`
				Name      string          `json:"name"`
				Input     json.RawMessage `json:"input"`
			} `json:"pending"`
		} `json:"runs"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &pending); err != nil {
		t.Fatalf("approvals list --json: %v\n%s", err, res.stdout)
	}
	if len(pending.Runs) != 1 || pending.Runs[0].ID != runID || pending.Runs[0].Status != "awaiting_approval" ||
		pending.Runs[0].SessionIdentifier != "pay-1" || len(pending.Runs[0].Pending) != 2 ||
		pending.Runs[0].Pending[1].ToolUseID != "toolu_2" || compact(t, pending.Runs[0].Pending[1].Input) != `{"to":"Rome"}` {
		t.Errorf("approvals list --json: %+v", pending)
	}
	res = cli("runs", "resume", "--id", runID)
	wantCode(t, res, 1)
	wantContains(t, "resume before the decisions", res.stderr, "still awaits a decision on 2 tool calls")

	// Decide: once each.
	res = cli("approvals", "approve", "--run", runID, "--call", "toolu_1", "--note", "ok by alice")
	wantCode(t, res, 0)
	wantContains(t, "approve", res.stdout, "Approved tool call toolu_1 of run "+runID, "1 tool call still awaiting a decision")
	res = cli("approvals", "approve", "--run", runID, "--call", "toolu_1")
	wantCode(t, res, 1)
	wantContains(t, "approving twice", res.stderr, "tool call toolu_1 of run "+runID+" is not awaiting approval: it is approved")
	res = cli("approvals", "deny", "--run", runID, "--call", "toolu_9")
	wantCode(t, res, 1)
	wantContains(t, "deciding an unknown call", res.stderr, "run "+runID+" has no tool call toolu_9")
	res = cli("approvals", "deny", "--run", "00000000-0000-0000-0000-000000000000", "--call", "toolu_2")
	wantCode(t, res, 1)
	wantContains(t, "deciding for an unknown run", res.stderr, `tenant "acme" has no run 00000000-0000-0000-0000-000000000000`)
	res = cli("approvals", "deny", "--run", runID, "--call", "toolu_2", "--note", "bob\x1b[2J: not to Rome")
	wantCode(t, res, 0)
	wantContains(t, "deny", res.stdout, "Denied tool call toolu_2", "Every pending call of run "+runID+" is decided",
		"agentpg runs resume --tenant acme --id "+runID, "resume it from the application")
	res = cli("approvals", "deny", "--run", runID, "--call", "toolu_2")
	wantCode(t, res, 1)
	wantContains(t, "denying twice", res.stderr, "is not awaiting approval: it is denied")
	res = cli("approvals", "list")
	wantCode(t, res, 0)
	wantContains(t, "approvals list once decided", res.stdout, "Run "+runID+", session pay-1", "every call decided", "agentpg runs resume --id "+runID)

	// The CLI's decisions are in the audit log, with who made them.
	res = cli("audit", "list", "--json")
	wantCode(t, res, 0)
	var audited struct {
		Entries []struct{ Action, Tool, Actor, Detail string } `json:"entries"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &audited); err != nil {
		t.Fatalf("audit list --json: %v\n%s", err, res.stdout)
	}
	var decisions []string
	for _, e := range audited.Entries {
		if strings.HasPrefix(e.Actor, "agentpg cli") && e.Tool == "transfer" {
			decisions = append(decisions, e.Action+": "+e.Detail)
		}
	}
	if strings.Join(decisions, "; ") != "tool_approve: ok by alice; tool_deny: bob\x1b[2J: not to Rome" {
		t.Errorf("the audit log holds the CLI's decisions %q", decisions)
	}

	// The ledger, with the notes escaped.
	res = cli("runs", "show", "--id", runID)
	wantCode(t, res, 0)
	wantContains(t, "runs show", res.stdout, "Run  ", runID, "pay-1", "awaiting_approval", "claude-test",
		"Tool calls (2):", "transfer (toolu_1): approved", "note: ok by alice", "transfer (toolu_2): denied",
		`note: bob\x1b[2J: not to Rome`, "Oslo")
	noRawEscape(t, "runs show", res.stdout)

	// Resuming would run the approved call, which agentpg cannot: it says so.
	res = cli("runs", "resume", "--id", runID)
	wantCode(t, res, 1)
	wantContains(t, "resume with an approved call", res.stderr, "approved tool calls transfer (toolu_1)", "--without-tools")
	res = cli("runs", "resume", "--id", runID, "--without-tools")
	wantCode(t, res, 0)
	wantContains(t, "runs resume", res.stdout, "Run "+runID+" completed (end_turn", "scripted model")
	wantContains(t, "runs resume", res.stderr, "tools that agentpg cannot run (transfer)")

	res = cli("runs", "list", "--status", "completed")
	wantCode(t, res, 0)
	wantContains(t, "runs list --status completed", res.stdout, "ID", "SESSION", "STATUS", runID, "completed")
	res = cli("runs", "list", "--status", "awaiting_approval")
	wantCode(t, res, 0)
	wantContains(t, "runs list --status awaiting_approval", res.stdout, `Tenant "acme" has no such runs.`)
	res = cli("runs", "list", "--json")
	wantCode(t, res, 0)
	var list struct {
		Runs []struct {
			ID         string         `json:"id"`
			SessionID  string         `json:"session_id"`
			Status     string         `json:"status"`
			Stuck      bool           `json:"stuck"`
			Model      string         `json:"model"`
			Iterations int            `json:"iterations"`
			FinishedAt *string        `json:"finished_at"`
			Usage      *agentpg.Usage `json:"usage"`
		} `json:"runs"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("runs list --json: %v\n%s", err, res.stdout)
	}
	if len(list.Runs) != 1 || list.Runs[0].ID != runID || list.Runs[0].Status != "completed" || list.Runs[0].Stuck ||
		list.Runs[0].FinishedAt == nil || list.Runs[0].Iterations < 2 || list.Next != "" {
		t.Errorf("runs list --json: %+v", list)
	}

	res = cli("runs", "show", "--id", runID, "--json")
	wantCode(t, res, 0)
	var show struct {
		Run struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"run"`
		ToolCalls []struct {
			ToolUseID    string          `json:"tool_use_id"`
			Name         string          `json:"name"`
			Status       string          `json:"status"`
			Input        json.RawMessage `json:"input"`
			Output       string          `json:"output"`
			IsError      bool            `json:"is_error"`
			DecisionNote string          `json:"decision_note"`
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &show); err != nil {
		t.Fatalf("runs show --json: %v\n%s", err, res.stdout)
	}
	noRawEscape(t, "runs show --json", res.stdout)
	if show.Run.ID != runID || show.Run.Status != "completed" || len(show.ToolCalls) != 2 {
		t.Fatalf("runs show --json: %+v", show)
	}
	for _, tc := range show.ToolCalls {
		switch tc.ToolUseID {
		case "toolu_1":
			if !tc.IsError || !strings.Contains(tc.Output, "not available") || tc.DecisionNote != "ok by alice" {
				t.Errorf("the approved call, run by a stand-in: %+v", tc)
			}
		case "toolu_2":
			if tc.DecisionNote != "bob\x1b[2J: not to Rome" {
				t.Errorf("the denied call: %+v", tc)
			}
		default:
			t.Errorf("tool call %+v", tc)
		}
	}

	// The events, from the first to the end.
	res = cli("runs", "show", "--id", runID, "--follow")
	wantCode(t, res, 0)
	wantContains(t, "runs show --follow", res.stdout, "Events:", "tool call transfer (toolu_1), input:",
		"approval of transfer (toolu_2): pending", "run end: completed")
	res = cli("runs", "show", "--id", runID, "--follow", "--json")
	wantCode(t, res, 0)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	var last struct {
		Seq    int64  `json:"seq"`
		Kind   string `json:"kind"`
		Status string `json:"status"`
	}
	for _, line := range lines {
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			t.Fatalf("runs show --follow --json: %v in line %q", err, line)
		}
	}
	if len(lines) < 3 || last.Kind != "run_end" || last.Status != "completed" || last.Seq != int64(len(lines)) {
		t.Errorf("runs show --follow --json ends with %+v after %d lines:\n%s", last, len(lines), res.stdout)
	}

	// A finished run can neither be cancelled nor resumed.
	res = cli("runs", "cancel", "--id", runID)
	wantCode(t, res, 1)
	wantContains(t, "cancelling a finished run", res.stderr, "run "+runID+" has already ended (completed): there is nothing to cancel")
	res = cli("runs", "resume", "--id", runID)
	wantCode(t, res, 0)
	wantContains(t, "resuming a completed run", res.stdout, "has already completed")
	res = cli("runs", "show", "--id", "00000000-0000-0000-0000-000000000000")
	wantCode(t, res, 1)
	wantContains(t, "showing an unknown run", res.stderr, `tenant "acme" has no run 00000000-0000-0000-0000-000000000000`)
	res = agentpgCLI(t, "runs", "show", "--id", runID, "--schema", schema, "--tenant", "globex")
	wantCode(t, res, 1)
	wantContains(t, "another tenant's run", res.stderr, `tenant "globex" has no run`)
}

// TestRunsDeniedAndCancelled resumes a run whose only call was denied
// (with no tool to run, no --without-tools is needed) and cancels another
// awaiting approval.
func TestRunsDeniedAndCancelled(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	denied := pausedRun(t, schema, "pay-denied", "Oslo")
	cancelled := pausedRun(t, schema, "pay-cancelled", "Rome")
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema, "--tenant", "acme")...)
	}

	res := cli("approvals", "deny", "--run", denied, "--call", "toolu_1")
	wantCode(t, res, 0)
	wantContains(t, "deny without a note", res.stderr, "No --note")
	if strings.Contains(res.stdout, "resume it from the application") {
		t.Errorf("deny tells to resume from the application, with no approved call:\n%s", res.stdout)
	}
	res = cli("runs", "resume", "--id", denied)
	wantCode(t, res, 0)
	wantContains(t, "runs resume", res.stdout, "Run "+denied+" completed")

	res = cli("runs", "cancel", "--id", cancelled)
	wantCode(t, res, 0)
	wantContains(t, "runs cancel", res.stdout, "Cancelled run "+cancelled+".")
	res = cli("runs", "cancel", "--id", cancelled)
	wantCode(t, res, 1)
	wantContains(t, "cancelling twice", res.stderr, "has already ended (cancelled)")
	res = cli("runs", "resume", "--id", cancelled)
	wantCode(t, res, 1)
	wantContains(t, "resuming a cancelled run", res.stderr, "run "+cancelled+" has already ended: cancelled")
	res = cli("approvals", "approve", "--run", cancelled, "--call", "toolu_1")
	wantCode(t, res, 1)
	wantContains(t, "approving a call of a cancelled run", res.stderr, "run "+cancelled+" has ended (cancelled): its tool calls are no longer awaiting approval")
	res = cli("approvals", "list")
	wantCode(t, res, 0)
	wantContains(t, "approvals list with none", res.stdout, `No run of tenant "acme" awaits approval.`)

	res = cli("runs", "list", "--status", "cancelled")
	wantCode(t, res, 0)
	wantContains(t, "runs list --status cancelled", res.stdout, cancelled, "cancelled")
	if strings.Contains(res.stdout, denied) {
		t.Errorf("runs list --status cancelled lists a completed run:\n%s", res.stdout)
	}
	res = cli("runs", "list", "--limit", "1")
	wantCode(t, res, 0)
	wantContains(t, "runs list --limit 1", res.stdout, denied, "More runs follow: run again with --after ")
	m := afterCursor.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no cursor:\n%s", res.stdout)
	}
	res = cli("runs", "list", "--limit", "1", "--after", m[1])
	wantCode(t, res, 0)
	wantContains(t, "the second page", res.stdout, cancelled)
	res = cli("runs", "list", "--stuck")
	wantCode(t, res, 0)
	wantContains(t, "runs list --stuck", res.stdout, "has no such runs")
}

func TestRunsUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runs"}, `agentpg: missing command; see "agentpg runs --help"`},
		{[]string{"runs", "list"}, `agentpg: --tenant is required; see "agentpg runs list --help"`},
		{[]string{"runs", "list", "--tenant", "t", "--status", "done"}, `agentpg: --status must be one of queued, running, awaiting_approval, completed, failed, cancelled, not "done"`},
		{[]string{"runs", "list", "--tenant", "t", "--stuck", "--status", "failed"}, `agentpg: --stuck lists running runs: it does not go with --status failed`},
		{[]string{"runs", "list", "--tenant", "t", "--limit", "0"}, `agentpg: --limit must be from 1 to 1000, not 0`},
		{[]string{"runs", "show", "--tenant", "t"}, `agentpg: --id is required; see "agentpg runs show --help"`},
		{[]string{"runs", "cancel", "--tenant", "t"}, `agentpg: --id is required; see "agentpg runs cancel --help"`},
		{[]string{"runs", "cancel", "--tenant", "t", "--id", "x", "--json"}, `agentpg: --json does not apply to "agentpg runs cancel"`},
		{[]string{"runs", "resume", "--id", "x"}, `agentpg: --tenant is required; see "agentpg runs resume --help"`},
		{[]string{"approvals"}, `agentpg: missing command; see "agentpg approvals --help"`},
		{[]string{"approvals", "list"}, `agentpg: --tenant is required`},
		{[]string{"approvals", "approve", "--tenant", "t", "--call", "c"}, `agentpg: --run is required; see "agentpg approvals approve --help"`},
		{[]string{"approvals", "deny", "--tenant", "t", "--run", "r"}, `agentpg: --call is required; see "agentpg approvals deny --help"`},
		{[]string{"approvals", "deny", "--tenant", "t", "--run", "r", "--call", "c", "--json"}, `agentpg: --json does not apply`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := agentpgCLI(t, tc.args...)
			wantCode(t, res, 2)
			wantContains(t, "stderr", res.stderr, tc.want)
			if strings.Count(res.stderr, "\n") != 1 || res.stdout != "" {
				t.Errorf("not one line on stderr only:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
			}
		})
	}

	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--help"}, []string{"runs", "approvals"}},
		{[]string{"runs", "--help"}, []string{"Usage: agentpg runs <command> [flags]", "list", "show", "cancel", "resume"}},
		{[]string{"runs", "list", "--help"}, []string{"Usage: agentpg runs list [flags]", "--status", "--stuck", "--limit", "--after", "Examples:"}},
		{[]string{"runs", "show", "--help"}, []string{"Usage: agentpg runs show --id <run> [flags]", "--follow", "Examples:"}},
		{[]string{"runs", "cancel", "--help"}, []string{"Usage: agentpg runs cancel --id <run> [flags]", "Examples:"}},
		{[]string{"runs", "resume", "--help"}, []string{"Usage: agentpg runs resume --id <run> [flags]", "--without-tools", "--model", "ANTHROPIC_API_KEY"}},
		{[]string{"approvals", "--help"}, []string{"Usage: agentpg approvals <command> [flags]", "list", "approve", "deny"}},
		{[]string{"approvals", "list", "--help"}, []string{"Usage: agentpg approvals list [flags]", "Examples:"}},
		{[]string{"approvals", "approve", "--help"}, []string{"--run", "--call", "--note", "runs resume"}},
		{[]string{"approvals", "deny", "--help"}, []string{"--run", "--call", "--note", "reaches the model"}},
	} {
		res := agentpgCLI(t, tc.args...)
		wantCode(t, res, 0)
		wantContains(t, strings.Join(tc.args, " "), res.stdout, tc.wants...)
	}
}
