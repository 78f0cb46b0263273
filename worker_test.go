package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// startWorker starts a worker of the bundle's agent, stopped when the test
// ends.
func (b *bundle) startWorker(t testing.TB, cfg agentpg.WorkerConfig) *agentpg.Worker {
	t.Helper()
	w, err := agentpg.NewWorker(b.agent, cfg)
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
	})
	return w
}

func TestWorkerRunsEnqueuedRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Text("Hello, Ada."))

	runID, err := sess.Enqueue(ctx(t), "Hi, I am Ada.")
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	info, err := b.agent.GetRun(ctx(t), "acme", runID)
	if err != nil || info.Status != agentpg.RunQueued {
		t.Fatalf("GetRun before the worker = %+v, %v; want queued", info, err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})

	res, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil {
		t.Fatalf("WaitRun: %v", err)
	}
	if res.Text != "Hello, Ada." || res.RunID != runID {
		t.Fatalf("result = %+v", res)
	}
	roles, texts := conversation(t, sess)
	if !slices.Equal(roles, []string{"user", "assistant"}) || !slices.Equal(texts, []string{"Hi, I am Ada.", "Hello, Ada."}) {
		t.Fatalf("history = %q %q", roles, texts)
	}
	if got := runStatuses(t, sess); !slices.Equal(got, []string{agentpg.RunCompleted}) {
		t.Fatalf("run statuses = %q", got)
	}
}

func TestWorkerStartsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.startWorker(t, agentpg.WorkerConfig{Concurrency: 1})
	if err := w.Start(ctx(t)); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("second Start = %v, want ErrInvalidArgument", err)
	}
	// The first Start's runner still executes runs.
	b.model.Push(agentpgtest.Text("Still here."))
	runID, err := b.session(t, "acme", "user-1").Enqueue(ctx(t), "Hello?")
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if res, err := b.agent.WaitRun(ctx(t), "acme", runID); err != nil || res.Text != "Still here." {
		t.Fatalf("WaitRun = %+v, %v", res, err)
	}
}

func TestWorkerExecutesAtMostConcurrencyRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var inFlight, most atomic.Int32
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		return agentpgtest.Echo(req)
	})
	b.startWorker(t, agentpg.WorkerConfig{Concurrency: 2})
	var ids []string
	for i := range 6 {
		id, err := b.session(t, "acme", fmt.Sprintf("user-%d", i)).Enqueue(ctx(t), "Hello")
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, err := b.agent.WaitRun(ctx(t), "acme", id); err != nil {
			t.Fatalf("WaitRun: %v", err)
		}
	}
	if m := most.Load(); m > 2 {
		t.Fatalf("%d runs of 6 sessions called the model at once, want at most Concurrency (2)", m)
	}
}

func TestEnqueueTxRolledBackLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")

	tx, err := b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	runID, err := sess.EnqueueTx(ctx(t), tx, "never")
	if err != nil {
		t.Fatalf("EnqueueTx: %v", err)
	}
	if err := tx.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.agent.GetRun(ctx(t), "acme", runID); !errors.Is(err, agentpg.ErrRunNotFound) {
		t.Fatalf("GetRun after rollback: %v, want ErrRunNotFound", err)
	}
	var jobs int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.river_job`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 0 {
		t.Fatalf("%d River jobs after rollback, want 0", jobs)
	}
}

func TestEnqueueTxCommittedRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Text("done"))
	b.startWorker(t, agentpg.WorkerConfig{})

	tx, err := b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	runID, err := sess.EnqueueTx(ctx(t), tx, "in a transaction")
	if err != nil {
		t.Fatalf("EnqueueTx: %v", err)
	}
	var jobs int
	if err := tx.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.river_job WHERE kind = $1 AND args->>'run_id' = $2`,
		agentpg.RunJobKind, runID).Scan(&jobs); err != nil || jobs != 1 {
		t.Fatalf("jobs in the transaction = %d, %v; want 1", jobs, err)
	}
	if err := tx.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	res, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil || res.Text != "done" {
		t.Fatalf("WaitRun = %+v, %v", res, err)
	}
}

func TestEnqueuedRunsOfSessionRunInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	prompts := []string{"first", "second", "third"}
	var ids []string
	for _, p := range prompts {
		id, err := sess.Enqueue(ctx(t), p)
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		ids = append(ids, id)
	}
	b.startWorker(t, agentpg.WorkerConfig{Concurrency: 4})
	for _, id := range ids {
		if _, err := b.agent.WaitRun(ctx(t), "acme", id); err != nil {
			t.Fatalf("WaitRun %s: %v", id, err)
		}
	}
	reqs := b.model.Requests()
	if len(reqs) != 3 {
		t.Fatalf("model got %d requests, want 3", len(reqs))
	}
	for i, req := range reqs {
		if got := req.LastUserText(); got != prompts[i] {
			t.Fatalf("request %d asks %q, want %q", i, got, prompts[i])
		}
		// Each run sees the previous runs' turns: 2 messages each, and its
		// prompt.
		if len(req.Messages) != 2*i+1 {
			t.Fatalf("request %d has %d messages, want %d", i, len(req.Messages), 2*i+1)
		}
	}
	_, texts := conversation(t, sess)
	if len(texts) != 6 || texts[0] != "first" || texts[2] != "second" || texts[4] != "third" {
		t.Fatalf("history = %q", texts)
	}
}

func TestEnqueueOnAnotherTenantsSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mine := b.session(t, "acme", "user-1")
	// A Session value claiming the session for another tenant: the insert
	// is scoped by tenant and finds no session.
	forged := *mine
	forged.TenantID = "globex"
	if _, err := forged.Enqueue(ctx(t), "hello"); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("Enqueue as another tenant: %v, want ErrSessionNotFound", err)
	}
	tx, err := b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := forged.EnqueueTx(ctx(t), tx, "hello"); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("EnqueueTx as another tenant: %v, want ErrSessionNotFound", err)
	}
	// The caller's transaction is still usable.
	if _, err := mine.EnqueueTx(ctx(t), tx, "hello"); err != nil {
		t.Fatalf("EnqueueTx after the refused one: %v", err)
	}
	if statuses := runStatuses(t, mine); len(statuses) != 0 {
		t.Fatalf("runs = %q, want none outside the transaction", statuses)
	}
}

func TestCancelQueuedRunNeverCallsModel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	runID, err := sess.Enqueue(ctx(t), "cancel me")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", runID); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	b.model.Push(agentpgtest.Text("after"))
	next, err := sess.Enqueue(ctx(t), "after the cancelled one")
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	if _, err := b.agent.WaitRun(ctx(t), "acme", next); err != nil {
		t.Fatalf("WaitRun of the next run: %v", err)
	}
	if _, err := b.agent.WaitRun(ctx(t), "acme", runID); !errors.Is(err, agentpg.ErrRunCancelled) {
		t.Fatalf("WaitRun of the cancelled run: %v, want ErrRunCancelled", err)
	}
	for _, req := range b.model.Requests() {
		for _, m := range req.Messages {
			for _, c := range m.Content {
				if c.Text == "cancel me" {
					t.Fatalf("the model saw the cancelled prompt")
				}
			}
		}
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("model got %d requests, want 1", n)
	}
}

func TestCancelRunningEnqueuedRun(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
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
	b.model.Push(agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "slow", map[string]any{"city": "Lisbon"})))
	runID, err := sess.Enqueue(ctx(t), "go")
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	select {
	case <-started:
	case <-ctx(t).Done():
		t.Fatal("the tool never started")
	}
	if err := b.agent.CancelRun(ctx(t), "acme", runID); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	close(release)
	if _, err := b.agent.WaitRun(ctx(t), "acme", runID); !errors.Is(err, agentpg.ErrRunCancelled) {
		t.Fatalf("WaitRun: %v, want ErrRunCancelled", err)
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("%d model calls: the cancelled run went on past the step boundary", n)
	}
}

func TestWorkerStopDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("finished")}, Delay: 300 * time.Millisecond})
	w, err := agentpg.NewWorker(b.agent, agentpg.WorkerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	runID, err := sess.Enqueue(ctx(t), "work")
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.agent, runID, agentpg.RunRunning)
	if err := w.Stop(ctx(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	info, err := b.agent.GetRun(ctx(t), "acme", runID)
	if err != nil || info.Status != agentpg.RunCompleted {
		t.Fatalf("run after Stop = %+v, %v; want completed", info, err)
	}
}

func TestNewWorkerValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := agentpg.NewWorker(b.agent, agentpg.WorkerConfig{Concurrency: -1}); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("negative concurrency: %v", err)
	}
	if _, err := agentpg.NewWorker(nil, agentpg.WorkerConfig{}); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("nil agent: %v", err)
	}
	if _, err := b.session(t, "acme", "u").Enqueue(ctx(t), " "); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("blank prompt: %v", err)
	}
}

// waitStatus polls the run until it has status.
func waitStatus(t testing.TB, a *agentpg.Agent, runID, status string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := a.GetRun(context.Background(), "acme", runID)
		if err != nil {
			t.Fatalf("GetRun: %v", err)
		}
		if info.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is %s, waited for %s", runID, info.Status, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// enqueuePausingRun starts a Worker and enqueues a run whose model call
// asks for a tool that needs approval; the model's next answer is next.
func enqueuePausingRun(t *testing.T, next string) (*bundle, *agentpg.Session, *atomic.Int32, string) {
	t.Helper()
	b, sess, calls := approvalSetup(t)
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"})),
		agentpgtest.Text(next),
	)
	b.startWorker(t, agentpg.WorkerConfig{})
	runID, err := sess.Enqueue(ctx(t), "weather?")
	if err != nil {
		t.Fatal(err)
	}
	return b, sess, calls, runID
}

// An enqueued run that pauses for approval goes back to the workers once
// its calls are decided, from any process: no one calls ResumeRun.
func TestEnqueuedRunContinuesAfterApproval(t *testing.T) {
	t.Parallel()
	b, _, calls, runID := enqueuePausingRun(t, "sunny")
	paused, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil || paused.StopReason != agentpg.StopAwaitingApproval || len(paused.PendingApprovals) != 1 {
		t.Fatalf("paused: %+v, %v", paused, err)
	}
	if err := b.another(t).DecideToolCall(ctx(t), "acme", runID, "toolu_1", true, "ok"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.agent, runID, agentpg.RunCompleted)
	if calls.Load() != 1 {
		t.Fatalf("the approved call ran %d times", calls.Load())
	}
	res, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil || res.Text != "sunny" {
		t.Fatalf("%+v, %v", res, err)
	}
}

// A session's enqueued runs come before a later Run of it, which waits for
// them: the conversation keeps the order in which the turns were asked.
func TestRunWaitsForEnqueuedRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Text("answer to " + req.LastUserText())
	})
	if _, err := sess.Enqueue(ctx(t), "first, enqueued"); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.RunWithOptions(ctx(t), "second, direct", agentpg.RunOptions{NoWait: true}); !errors.Is(err, agentpg.ErrSessionBusy) {
		t.Fatalf("a Run behind an enqueued run: %v, want ErrSessionBusy", err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	short, cancel := context.WithTimeout(ctx(t), 5*time.Second)
	defer cancel()
	if _, err := sess.Run(short, "second, direct"); err != nil {
		t.Fatalf("%v; runs %q", err, runStatuses(t, sess))
	}
	_, texts := conversation(t, sess)
	want := []string{"first, enqueued", "answer to first, enqueued", "second, direct", "answer to second, direct"}
	if !slices.Equal(texts, want) {
		t.Fatalf("conversation %q, want %q", texts, want)
	}
}

// The Workers' periodic rescuer fails a synchronous run whose process went
// away once its grace period is over.
func TestWorkerFailsStuckSyncRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.LeaseTTL = time.Second })
	killRunMidCall(t, b, b.session(t, "acme", "user-1"))
	b.startWorker(t, agentpg.WorkerConfig{StuckRunGrace: time.Second})
	waitFor(t, func() bool {
		runs, err := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{Status: agentpg.RunFailed}, agentpg.ListOptions{})
		return err == nil && len(runs.Items) == 1 && runs.Items[0].ErrorClass == "interrupted"
	})
}

// A backlog of one session's runs, enqueued before another session's run,
// takes one job and one of the Worker's runs at a time: the other
// session's run starts at once, beside the backlog's first.
func TestBacklogOfOneSessionLeavesOthersRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var order []string
	var mu sync.Mutex
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		mu.Lock()
		order = append(order, req.LastUserText())
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		return agentpgtest.Echo(req)
	})
	backlog := b.session(t, "acme", "backlog")
	var ids []string
	for i := range 6 {
		id, err := backlog.Enqueue(ctx(t), fmt.Sprintf("backlog %d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	other, err := b.session(t, "acme", "other").Enqueue(ctx(t), "other")
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{Concurrency: 2})
	for _, id := range append(ids, other) {
		if _, err := b.agent.WaitRun(ctx(t), "acme", id); err != nil {
			t.Fatalf("WaitRun: %v", err)
		}
	}
	if i := slices.Index(order, "other"); i > 1 {
		t.Fatalf("the other session's run called the model after %d of the backlog's runs: %q", i, order)
	}
	want := []string{"backlog 0", "backlog 1", "backlog 2", "backlog 3", "backlog 4", "backlog 5"}
	if got := slices.DeleteFunc(slices.Clone(order), func(s string) bool { return s == "other" }); !slices.Equal(got, want) {
		t.Fatalf("the backlog's runs called the model in the order %q", got)
	}
}

// A run enqueued in a transaction while the session's job executes the
// session's last run is executed by that job once the transaction commits,
// however the two commits fall; one rolled back leaves the job to end, and
// the next run gets a new one.
func TestEnqueueTxWhileSessionsLastRunEnds(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sess := b.session(t, "acme", "user-1")
			answer := make(chan struct{})
			b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
				if req.LastUserText() == "first" {
					<-answer
				}
				return agentpgtest.Echo(req)
			})
			b.startWorker(t, agentpg.WorkerConfig{})
			first, err := sess.Enqueue(ctx(t), "first")
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, b.agent, first, agentpg.RunRunning)
			tx, err := b.db.Begin(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			second, err := sess.EnqueueTx(ctx(t), tx, "second")
			if err != nil {
				t.Fatal(err)
			}
			close(answer) // the first run's last step waits for the transaction
			time.Sleep(50 * time.Millisecond)
			if commit {
				err = tx.Commit(ctx(t))
			} else {
				err = tx.Rollback(ctx(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.agent.WaitRun(ctx(t), "acme", first); err != nil {
				t.Fatalf("WaitRun first: %v", err)
			}
			if !commit {
				if second, err = sess.Enqueue(ctx(t), "second"); err != nil {
					t.Fatal(err)
				}
			}
			if res, err := b.agent.WaitRun(ctx(t), "acme", second); err != nil || res.Text != "echo: second" {
				t.Fatalf("WaitRun second = %+v, %v", res, err)
			}
		})
	}
}

// Cancelling an enqueued run that waits for approvals lets the session's
// later enqueued runs go, though no job was executing them.
func TestCancelPausedRunLetsLaterRunsGo(t *testing.T) {
	t.Parallel()
	b, sess, calls, paused := enqueuePausingRun(t, "later answer")
	later, err := sess.Enqueue(ctx(t), "later")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.agent.WaitRun(ctx(t), "acme", paused); err != nil || res.StopReason != agentpg.StopAwaitingApproval {
		t.Fatalf("WaitRun paused = %+v, %v", res, err)
	}
	if info, err := b.agent.GetRun(ctx(t), "acme", later); err != nil || info.Status != agentpg.RunQueued {
		t.Fatalf("the run behind a paused one: %+v, %v; want queued", info, err)
	}
	if err := b.agent.CancelRun(ctx(t), "acme", paused); err != nil {
		t.Fatal(err)
	}
	if res, err := b.agent.WaitRun(ctx(t), "acme", later); err != nil || res.Text != "later answer" {
		t.Fatalf("WaitRun later = %+v, %v", res, err)
	}
	if calls.Load() != 0 {
		t.Fatalf("the cancelled run's call ran %d times", calls.Load())
	}
}

// A job executing a long backlog of its session's runs hands the session
// to a new job before River's rescuer would take it for one whose worker
// died: the runs still execute once each, in order.
func TestLongBacklogMovesToNewJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		reply := agentpgtest.Echo(req)
		reply.Delay = 150 * time.Millisecond
		return reply
	})
	sess := b.session(t, "acme", "user-1")
	var ids, prompts []string
	for i := range 6 {
		prompt := fmt.Sprintf("turn %d", i)
		id, err := sess.Enqueue(ctx(t), prompt)
		if err != nil {
			t.Fatal(err)
		}
		ids, prompts = append(ids, id), append(prompts, prompt)
	}
	b.startWorker(t, agentpg.WorkerConfig{RescueAfter: time.Second})
	for _, id := range ids {
		if _, err := b.agent.WaitRun(ctx(t), "acme", id); err != nil {
			t.Fatalf("WaitRun: %v", err)
		}
	}
	var asked []string
	for _, req := range b.model.Requests() {
		asked = append(asked, req.LastUserText())
	}
	if !slices.Equal(asked, prompts) {
		t.Fatalf("the model was asked %q, want %q", asked, prompts)
	}
	var jobs int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.river_job WHERE kind = $1 AND args->>'session_id' = $2`,
		agentpg.RunJobKind, sess.ID).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs < 2 {
		t.Fatalf("%d jobs executed the session's 6 runs of 150 ms with RescueAfter 1s; want the first to hand over", jobs)
	}
}

// The Workers' rescuer gives a job to a session whose enqueued runs lost
// theirs (River discarded it after its last attempt), once they have
// waited for StuckRunGrace; a run that waits for approvals is left alone.
func TestRescuerGivesOrphanedRunsAJob(t *testing.T) {
	t.Parallel()
	b, paused, _ := approvalSetup(t)
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if req.LastUserText() == "weather?" {
			return agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"}))
		}
		return agentpgtest.Echo(req)
	})
	pausedRun, err := paused.Enqueue(ctx(t), "weather?")
	if err != nil {
		t.Fatal(err)
	}
	orphaned := b.session(t, "acme", "user-2")
	var ids []string
	for _, prompt := range []string{"first", "second"} {
		id, err := orphaned.Enqueue(ctx(t), prompt)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.river_job SET state = 'discarded', finalized_at = now()
		WHERE kind = $1 AND args->>'session_id' = $2`, agentpg.RunJobKind, orphaned.ID); err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{StuckRunGrace: time.Second})
	for _, id := range append(ids, pausedRun) {
		if _, err := b.agent.WaitRun(ctx(t), "acme", id); err != nil {
			t.Fatalf("WaitRun: %v", err)
		}
	}
	_, texts := conversation(t, orphaned)
	if want := []string{"first", "echo: first", "second", "echo: second"}; !slices.Equal(texts, want) {
		t.Fatalf("the orphaned session's conversation is %q, want %q", texts, want)
	}
	time.Sleep(2500 * time.Millisecond) // two more passes of the rescuer
	var jobs int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.river_job WHERE kind = $1 AND args->>'session_id' = $2`,
		agentpg.RunJobKind, paused.ID).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Fatalf("the session whose run waits for approval has %d jobs, want its first only", jobs)
	}
}
