package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/compaction"
)

// userData gives an end user's data to every path that stores content: the
// session's metadata, prompts, answers, a nested agent's session (its task
// is a tool input, its answer a tool output), the events of the runs, and a
// compaction's summary and archive. Each piece carries marker.
func userData(t *testing.T, b *bundle, tenantID, identifier, marker string) *agentpg.Session {
	t.Helper()
	sess, err := b.agent.NewSession(ctx(t), tenantID, identifier, &agentpg.SessionOptions{Metadata: map[string]any{"note": marker}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Run(ctx(t), "delegate "+marker); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, err := sess.Run(ctx(t), fmt.Sprintf("%s turn %d %s", marker, i, strings.Repeat("words ", 400))); err != nil {
			t.Fatal(err)
		}
	}
	event, err := sess.Compact(ctx(t))
	if err != nil || event.MessagesArchived == 0 {
		t.Fatalf("compaction %+v, %v", event, err)
	}
	return sess
}

// erasureSetup is an agent that delegates to itself as a nested agent when
// asked to, echoes otherwise, and summarizes by quoting the conversation's
// first prompt.
func erasureSetup(t *testing.T) *bundle { return erasureSetupWith(t) }

// erasureSetupWith is erasureSetup with configure applied to its Config.
func erasureSetupWith(t *testing.T, configure ...func(*agentpg.Config)) *bundle {
	b := setup(t, append([]func(*agentpg.Config){func(c *agentpg.Config) {
		c.MaxAgentDepth = 2
		c.ContextWindow = 20000
		c.Compaction = agentpg.CompactionConfig{Disabled: true, Strategy: compaction.StrategySummarize, ProtectTokens: 1000}
		c.RetentionBatchSize = 2 // several batches
		c.Audit.Enabled = true
	}}, configure...)...)
	if err := b.agent.Executor().Registry().Register(b.agent.AsTool("self", "Delegates to itself.")); err != nil {
		t.Fatal(err)
	}
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		last := req.Messages[len(req.Messages)-1]
		switch {
		case req.System == compaction.SummaryInstructions:
			return agentpgtest.Text("summary of " + strings.Fields(req.Messages[0].Content[0].Text + " x")[0])
		case last.Content[0].Type == "tool_result":
			return agentpgtest.Text("delegated: " + resultText(last.Content[0]))
		case strings.HasPrefix(req.LastUserText(), "delegate "):
			return agentpgtest.Blocks(agentpgtest.ToolUse(fmt.Sprintf("toolu_%d", len(req.Messages)), "self",
				map[string]any{"task": req.LastUserText()}))
		}
		return agentpgtest.Echo(req)
	})
	return b
}

// tablesHolding returns the tables of the schema (River's included) in
// which some row's text holds s, as pg_dump would show it.
func tablesHolding(t *testing.T, b *bundle, s string) []string {
	t.Helper()
	rows, err := b.db.Query(ctx(t), `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'agentpg' AND table_type = 'BASE TABLE' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables, holding []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil || len(tables) < 10 {
		t.Fatalf("tables %v, %v", tables, err)
	}
	for _, table := range tables {
		var found bool
		err := b.db.QueryRow(ctx(t), `SELECT EXISTS (SELECT 1 FROM agentpg.`+table+` x WHERE strpos(x::text, $1) > 0)`, s).Scan(&found)
		if err != nil {
			t.Fatal(err)
		}
		if found {
			holding = append(holding, table)
		}
	}
	return holding
}

// After EraseIdentifier, nothing of the end user remains in any table:
// sessions, nested agents' sessions, messages, archive, runs, tool calls,
// events, audit entries (whose chain still verifies). Another user of the tenant, and a user with the same identifier
// in another tenant, keep all of theirs.
func TestEraseIdentifier(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t)
	const victim, bystander, namesake = "VICTIM-7f3a", "BYSTANDER-91c2", "NAMESAKE-c4d1"
	userData(t, b, "acme", "user-1", victim)
	userData(t, b, "acme", "user-2", bystander)
	userData(t, b, "globex", "user-1", namesake)
	if err := b.agent.AuditLog().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, marker := range []string{victim, bystander, namesake} {
		holding := tablesHolding(t, b, marker)
		for _, table := range []string{"sessions", "messages", "message_archive", "tool_executions", "run_events", "audit_log"} {
			if !slices.Contains(holding, table) {
				t.Fatalf("%s is in %v, not in %s: the test writes too little", marker, holding, table)
			}
		}
	}
	before, err := b.agent.PreviewErasure(ctx(t), "acme", "user-1")
	if err != nil || before.Sessions < 2 || before.Messages == 0 || before.ArchivedMessages == 0 ||
		before.Runs == 0 || before.ToolCalls == 0 || before.RunEvents == 0 {
		t.Fatalf("preview %+v, %v", before, err)
	}
	if err := b.agent.EraseIdentifier(ctx(t), "acme", "user-1"); err != nil {
		t.Fatal(err)
	}
	if holding := tablesHolding(t, b, victim); len(holding) > 0 {
		t.Fatalf("the erased user is still in %v", holding)
	}
	for _, marker := range []string{bystander, namesake} {
		if holding := tablesHolding(t, b, marker); len(holding) < 6 {
			t.Fatalf("%s lost data: only in %v", marker, holding)
		}
	}
	for _, tenant := range []string{"acme", "globex"} {
		if err := b.agent.AuditLog().Verify(ctx(t), tenant); err != nil {
			t.Fatalf("the audit chain of %s after the erasure: %v", tenant, err)
		}
	}
	after, err := b.agent.PreviewErasure(ctx(t), "acme", "user-1")
	if err != nil || after != (agentpg.ErasureCounts{}) {
		t.Fatalf("after the erasure: %+v, %v", after, err)
	}
	// Erasing again, or an identifier the tenant never had, does nothing.
	if err := b.agent.EraseIdentifier(ctx(t), "acme", "user-1"); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.EraseIdentifier(ctx(t), "", "user-1"); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("no tenant: %v", err)
	}
}

// EraseTenant deletes every row of the tenant, its retention policy
// included, and nothing of another; the tenant's Session values stop
// working.
func TestEraseTenant(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t)
	const gone, kept = "GONE-5b1e", "KEPT-0d9a"
	sess := userData(t, b, "acme", "user-1", gone)
	userData(t, b, "acme", "user-2", gone)
	userData(t, b, "globex", "user-1", kept)
	for _, tenant := range []string{"acme", "globex"} {
		if err := b.agent.SetRetention(ctx(t), tenant, agentpg.GuideRetention); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.agent.EraseTenant(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.AuditLog().Verify(ctx(t), "acme"); err != nil {
		t.Fatalf("the erased tenant's audit chain: %v", err)
	}
	if holding := tablesHolding(t, b, gone); len(holding) > 0 {
		t.Fatalf("the erased tenant is still in %v", holding)
	}
	if holding := tablesHolding(t, b, kept); len(holding) < 6 {
		t.Fatalf("the other tenant lost data: only in %v", holding)
	}
	policies, err := b.agent.RetentionPolicies(ctx(t))
	if _, ok := policies["acme"]; err != nil || ok || policies["globex"] != agentpg.GuideRetention {
		t.Fatalf("policies %+v, %v", policies, err)
	}
	if _, err := sess.Run(context.Background(), "still there?"); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("a run of an erased session: %v", err)
	}
}
