package agentpg_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// A run whose model calls a tool that needs approval pauses before any
// call of the step runs, releases the session, and goes on in another
// process once every call is decided.
func TestApprovals(t *testing.T) {
	t.Parallel()
	var weather, transfers atomic.Int32
	transfer := transferTool(t, &transfers)
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, &weather), transfer}
		c.ApprovalRequired = []string{"transfer"}
	})
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Blocks(
			agentpgtest.ToolUse("toolu_w", "weather", map[string]any{"city": "Paris"}),
			agentpgtest.ToolUse("toolu_t1", "transfer", map[string]any{"city": "Oslo"}),
			agentpgtest.ToolUse("toolu_t2", "transfer", map[string]any{"city": "Rome"}),
		),
		agentpgtest.Text("one transfer done, one denied"),
	)
	res, err := sess.Run(ctx(t), "pay")
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != agentpg.StopAwaitingApproval || len(res.PendingApprovals) != 2 ||
		res.PendingApprovals[0].ToolUseID != "toolu_t1" || res.PendingApprovals[1].Name != "transfer" {
		t.Fatalf("paused result %+v", res)
	}
	if weather.Load() != 0 || transfers.Load() != 0 {
		t.Fatal("a call of the paused step ran")
	}
	info, err := b.agent.GetRun(ctx(t), "acme", res.RunID)
	if err != nil || info.Status != agentpg.RunAwaitingApproval {
		t.Fatalf("run %+v, %v", info, err)
	}
	// The session takes no new run meanwhile, and the run cannot resume.
	if _, err := sess.Run(ctx(t), "anything else?"); !errors.Is(err, agentpg.ErrApprovalPending) {
		t.Fatalf("a new run: %v, want ErrApprovalPending", err)
	}
	if _, err := b.agent.ResumeRun(ctx(t), "acme", res.RunID); !errors.Is(err, agentpg.ErrApprovalPending) {
		t.Fatalf("resume before the decisions: %v, want ErrApprovalPending", err)
	}
	waiting, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunAwaitingApproval}, agentpg.ListOptions{})
	if err != nil || len(waiting.Items) != 1 || waiting.Items[0].ID != res.RunID {
		t.Fatalf("runs awaiting approval: %+v, %v", waiting.Items, err)
	}

	// Decisions are tenant-scoped, once each.
	if err := b.agent.DecideToolCall(ctx(t), "globex", res.RunID, "toolu_t1", true, "mallory"); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Fatalf("another tenant decides: %v, want ErrRunNotFound", err)
	}
	if err := b.agent.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_w", true, "not pending"); !errors.Is(err, agentpg.ErrNotPending) {
		t.Fatalf("deciding a call that needs no approval: %v, want ErrNotPending", err)
	}
	if err := b.agent.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_nope", true, ""); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Fatalf("deciding an unknown call: %v, want ErrRunNotFound", err)
	}
	if err := b.agent.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_t1", true, "ok by alice"); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_t1", false, "changed my mind"); !errors.Is(err, agentpg.ErrNotPending) {
		t.Fatalf("deciding twice: %v, want ErrNotPending", err)
	}
	other := b.another(t) // another process decides and resumes
	if err := other.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_t2", false, "bob: Rome is not a payee"); err != nil {
		t.Fatal(err)
	}
	final, err := other.ResumeRun(ctx(t), "acme", res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Text != "one transfer done, one denied" || final.RunID != res.RunID {
		t.Fatalf("resumed result %+v", final)
	}
	if weather.Load() != 1 || transfers.Load() != 1 {
		t.Fatalf("weather ran %d times, transfer %d; want once each", weather.Load(), transfers.Load())
	}
	results := toolResults(t, b.model)
	if len(results) != 3 || results[0].IsError || results[1].IsError || !results[2].IsError ||
		!strings.Contains(resultText(results[2]), "bob: Rome is not a payee") {
		t.Fatalf("the model got %+v", results)
	}
	if got, err := b.agent.WaitRun(ctx(t), "acme", res.RunID); err != nil || got.Text != final.Text {
		t.Fatalf("WaitRun: %+v, %v", got, err)
	}
	ledger, err := sess.ToolCalls(ctx(t), res.RunID)
	if err != nil || len(ledger) != 3 {
		t.Fatalf("ledger %+v, %v", ledger, err)
	}
	for _, c := range ledger {
		if c.Status != "completed" {
			t.Errorf("call %s is %s after the run", c.ToolUseID, c.Status)
		}
	}
	if _, err := sess.Run(ctx(t), "thanks"); err != nil {
		t.Fatalf("the session after the approvals: %v", err)
	}
}

// CancelRun stops a run awaiting approval at once, and a running one at its
// next step boundary; a finished run cannot be cancelled.
func TestCancelRun(t *testing.T) {
	t.Parallel()
	slow, started, release := blockingTool(t)
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{slow} })
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "slow", map[string]any{"city": "Lisbon"})))
	done := make(chan error, 1)
	go func() {
		_, err := sess.RunWithOptions(ctx(t), "go", agentpg.RunOptions{})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the run ended before its tool started: %v", err)
	}
	runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunRunning}, agentpg.ListOptions{})
	if err != nil || len(runs.Items) != 1 || runs.Items[0].Stuck {
		t.Fatalf("running runs %+v, %v", runs.Items, err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", runs.Items[0].ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; !errors.Is(err, agentpg.ErrRunCancelled) {
		t.Fatalf("the cancelled run returned %v", err)
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("%d model calls: the cancelled run went on past the step boundary", n)
	}
	info, err := b.agent.GetRun(ctx(t), "acme", runs.Items[0].ID)
	if err != nil || info.Status != agentpg.RunCancelled || info.ErrorClass != "cancelled" {
		t.Fatalf("run %+v, %v", info, err)
	}
	if _, err := b.agent.WaitRun(ctx(t), "acme", info.ID); !errors.Is(err, agentpg.ErrRunCancelled) {
		t.Fatalf("WaitRun of a cancelled run: %v", err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", info.ID); !errors.Is(err, agentpg.ErrRunFinished) {
		t.Fatalf("cancelling twice: %v, want ErrRunFinished", err)
	}
	if err := b.agent.CancelRun(ctx(t), "globex", info.ID); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Fatalf("another tenant cancels: %v, want ErrRunNotFound", err)
	}
	// The session goes on; its conversation holds no trace of the run.
	b.model.Push(agentpgtest.Text("fresh"))
	if _, err := sess.Run(ctx(t), "again"); err != nil {
		t.Fatal(err)
	}
	if last := b.model.Requests()[len(b.model.Requests())-1]; len(last.Messages) != 1 {
		t.Fatalf("the cancelled run leaked into the conversation: %d messages", len(last.Messages))
	}
}

// A run awaiting approval is cancelled at once; its calls can no longer be
// decided, and the session takes new runs again.
func TestCancelRunAwaitingApproval(t *testing.T) {
	t.Parallel()
	b, sess, calls := approvalSetup(t)
	b.model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"})))
	res, err := sess.Run(ctx(t), "weather?")
	if err != nil || res.StopReason != agentpg.StopAwaitingApproval {
		t.Fatalf("%+v, %v", res, err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", res.RunID); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.DecideToolCall(ctx(t), "acme", res.RunID, "toolu_1", true, "too late"); !errors.Is(err, agentpg.ErrRunFinished) {
		t.Fatalf("deciding a call of a cancelled run: %v, want ErrRunFinished", err)
	}
	if _, err := b.agent.ResumeRun(ctx(t), "acme", res.RunID); !errors.Is(err, agentpg.ErrRunCancelled) {
		t.Fatalf("resuming a cancelled run: %v, want its RunError", err)
	}
	if calls.Load() != 0 {
		t.Fatal("the cancelled call ran")
	}
	if _, err := sess.Run(ctx(t), "something else"); err != nil {
		t.Fatalf("the session after the cancelled run: %v", err)
	}
}

// blockingTool returns a tool named "slow" that says when it starts and
// returns once release is closed.
func blockingTool(t *testing.T) (slow tool.Tool, started <-chan struct{}, release chan struct{}) {
	t.Helper()
	start, release := make(chan struct{}), make(chan struct{})
	slow, err := tool.NewFunc("slow", "Takes its time.", func(ctx context.Context, in cityInput) (string, error) {
		close(start)
		<-release
		return "done", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return slow, start, release
}

// approvalSetup returns a bundle whose weather tool (its calls counted)
// needs approval, and a session of tenant acme.
func approvalSetup(t *testing.T) (*bundle, *agentpg.Session, *atomic.Int32) {
	t.Helper()
	calls := new(atomic.Int32)
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, calls)}
		c.ApprovalRequired = []string{"weather"}
	})
	return b, b.session(t, "acme", "user-1"), calls
}
