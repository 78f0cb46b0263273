package agentpg_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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
// runs are counted outside any process. With stopBefore or stopAfter, it
// calls stop before or after its effect instead of returning, as a tool a
// crash interrupts.
type countingTool struct {
	name                  string
	file                  string
	idempotent            bool
	stopBefore, stopAfter func()
}

func (t countingTool) Name() string        { return t.name }
func (t countingTool) Description() string { return "Counts its runs." }
func (t countingTool) Idempotent() bool    { return t.idempotent }
func (t countingTool) InputSchema() tool.ToolSchema {
	return tool.ToolSchema{Type: "object", Properties: map[string]tool.PropertyDef{"amount": {Type: "integer"}}}
}

func (t countingTool) Execute(ctx context.Context, _ json.RawMessage) (string, error) {
	if t.stopBefore != nil {
		t.stopBefore()
	}
	f, err := os.OpenFile(t.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	fmt.Fprintln(f, os.Getpid())
	if err := f.Close(); err != nil {
		return "", err
	}
	if t.stopAfter != nil {
		t.stopAfter()
	}
	return t.name + " done", nil
}

// crashTools are the tools of the crash tests: a payment, which must run
// at most once, and a lookup, which may run again. The payment stops dead,
// after saying so in dir, at the kill points "after the assistant commit"
// (before its effect) and "mid-tool" (after it).
func crashTools(dir, point string) []tool.Tool {
	stop := func() { stopDead(dir) }
	charge := countingTool{name: "charge", file: filepath.Join(dir, "charge")}
	switch point {
	case "after the assistant commit":
		charge.stopBefore = stop
	case "mid-tool":
		charge.stopAfter = stop
	}
	return []tool.Tool{charge, countingTool{name: "lookup", file: filepath.Join(dir, "lookup"), idempotent: true}}
}

// stopDead says in dir that the process reached its kill point, and waits
// to be killed.
func stopDead(dir string) {
	_ = os.WriteFile(filepath.Join(dir, "reached"), nil, 0o600)
	select {}
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

// killPoints are the step boundaries of a two-tool run at which the
// crash tests kill the process running it. completes says whether a
// synchronous run killed there completes once resumed in another process,
// or fails with a stored reason because nothing of it was stored; an
// enqueued run, whose prompt was stored when it was enqueued, always
// completes. interrupted says whether the payment was under way, so that
// the model is told its effect is unknown.
var killPoints = []struct {
	name        string
	completes   bool
	interrupted bool
}{
	{name: "before the model call"},
	{name: "mid-stream"},
	{name: "after the assistant commit", completes: true, interrupted: true},
	{name: "mid-tool", completes: true, interrupted: true},
	{name: "after the tool commit", completes: true},
	{name: "before completion", completes: true},
}

// A run killed (SIGKILL) at each step boundary of a two-tool run is
// continued by another process: a synchronous Run with ResumeRun, an
// enqueued run by a Worker once River's rescuer has taken its job from the
// dead one. Each run completes, or fails with a stored reason when nothing
// of it was stored; a tool call whose result is stored never runs again,
// the interrupted payment never runs twice and is reported to the model,
// the idempotent lookup runs at least once, every history sent is valid,
// no message is lost or duplicated, and the session goes on.
func TestKillAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"run", "worker"} {
		for _, point := range killPoints {
			t.Run(mode+"/"+point.name, func(t *testing.T) {
				t.Parallel()
				testKillAt(t, mode, point.name, point.completes || mode == "worker", point.interrupted)
			})
		}
	}
}

func testKillAt(t *testing.T, mode, point string, completes, interrupted bool) {
	dir := t.TempDir()
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = crashTools(dir, "")
		c.LeaseTTL = time.Second
	})
	sess := b.session(t, "acme", "payer")
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if len(req.Messages) == 1 {
			return agentpgtest.Blocks(
				agentpgtest.TextBlock("Paying now."),
				agentpgtest.ToolUse("toolu_charge", "charge", map[string]any{"amount": 10}),
				agentpgtest.ToolUse("toolu_lookup", "lookup", map[string]any{}),
			)
		}
		return agentpgtest.Echo(req)
	})
	var res *agentpg.Result
	var err error
	var runID string
	if mode == "worker" {
		if runID, err = sess.Enqueue(ctx(t), crashPrompt); err != nil {
			t.Fatal(err)
		}
		killAt(t, b, sess.ID, dir, point, mode)
		b.startWorker(t, agentpg.WorkerConfig{RescueAfter: 2 * time.Second})
		waitCtx, cancel := context.WithTimeout(ctx(t), 2*time.Minute)
		defer cancel()
		res, err = b.agent.WaitRun(waitCtx, "acme", runID)
	} else {
		killAt(t, b, sess.ID, dir, point, mode)
		var stuck agentpg.RunInfo
		waitFor(t, func() bool {
			runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunRunning}, agentpg.ListOptions{})
			if err != nil || len(runs.Items) != 1 {
				return false
			}
			stuck = runs.Items[0]
			return stuck.Stuck
		})
		runID = stuck.ID
		res, err = b.agent.ResumeRun(ctx(t), "acme", runID) // this process: another than the killed one
	}
	info, infoErr := b.agent.GetRun(ctx(t), "acme", runID)
	if infoErr != nil {
		t.Fatal(infoErr)
	}
	switch {
	case completes && (err != nil || info.Status != agentpg.RunCompleted || res.Text == ""):
		t.Fatalf("resumed: %+v, %v; run %+v", res, err, info)
	case !completes && (!errors.Is(err, agentpg.ErrRunInterrupted) || info.Status != agentpg.RunFailed || info.Error == ""):
		t.Fatalf("resumed: %v; run %+v, want it failed with a stored reason", err, info)
	}
	// The payment runs once, unless the run fails before the model asks
	// for it or the crash interrupted it before its effect.
	charges := 0
	if completes && point != "after the assistant commit" {
		charges = 1
	}
	if n := lines(t, filepath.Join(dir, "charge")); n != charges {
		t.Fatalf("the payment ran %d times, want %d", n, charges)
	}
	if n := lines(t, filepath.Join(dir, "lookup")); completes && n < 1 {
		t.Fatalf("the idempotent lookup ran %d times, want at least once", n)
	}
	if rejected := b.model.Rejected(); len(rejected) > 0 {
		t.Fatalf("the model server rejected %d requests: %s", len(rejected), rejected[0].RejectReason)
	}
	roles, _ := conversation(t, sess)
	if want := "user,assistant,user,assistant"; completes && strings.Join(roles, ",") != want {
		t.Fatalf("stored messages %v, want %s: lost or duplicated", roles, want)
	}
	if completes {
		results := toolResults(t, b.model)
		if len(results) != 2 || results[0].IsError != interrupted || results[1].IsError {
			t.Fatalf("the model was told %q (%v), %q (%v)", resultText(results[0]), results[0].IsError, resultText(results[1]), results[1].IsError)
		}
	}
	if _, err := sess.Run(ctx(t), "and now?"); err != nil {
		t.Fatalf("the session after the resumed run: %v", err)
	}
}

// crashPrompt is the prompt of the crash tests' runs.
const crashPrompt = "pay the invoice"

// killAt has a second OS process run the session (mode "run") or a Worker
// execute its enqueued run (mode "worker") until it reaches point, and
// kills it there with SIGKILL.
func killAt(t *testing.T, b *bundle, sessionID, dir, point, mode string) {
	t.Helper()
	out := killWhenReached(t, "TestCrashHelper", dir, point,
		"AGENTPG_CRASH_DB="+b.db.Config().ConnString(),
		"AGENTPG_CRASH_MODEL="+b.model.URL(),
		"AGENTPG_CRASH_SESSION="+sessionID,
		"AGENTPG_CRASH_DIR="+dir,
		"AGENTPG_CRASH_POINT="+point,
		"AGENTPG_CRASH_MODE="+mode,
	)
	if strings.Contains(out, "--- FAIL") {
		t.Fatalf("the helper process failed:\n%s", out)
	}
}

// killWhenReached runs the test helper in a second OS process of this test
// binary, with env added to the environment, until it says (stopDead in
// dir) that it reached point, then kills it with SIGKILL and returns what it
// printed.
func killWhenReached(t *testing.T, helper, dir, point string, env ...string) string {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.v")
	child.Env = append(os.Environ(), env...)
	out := &strings.Builder{}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	reached := filepath.Join(dir, "reached")
	deadline := time.Now().Add(30 * time.Second)
	for _, err := os.Stat(reached); err != nil; _, err = os.Stat(reached) {
		if time.Now().After(deadline) {
			t.Fatalf("the helper process did not reach %q in 30s:\n%s", point, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	return out.String()
}

// TestCrashHelper is the process killAt kills: it runs the session, or a
// Worker, and stops dead at the kill point, after saying so in a file. It
// does nothing unless started by killAt.
func TestCrashHelper(t *testing.T) {
	dsn := os.Getenv("AGENTPG_CRASH_DB")
	if dsn == "" {
		return
	}
	dir, point := os.Getenv("AGENTPG_CRASH_DIR"), os.Getenv("AGENTPG_CRASH_POINT")
	stop := func() { stopDead(dir) }
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(option.WithBaseURL(os.Getenv("AGENTPG_CRASH_MODEL")), option.WithAPIKey("test"),
		option.WithMaxRetries(0), option.WithMiddleware(stopMidStream(point, stop)))
	agent, err := agentpg.New(agentpg.Config{
		DB: pool, Client: &client, Model: "claude-sonnet-5-5", LeaseTTL: time.Second,
		Tools: crashTools(dir, point),
	})
	if err != nil {
		t.Fatal(err)
	}
	var modelCalls, toolCalls atomic.Int32
	agent.OnBeforeMessage(func(context.Context, []any) error {
		if modelCalls.Add(1) == 1 && point == "before the model call" {
			stop()
		}
		return nil
	})
	agent.OnAfterMessage(func(context.Context, any) error {
		if modelCalls.Load() == 2 && point == "before completion" {
			stop()
		}
		return nil
	})
	agent.OnToolCall(func(context.Context, string, json.RawMessage, string, error) error {
		if toolCalls.Add(1) == 1 && point == "after the tool commit" {
			stop()
		}
		return nil
	})
	if os.Getenv("AGENTPG_CRASH_MODE") == "worker" {
		w, err := agentpg.NewWorker(agent, agentpg.WorkerConfig{RescueAfter: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		t.Fatal("the worker did not reach the kill point in a minute")
	}
	sess, err := agent.LoadSession(t.Context(), "acme", os.Getenv("AGENTPG_CRASH_SESSION"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.Run(t.Context(), crashPrompt)
	t.Fatalf("Run returned (%v) instead of being killed", err)
}

// stopMidStream is a client middleware that, at the kill point
// "mid-stream", calls stop once the model's answer has begun to arrive.
func stopMidStream(point string, stop func()) option.Middleware {
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(req)
		if err == nil && point == "mid-stream" {
			resp.Body = &stopOnDelta{ReadCloser: resp.Body, stop: stop}
		}
		return resp, err
	}
}

// stopOnDelta calls stop when the stream it reads brings a text delta.
type stopOnDelta struct {
	io.ReadCloser
	stop func()
}

func (r *stopOnDelta) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if bytes.Contains(p[:n], []byte("text_delta")) {
		r.stop()
	}
	return n, err
}

// PostgreSQL connections terminated in the middle of a run: the run
// completes or fails with a reason, never stays running, and the pool
// recovers for the next run.
func TestConnectionsTerminatedMidRun(t *testing.T) {
	t.Parallel()
	slow, started, release := blockingTool(t)
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
	killRunMidCall(t, b, b.session(t, "acme", "user-1"))
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

// killRunMidCall runs the session in another process, which is killed
// while its model call is under way: its run is left running, its lease to
// expire.
func killRunMidCall(t *testing.T, b *bundle, sess *agentpg.Session) {
	t.Helper()
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("never")}, Delay: time.Minute})
	child := helperProcess(t, b, sess.ID, "run")
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })
	child.kill(t)
}
