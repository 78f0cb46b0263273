package agentpg_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// countingTool appends a line to a file each time it runs, so that its
// runs are counted outside any process; with block set, it never returns
// after counting, as a tool a crash interrupts.
type countingTool struct {
	name       string
	file       string
	idempotent bool
	block      bool
}

func (t countingTool) Name() string        { return t.name }
func (t countingTool) Description() string { return "Counts its runs." }
func (t countingTool) Idempotent() bool    { return t.idempotent }
func (t countingTool) InputSchema() tool.ToolSchema {
	return tool.ToolSchema{Type: "object", Properties: map[string]tool.PropertyDef{"amount": {Type: "integer"}}}
}

func (t countingTool) Execute(ctx context.Context, _ json.RawMessage) (string, error) {
	f, err := os.OpenFile(t.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	fmt.Fprintln(f, os.Getpid())
	if err := f.Close(); err != nil {
		return "", err
	}
	if t.block {
		<-ctx.Done() // until the process is killed
	}
	return t.name + " done", nil
}

// crashTools are the tools of the crash tests: a payment, which must run
// at most once, and a lookup, which may run again.
func crashTools(dir string, block bool) []tool.Tool {
	return []tool.Tool{
		countingTool{name: "charge", file: filepath.Join(dir, "charge"), block: block},
		countingTool{name: "lookup", file: filepath.Join(dir, "lookup"), idempotent: true},
	}
}

func lines(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// A synchronous run killed (SIGKILL) in the middle of a tool call is
// continued with ResumeRun from another process: the call that completed
// is not run again, the interrupted non-idempotent one is reported to the
// model as interrupted and never re-run, the idempotent one runs again,
// the history sent stays valid and the session goes on.
func TestResumeAfterKillMidTool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = crashTools(dir, false)
		c.LeaseTTL = time.Second
	})
	sess := b.session(t, "acme", "payer")
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if len(req.Messages) == 1 {
			return agentpgtest.Blocks(
				agentpgtest.ToolUse("toolu_charge", "charge", map[string]any{"amount": 10}),
				agentpgtest.ToolUse("toolu_lookup", "lookup", map[string]any{}),
			)
		}
		return agentpgtest.Echo(req)
	})

	child := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	child.Env = append(os.Environ(),
		"AGENTPG_CRASH_DB="+b.db.Config().ConnString(),
		"AGENTPG_CRASH_MODEL="+b.model.URL(),
		"AGENTPG_CRASH_SESSION="+sess.ID,
		"AGENTPG_CRASH_DIR="+dir,
	)
	out := &strings.Builder{}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	waitFor(t, func() bool {
		return lines(t, filepath.Join(dir, "charge")) == 1 && lines(t, filepath.Join(dir, "lookup")) == 1
	})
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if strings.Contains(out.String(), "--- FAIL") {
		t.Fatalf("the helper process failed:\n%s", out)
	}

	var stuck agentpg.RunInfo
	waitFor(t, func() bool {
		runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunRunning}, agentpg.ListOptions{})
		if err != nil || len(runs.Items) != 1 {
			return false
		}
		stuck = runs.Items[0]
		return stuck.Stuck
	})
	ledger, err := sess.ToolCalls(ctx(t), stuck.ID)
	if err != nil || len(ledger) != 2 || ledger[0].Status != "started" || ledger[1].Status != "started" {
		t.Fatalf("the ledger after the crash: %+v, %v", ledger, err)
	}

	res, err := b.agent.ResumeRun(ctx(t), "acme", stuck.ID) // this process: another than the crashed one
	if err != nil {
		t.Fatalf("ResumeRun: %v", err)
	}
	if n := lines(t, filepath.Join(dir, "charge")); n != 1 {
		t.Fatalf("the payment ran %d times", n)
	}
	if n := lines(t, filepath.Join(dir, "lookup")); n != 2 {
		t.Fatalf("the idempotent lookup ran %d times, want again after the crash", n)
	}
	results := toolResults(t, b.model)
	if len(results) != 2 || !results[0].IsError || !strings.Contains(resultText(results[0]), "interrupted") ||
		results[1].IsError || resultText(results[1]) != "lookup done" {
		t.Fatalf("the model was told %q (%v), %q (%v)", resultText(results[0]), results[0].IsError, resultText(results[1]), results[1].IsError)
	}
	if rejected := b.model.Rejected(); len(rejected) > 0 {
		t.Fatalf("the model server rejected %d requests as invalid", len(rejected))
	}
	roles, _ := conversation(t, sess)
	if strings.Join(roles, ",") != "user,assistant,user,assistant" {
		t.Fatalf("stored messages %v: lost or duplicated", roles)
	}
	if info, err := b.agent.GetRun(ctx(t), "acme", res.RunID); err != nil || info.Status != agentpg.RunCompleted {
		t.Fatalf("run %+v, %v", info, err)
	}
	if _, err := sess.Run(ctx(t), "and now?"); err != nil {
		t.Fatalf("the session after the resumed run: %v", err)
	}
}

// TestCrashHelper is the process TestResumeAfterKillMidTool kills: it runs
// the session until its payment tool blocks. It does nothing unless started
// by that test.
func TestCrashHelper(t *testing.T) {
	dsn := os.Getenv("AGENTPG_CRASH_DB")
	if dsn == "" {
		return
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(option.WithBaseURL(os.Getenv("AGENTPG_CRASH_MODEL")), option.WithAPIKey("test"), option.WithMaxRetries(0))
	agent, err := agentpg.New(agentpg.Config{
		DB: pool, Client: &client, Model: "claude-sonnet-5-5", LeaseTTL: time.Second,
		Tools: crashTools(os.Getenv("AGENTPG_CRASH_DIR"), true),
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := agent.LoadSession(t.Context(), "acme", os.Getenv("AGENTPG_CRASH_SESSION"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.Run(t.Context(), "pay the invoice")
	t.Fatalf("Run returned (%v) instead of being killed", err)
}

// PostgreSQL connections terminated in the middle of a run: the run
// completes or fails with a reason, never stays running, and the pool
// recovers for the next run.
func TestConnectionsTerminatedMidRun(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	slow, err := tool.NewFunc("slow", "Takes its time.", func(ctx context.Context, in cityInput) (string, error) {
		close(started)
		<-release
		return "done", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{slow} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "slow", map[string]any{"city": "Lisbon"})), agentpgtest.Text("finished"))
	done := make(chan error, 1)
	go func() { _, err := sess.Run(ctx(t), "go"); done <- err }()
	<-started
	admin, err := pgxpool.New(ctx(t), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var terminated int
	err = admin.QueryRow(ctx(t), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1`,
		b.db.Config().ConnConfig.Database).Scan(&terminated)
	if err != nil || terminated == 0 {
		t.Fatalf("terminated %d backends: %v", terminated, err)
	}
	close(release)
	runErr := <-done
	runs := runStatuses(t, sess)
	if len(runs) != 1 || (runs[0] == agentpg.RunCompleted) != (runErr == nil) || (runs[0] != agentpg.RunCompleted && runs[0] != agentpg.RunFailed) {
		t.Fatalf("run %q, error %v", runs, runErr)
	}
	b.model.Push(agentpgtest.Text("again"))
	if _, err := sess.Run(ctx(t), "next"); err != nil {
		t.Fatalf("the pool did not recover: %v", err)
	}
}

// The rescuer fails a synchronous run no process holds once the grace
// period is over, and not before.
func TestFailStuckRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.LeaseTTL = time.Second })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("never")}, Delay: time.Minute})
	child := helperProcess(t, b, sess.ID, "run")
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })
	child.kill(t)
	waitFor(t, func() bool {
		runs, _ := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunRunning}, agentpg.ListOptions{})
		return len(runs.Items) == 1 && runs.Items[0].Stuck
	})
	if n, err := b.agent.FailStuckRuns(ctx(t), time.Hour); err != nil || n != 0 {
		t.Fatalf("within the grace period: failed %d, %v", n, err)
	}
	if n, err := b.agent.FailStuckRuns(ctx(t), 0); err != nil || n != 1 {
		t.Fatalf("after the grace period: failed %d, %v", n, err)
	}
	runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{}, agentpg.ListOptions{})
	if err != nil || len(runs.Items) != 1 || runs.Items[0].Status != agentpg.RunFailed || runs.Items[0].ErrorClass != "interrupted" {
		t.Fatalf("runs %+v, %v", runs.Items, err)
	}
}
