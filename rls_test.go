package agentpg_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/tool"
)

// TestEverythingAsAppRole runs the library as a deployment does, connected
// as an application role that row-level security binds: sessions, runs,
// tools, approvals, nested agents, waiting for a busy session, events,
// compaction, enqueued runs and their worker, caller transactions, limits
// and usage, the audit log, and the paths across tenants (the rescuer,
// retention, usage anomalies, the audit log's tenants) and erasure. A
// statement sent without its tenant would find nothing and the step would
// fail: each one proves that the store sets the tenant on its path.
func TestEverythingAsAppRole(t *testing.T) {
	t.Parallel()
	app := agentpgtest.DBWithOptions(t, agentpgtest.DBOptions{AppRole: true})
	su := agentpgtest.OwnerDB(t, app)
	var weather, transfers atomic.Int32
	transfer := transferTool(t, &transfers)
	b := setupOn(t, app, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, &weather), transfer}
		c.ApprovalRequired = []string{"transfer"}
		c.ContextWindow = 20000
		c.Compaction = agentpg.CompactionConfig{Disabled: true, Strategy: compaction.StrategySummarize}
		c.Audit.Enabled = true
	})
	model := b.model
	if err := b.agent.SetTenantLimits(ctx(t), "acme", agentpg.TenantLimits{RequestsPerMinute: 1 << 20, TokensPerDay: 1 << 40,
		PerSession: agentpg.SessionLimits{RequestsPerMinute: 1 << 20, TokensPerDay: 1 << 40}}); err != nil {
		t.Fatalf("SetTenantLimits: %v", err)
	}
	researcher, err := agentpg.New(agentpg.Config{DB: app, Client: model.Client(), Model: "claude-sonnet-5-5", SystemPrompt: "Research."})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.agent.Executor().Registry().Register(researcher.AsTool("researcher", "Researches a topic.")); err != nil {
		t.Fatal(err)
	}
	sess := b.session(t, "acme", "ada")

	// A plain turn, and a turn with a tool.
	model.Push(agentpgtest.Text("Hello, Ada."))
	if res, err := sess.Run(ctx(t), "Hi"); err != nil || res.Text != "Hello, Ada." {
		t.Fatalf("plain turn: %+v, %v", res, err)
	}
	model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_w", "weather", map[string]any{"city": "Oslo"})),
		agentpgtest.Text("Sunny."))
	if res, err := sess.Run(ctx(t), "Weather?"); err != nil || res.Text != "Sunny." || weather.Load() != 1 {
		t.Fatalf("tool turn: %+v, %v, %d weather calls", res, err, weather.Load())
	}

	// A call that needs approval pauses the run; the decision and the
	// resumption come from another process.
	model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_t", "transfer", map[string]any{"city": "Rome"})),
		agentpgtest.Text("Paid."))
	paused, err := sess.Run(ctx(t), "Pay")
	if err != nil || paused.StopReason != agentpg.StopAwaitingApproval {
		t.Fatalf("approval turn: %+v, %v", paused, err)
	}
	other := b.another(t)
	if err := other.DecideToolCall(ctx(t), "acme", paused.RunID, "toolu_t", true, "ok"); err != nil {
		t.Fatalf("DecideToolCall: %v", err)
	}
	if res, err := other.ResumeRun(ctx(t), "acme", paused.RunID); err != nil || res.Text != "Paid." || transfers.Load() != 1 {
		t.Fatalf("ResumeRun: %+v, %v, %d transfers", res, err, transfers.Load())
	}
	var kinds []agentpg.EventKind
	for e, err := range other.RunEvents(ctx(t), "acme", paused.RunID, 0) {
		if err != nil {
			t.Fatalf("RunEvents: %v", err)
		}
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, agentpg.EventRunEnd) {
		t.Errorf("the run's events %v lack its end", kinds)
	}

	// A nested agent runs in a child session of the same tenant.
	model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_r", "researcher", map[string]any{"task": "find"})),
		agentpgtest.Text("found it"), agentpgtest.Text("The researcher found it."))
	if res, err := sess.Run(ctx(t), "Research"); err != nil || res.Text != "The researcher found it." {
		t.Fatalf("nested agent: %+v, %v", res, err)
	}

	// Runs of one session from several processes wait their turn as
	// waiters: a ticket taken, renewed while the first run lasts, given up
	// by a caller that stops waiting.
	var slow atomic.Bool
	model.SetResponder(func(agentpgtest.Request) agentpgtest.Reply {
		r := agentpgtest.Text("slow")
		if !slow.Swap(true) {
			r.Delay = 3 * time.Second
		}
		return r
	})
	processes := make([]*agentpg.Session, 3)
	for i := range processes {
		if processes[i], err = b.another(t).LoadSession(ctx(t), "acme", sess.ID); err != nil {
			t.Fatal(err)
		}
	}
	waiting := func() (n int, expires time.Time) {
		err := su.QueryRow(ctx(t), `SELECT count(*), coalesce(min(expires_at), 'epoch') FROM agentpg.session_waiters`).Scan(&n, &expires)
		if err != nil {
			t.Fatal(err)
		}
		return n, expires
	}
	var wg sync.WaitGroup
	results := make([]error, 2)
	sent := len(model.Requests())
	for i := range results {
		wg.Go(func() {
			_, results[i] = processes[i].Run(ctx(t), "slow")
		})
		if i == 0 {
			waitFor(t, func() bool { return len(model.Requests()) > sent })
		}
	}
	waitFor(t, func() bool { n, _ := waiting(); return n == 1 })
	_, taken := waiting()
	impatient, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	_, err = processes[2].Run(impatient, "no time")
	cancel()
	if !errors.Is(err, agentpg.ErrSessionBusy) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a run that stopped waiting: %v", err)
	}
	if n, _ := waiting(); n != 1 {
		t.Errorf("%d waiters after one gave up, want 1", n)
	}
	waitFor(t, func() bool { _, expires := waiting(); return expires.After(taken) })
	wg.Wait()
	if err := errors.Join(results...); err != nil {
		t.Fatalf("runs in turn: %v", err)
	}
	var waiters int
	if err := su.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.session_waiters`).Scan(&waiters); err != nil || waiters != 0 {
		t.Errorf("%d waiters left (%v), want every ticket served or given up", waiters, err)
	}

	// Compaction archives and summarizes.
	model.SetResponder(longAnswers(agentpgtest.Text("They talked.")))
	for range 24 {
		if _, err := sess.Run(ctx(t), "more"); err != nil {
			t.Fatal(err)
		}
	}
	if event, err := sess.Compact(ctx(t)); err != nil || event.MessagesArchived == 0 {
		t.Fatalf("Compact: %+v, %v", event, err)
	}
	archive, err := sess.Archive(ctx(t), agentpg.ListOptions{})
	if err != nil || len(archive.Items) == 0 {
		t.Fatalf("Archive: %d, %v", len(archive.Items), err)
	}
	if stats, err := sess.CompactionStats(ctx(t)); err != nil || stats.Compactions != 1 {
		t.Fatalf("CompactionStats: %+v, %v", stats, err)
	}

	// A session and a run made in the caller's transaction; a queued run
	// cancelled; enqueued runs executed by a worker.
	tx, err := app.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	txSess, err := b.agent.NewSessionTx(ctx(t), tx, "acme", "in-tx", nil)
	if err != nil {
		t.Fatalf("NewSessionTx: %v", err)
	}
	txRun, err := txSess.EnqueueTx(ctx(t), tx, "from a transaction")
	if err != nil {
		t.Fatalf("EnqueueTx: %v", err)
	}
	if err := tx.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	cancelled, err := sess.Enqueue(ctx(t), "never mind")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", cancelled); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	queued, err := sess.Enqueue(ctx(t), "later")
	if err != nil {
		t.Fatal(err)
	}
	model.SetResponder(func(agentpgtest.Request) agentpgtest.Reply { return agentpgtest.Text("done") })
	b.startWorker(t, agentpg.WorkerConfig{})
	for _, runID := range []string{txRun, queued} {
		if res, err := b.agent.WaitRun(ctx(t), "acme", runID); err != nil || res.Text != "done" {
			t.Fatalf("WaitRun(%s): %+v, %v", runID, res, err)
		}
	}

	// Listings, loads and the rescuer.
	if page, err := b.agent.ListSessions(ctx(t), "acme", agentpg.ListOptions{}); err != nil || len(page.Items) != 3 {
		t.Errorf("ListSessions: %d sessions, %v; want ada, her researcher's and in-tx", len(page.Items), err)
	}
	if _, err := b.agent.LoadSessionByIdentifier(ctx(t), "acme", "ada"); err != nil {
		t.Errorf("LoadSessionByIdentifier: %v", err)
	}
	runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{}, agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil || len(runs.Items) < 10 {
		t.Errorf("ListRuns: %d runs, %v", len(runs.Items), err)
	}
	if _, err := b.agent.FailStuckRuns(ctx(t), time.Minute); err != nil {
		t.Errorf("FailStuckRuns as the app role: %v", err)
	}

	// Another tenant finds nothing of acme's; acme deletes its session
	// and everything under it.
	if _, err := b.agent.LoadSession(ctx(t), "globex", sess.ID); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Errorf("globex loads acme's session: %v", err)
	}
	if _, err := b.agent.GetRun(ctx(t), "globex", paused.RunID); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Errorf("globex reads acme's run: %v", err)
	}
	if err := b.agent.DeleteSession(ctx(t), "acme", sess.ID); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	var left int
	if err := su.QueryRow(ctx(t), `SELECT (SELECT count(*) FROM agentpg.sessions) + (SELECT count(*) FROM agentpg.messages WHERE session_id <> $1)`,
		txSess.ID).Scan(&left); err != nil || left != 1 {
		t.Errorf("after DeleteSession, %d sessions and messages of ada's are left (%v); want only in-tx", left, err)
	}

	// Usage, counted with each step, and the anomalies across tenants.
	today := time.Now()
	if usage, err := b.agent.TenantUsage(ctx(t), "acme", today, today); err != nil || len(usage) == 0 || usage[0].Requests == 0 {
		t.Errorf("TenantUsage: %+v, %v", usage, err)
	}
	if _, err := b.agent.UsageAnomalies(ctx(t), 3); err != nil {
		t.Errorf("UsageAnomalies: %v", err)
	}

	// The audit log, once written, lists acme's chain, which verifies.
	if err := b.agent.Close(ctx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	log := other.AuditLog()
	if tenants, err := log.Tenants(ctx(t)); err != nil || !slices.Equal(tenants, []string{"acme"}) {
		t.Errorf("the audit log's tenants: %v, %v; want acme", tenants, err)
	}
	if err := log.Verify(ctx(t), "acme"); err != nil {
		t.Errorf("Verify: %v", err)
	}

	// Retention across tenants: the events of ended runs.
	if err := other.SetRetention(ctx(t), "", agentpg.RetentionPolicy{RunEvents: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	preview, err := other.PreviewRetention(ctx(t))
	if err != nil || preview.Tenants["acme"].RunEvents == 0 {
		t.Fatalf("PreviewRetention: %+v, %v", preview, err)
	}
	if report, err := other.ApplyRetention(ctx(t)); err != nil || report.Tenants["acme"].RunEvents != preview.Tenants["acme"].RunEvents {
		t.Errorf("ApplyRetention: %+v, %v; want %+v", report, err, preview)
	}

	// Erasing the tenant leaves nothing of it but its audit chain, blank,
	// which still verifies.
	if err := other.EraseTenant(ctx(t), "acme"); err != nil {
		t.Fatalf("EraseTenant: %v", err)
	}
	if err := su.QueryRow(ctx(t), `SELECT (SELECT count(*) FROM agentpg.sessions) + (SELECT count(*) FROM agentpg.tenant_limits)
		+ (SELECT count(*) FROM agentpg.tenant_usage) + (SELECT count(*) FROM agentpg.audit_log WHERE input <> '')`).Scan(&left); err != nil || left != 0 {
		t.Errorf("after EraseTenant, %d rows of acme are left (%v)", left, err)
	}
	if err := log.Verify(ctx(t), "acme"); err != nil {
		t.Errorf("Verify after the erasure: %v", err)
	}
}

// A plain turn as the application role takes 2 round trips, as it did
// before row-level security: the tenant's setting rides in the batch of
// each statement.
func TestPlainTurnRoundTripsAsAppRole(t *testing.T) {
	t.Parallel()
	counter := &statementCounter{}
	pool, _ := tracedPool(t, agentpgtest.DBWithOptions(t, agentpgtest.DBOptions{AppRole: true}), counter)
	b := setupOn(t, pool)
	b.model.SetResponder(agentpgtest.Echo)
	sess := b.session(t, "acme", "counted")
	const turns = 5
	counter.on.Store(true)
	for range turns {
		if _, err := sess.Run(ctx(t), "What is the time?"); err != nil {
			t.Fatal(err)
		}
	}
	counter.on.Store(false)
	if got := counter.statements.Load(); got != 2*turns {
		t.Errorf("%d plain turns took %d round trips, want %d", turns, got, 2*turns)
	}
}

// TestGrantAppRoleArguments checks that Agent.GrantAppRole refuses roles
// that row-level security would not bind as ErrInvalidArgument.
func TestGrantAppRoleArguments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, role := range []string{"", "public", "pg_read_all_data", b.db.Config().ConnConfig.User, "agentpg_nobody"} {
		if err := b.agent.GrantAppRole(ctx(t), role); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("GrantAppRole(%q) = %v, want ErrInvalidArgument", role, err)
		}
	}
}
