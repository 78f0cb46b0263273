package agentpg_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/tool"
)

// actorKey is the context key of the acting person in these tests.
type actorKey struct{}

// auditEntries returns the tenant's audit entries, checking that its chain
// verifies.
func auditEntries(t *testing.T, agent *agentpg.Agent, tenantID string) []audit.Entry {
	t.Helper()
	entries, err := agent.AuditLog().List(ctx(t), tenantID, audit.ListOptions{Limit: audit.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.AuditLog().Verify(ctx(t), tenantID); err != nil {
		t.Fatal(err)
	}
	return entries
}

// With Config.Audit.Enabled, the Agent records each tool call that ran,
// each call a hook denied, each decision, cancellation and deletion, with
// whether it took effect, the session's identifier, the actor from the
// context and redacted inputs; an attempt on another tenant's run lands in
// the log of the tenant asked for, and only there.
func TestAuditRecordsTheAgentsActions(t *testing.T) {
	t.Parallel()
	var weather, transfers atomic.Int32
	transfer, err := tool.NewFunc("transfer", "Moves money.", func(_ context.Context, in cityInput) (string, error) {
		transfers.Add(1)
		return "", errors.New("insufficient funds")
	})
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, &weather), transfer}
		c.ApprovalRequired = []string{"transfer"}
		c.Audit = agentpg.AuditConfig{
			Enabled: true,
			Redact:  func(s string) string { return strings.ReplaceAll(s, "Oslo", "[city]") },
			Actor:   func(ctx context.Context) string { s, _ := ctx.Value(actorKey{}).(string); return s },
		}
	})
	b.agent.OnBeforeToolCall(func(_ context.Context, call agentpg.ToolCallRequest) error {
		if strings.Contains(string(call.Input), "Lyon") {
			return errors.New("Lyon is off limits")
		}
		return nil
	})
	sess := b.session(t, "acme", "user-1")
	alice := context.WithValue(ctx(t), actorKey{}, "alice")
	b.model.Push(
		agentpgtest.Blocks(
			agentpgtest.ToolUse("toolu_w", "weather", map[string]any{"city": "Paris"}),
			agentpgtest.ToolUse("toolu_l", "weather", map[string]any{"city": "Lyon"}),
			agentpgtest.ToolUse("toolu_t", "transfer", map[string]any{"city": "Oslo"}),
		),
		agentpgtest.Text("done"),
	)
	res, err := sess.Run(alice, "pay")
	if err != nil || res.StopReason != agentpg.StopAwaitingApproval {
		t.Fatalf("%+v %v", res, err)
	}
	mallory := context.WithValue(ctx(t), actorKey{}, "mallory")
	if err := b.agent.DecideToolCall(mallory, "globex", res.RunID, "toolu_t", true, "let it through"); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Fatalf("another tenant decides: %v", err)
	}
	if err := b.agent.DecideToolCall(alice, "acme", res.RunID, "toolu_t", true, "ok by alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.agent.ResumeRun(alice, "acme", res.RunID); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.CancelRun(alice, "acme", res.RunID); !errors.Is(err, agentpg.ErrRunFinished) {
		t.Fatalf("cancelling a finished run: %v", err)
	}
	if err := b.agent.DeleteSession(alice, "acme", sess.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}

	type entry struct {
		action, user, session, run, tool, input, detail string
		success                                         bool
	}
	want := []entry{
		{audit.ActionToolDenied, "user-1", sess.ID, res.RunID, "weather", `{"city":"Lyon"}`, "Lyon is off limits", false},
		{audit.ActionToolApprove, "", sess.ID, res.RunID, "transfer", `{"city": "[city]"}`, "ok by alice", true},
		// The resumed run's inputs, from the ledger, as PostgreSQL's jsonb writes them.
		{audit.ActionToolCall, "user-1", sess.ID, res.RunID, "weather", `{"city": "Paris"}`, "", true},
		{audit.ActionToolCall, "user-1", sess.ID, res.RunID, "transfer", `{"city": "[city]"}`, "", false},
		{audit.ActionRunCancel, "", "", res.RunID, "", "", "", false},
		{audit.ActionSessionDelete, "", sess.ID, "", "", "", "", true},
	}
	entries := auditEntries(t, b.agent, "acme")
	if len(entries) != len(want) {
		t.Fatalf("%d entries: %+v", len(entries), entries)
	}
	for i, e := range entries {
		got := entry{e.Action, e.UserID, e.SessionID, e.RunID, e.Tool, e.Input, e.Detail, e.Success}
		if got != want[i] || e.Actor != "alice" || e.TenantID != "acme" {
			t.Errorf("entry %d:\n got %+v (actor %q)\nwant %+v", i, got, e.Actor, want[i])
		}
	}
	globex := auditEntries(t, b.agent, "globex")
	if len(globex) != 1 || globex[0].Action != audit.ActionToolApprove || globex[0].Success || globex[0].Actor != "mallory" ||
		globex[0].Tool != "" || globex[0].SessionID != "" {
		t.Errorf("globex's entries: %+v", globex)
	}
	if weather.Load() != 1 || transfers.Load() != 1 {
		t.Errorf("weather ran %d times, transfer %d", weather.Load(), transfers.Load())
	}
}

// Without Config.Audit.Enabled, the Agent records nothing of its own; its
// audit log still takes the application's entries.
func TestAuditOffRecordsNothing(t *testing.T) {
	t.Parallel()
	var weather atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &weather)} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_w", "weather", map[string]any{"city": "Paris"})), agentpgtest.Text("sunny"))
	if _, err := sess.Run(ctx(t), "weather?"); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.DeleteSession(ctx(t), "acme", sess.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.AuditLog().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if tenants, err := b.agent.AuditLog().Tenants(ctx(t)); err != nil || len(tenants) != 0 {
		t.Fatalf("the agent recorded entries of tenants %v (%v)", tenants, err)
	}
	if err := b.agent.AuditLog().Record(audit.Entry{TenantID: "acme", Action: "export", UserID: "user-1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if entries := auditEntries(t, b.agent, "acme"); len(entries) != 1 || entries[0].Action != "export" {
		t.Fatalf("entries %+v", entries)
	}
	if err := b.agent.AuditLog().Record(audit.Entry{TenantID: "acme", Action: "export"}); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Agent.Close: %v", err)
	}
}
