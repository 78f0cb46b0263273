package store_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// storeWithSession returns a store on a database of the test's own, with
// a session of the tenant acme named identifier.
func storeWithSession(t *testing.T, identifier string) (*store.Store, string) {
	t.Helper()
	st, err := store.New(agentpgtest.DB(t), "")
	if err != nil {
		t.Fatal(err)
	}
	sessionID := uuid.NewString()
	if _, err := st.CreateSession(t.Context(), store.CreateSessionParams{ID: sessionID, TenantID: "acme", Identifier: identifier}); err != nil {
		t.Fatal(err)
	}
	return st, sessionID
}

// TestResumeRunSaysWhyNot checks that ResumeRun's one statement tells each
// reason a run cannot be resumed apart, and that a run it may resume gets
// the lease, its prompt and its session.
func TestResumeRunSaysWhyNot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, sessionID := storeWithSession(t, "resume")
	// Run ids are time-ordered, as the agentpg package makes them: the
	// session's runs execute in their order.
	newRunID := func() string { return uuid.Must(uuid.NewV7()).String() }
	enqueue := func(prompt string) string {
		t.Helper()
		id := newRunID()
		_, err := st.EnqueueRun(ctx, store.EnqueueRunParams{TenantID: "acme", SessionID: sessionID, RunID: id, Model: "m",
			Prompt: json.RawMessage(`[{"type":"text","text":"` + prompt + `"}]`),
			Job:    testJob})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	resume := func(runID string) (store.Begun, error) {
		return st.ResumeRun(ctx, store.ResumeRunParams{TenantID: "acme", SessionID: sessionID, RunID: runID, LeaseTTL: time.Minute})
	}
	first, second := enqueue("first"), enqueue("second")

	for _, c := range []struct {
		name string
		run  func() (store.Begun, error)
		want error
	}{
		{"unknown run", func() (store.Begun, error) { return resume(newRunID()) }, store.ErrNotFound},
		{"another session", func() (store.Begun, error) {
			return st.ResumeRun(ctx, store.ResumeRunParams{TenantID: "acme", SessionID: uuid.NewString(), RunID: first, LeaseTTL: time.Minute})
		}, store.ErrNotFound},
		{"another tenant", func() (store.Begun, error) {
			return st.ResumeRun(ctx, store.ResumeRunParams{TenantID: "globex", SessionID: sessionID, RunID: first, LeaseTTL: time.Minute})
		}, store.ErrNotFound},
		{"behind an earlier queued run", func() (store.Begun, error) { return resume(second) }, store.ErrBusy},
	} {
		if _, err := c.run(); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
	}

	begun, err := resume(first)
	if err != nil {
		t.Fatalf("resuming the first queued run: %v", err)
	}
	if begun.Session == nil || begun.Session.ID != sessionID || begun.Session.Identifier != "resume" || !begun.Async ||
		!json.Valid(begun.Prompt) || begun.Lease.Token == 0 || begun.Lease.SessionID != sessionID {
		t.Fatalf("resumed: %+v, session %+v", begun, begun.Session)
	}
	if _, err := resume(first); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("resuming a run that holds its lease: %v, want ErrBusy", err)
	}
	if _, err := resume(second); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("resuming while the session is leased: %v, want ErrBusy", err)
	}

	// The first run pauses for an approval: the second waits for it.
	pending := store.ToolCall{ID: uuid.NewString(), ToolUseID: "toolu_1", Name: "pay", Input: json.RawMessage(`{}`),
		Status: store.ToolAwaitingApproval}
	if _, err := st.CommitStep(ctx, begun.Lease, store.StepParams{Status: store.RunAwaitingApproval, ToolCalls: []store.ToolCall{pending},
		Messages: []store.NewMessage{{ID: uuid.NewString(), Role: "assistant", Content: json.RawMessage(`[{"type":"text","text":"paying"}]`)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := resume(first); !errors.Is(err, store.ErrApprovalPending) {
		t.Fatalf("resuming a run awaiting approval: %v, want ErrApprovalPending", err)
	}
	if _, err := resume(second); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("resuming behind a paused run: %v, want ErrBusy", err)
	}

	if _, err := st.CancelRun(ctx, "acme", first, "test", testJob); err != nil {
		t.Fatal(err)
	}
	if _, err := resume(first); !errors.Is(err, store.ErrFinished) {
		t.Fatalf("resuming a cancelled run: %v, want ErrFinished", err)
	}
	if _, err := resume(second); err != nil {
		t.Fatalf("resuming the second run once the first ended: %v", err)
	}
}

// TestSessionRunChain follows the count of a session's enqueued runs
// (run_chain) through a job's life: one job for the runs enqueued while
// one executes them, which it learns of when it resumes a run or from the
// step ending one, and a new job once it has ended.
func TestSessionRunChain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, sessionID := storeWithSession(t, "chain")
	enqueue := func(wantJob bool) string {
		t.Helper()
		id := uuid.Must(uuid.NewV7()).String()
		inserted, err := st.EnqueueRun(ctx, store.EnqueueRunParams{TenantID: "acme", SessionID: sessionID, RunID: id, Model: "m",
			Prompt: json.RawMessage(`[{"type":"text","text":"hi"}]`), Job: testJob})
		if err != nil || inserted != wantJob {
			t.Fatalf("EnqueueRun: job inserted %v, %v; want %v", inserted, err, wantJob)
		}
		return id
	}
	resume := func(runID, wantNext string, wantSeen int64) store.Begun {
		t.Helper()
		begun, err := st.ResumeRun(ctx, store.ResumeRunParams{TenantID: "acme", SessionID: sessionID, RunID: runID, LeaseTTL: time.Minute})
		if err != nil {
			t.Fatalf("ResumeRun: %v", err)
		}
		if begun.Chain.NextRun != wantNext || begun.Chain.Seen != wantSeen {
			t.Fatalf("resumed run sees %+v, want next %q, run_chain %d", begun.Chain, wantNext, wantSeen)
		}
		return begun
	}
	complete := func(begun store.Begun, endChain *int64) bool {
		t.Helper()
		step, err := st.CommitStep(ctx, begun.Lease, store.StepParams{Status: store.RunCompleted, EndChain: endChain,
			Messages: []store.NewMessage{{ID: uuid.NewString(), Role: "assistant", Content: json.RawMessage(`[{"type":"text","text":"ok"}]`)}}})
		if err != nil {
			t.Fatal(err)
		}
		return step.ChainEnded
	}
	next := func(want string) {
		t.Helper()
		if got, err := st.NextChainRun(ctx, "acme", sessionID); err != nil || got != want {
			t.Fatalf("NextChainRun = %q, %v; want %q", got, err, want)
		}
	}

	a := enqueue(true)
	b := enqueue(false) // a's job executes it
	if complete(resume(a, b, 2), nil) {
		t.Fatal("the job ended with runs left")
	}
	begun := resume(b, "", 2)
	c := enqueue(false) // while b runs: run_chain is 3 now
	seen := begun.Chain.Seen
	if complete(begun, &seen) {
		t.Fatal("the job ended though a run was enqueued since it looked")
	}
	next(c)
	begun = resume(c, "", 3)
	seen = begun.Chain.Seen
	if ended, err := st.FailRun(ctx, begun.Lease, store.FailedRun{Reason: "test", EndChain: &seen}); err != nil || !ended {
		t.Fatalf("FailRun of the last run: job ended %v, %v; want ended", ended, err)
	}
	d := enqueue(true) // the job ended: a new one
	if _, err := st.CancelRun(ctx, "acme", d, "test", testJob); err != nil {
		t.Fatal(err)
	}
	next("") // nothing left: the job ends
	enqueue(true)
	if _, err := st.NextChainRun(ctx, "globex", sessionID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("NextChainRun of another tenant's session: %v, want ErrNotFound", err)
	}
}
