package agentpg_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// batchRecorder records the statements of every batch its pool's
// connections send, a batch a string.
type batchRecorder struct {
	mu      sync.Mutex
	batches []string
}

func (r *batchRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	var sql strings.Builder
	for _, q := range data.Batch.QueuedQueries {
		sql.WriteString(q.SQL)
		sql.WriteString(";\n")
	}
	r.mu.Lock()
	r.batches = append(r.batches, sql.String())
	r.mu.Unlock()
	return ctx
}

func (r *batchRecorder) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *batchRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (r *batchRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (r *batchRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// unflushed reports, for each batch that took a lease or stored a step, in
// order, whether its commit was allowed to skip the flush.
func (r *batchRecorder) unflushed() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var got []bool
	for _, b := range r.batches {
		if strings.Contains(b, "lease_token") && (strings.Contains(b, "UPDATE") || strings.Contains(b, "INSERT")) {
			got = append(got, strings.Contains(b, "synchronous_commit"))
		}
	}
	return got
}

// Only a run's first commit, its lease and record, skips waiting for the
// flush of the write-ahead log: the step that records a tool call as
// started before the tool runs, the tool's results and the answer are
// flushed before the run goes on. Runs resumed by a worker do the same.
func TestOnlyTheLeaseCommitSkipsTheFlush(t *testing.T) {
	t.Parallel()
	rec := &batchRecorder{}
	cfg := agentpgtest.DB(t).Config().Copy()
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tools, responder := countingToolTurn(t, new(atomic.Int64))
	b := setupOn(t, pool, func(c *agentpg.Config) { c.Tools = tools })
	b.model.SetResponder(responder)
	sess := b.session(t, "acme", "user-1")

	rec.batches = nil
	if _, err := sess.Run(ctx(t), "count once"); err != nil {
		t.Fatal(err)
	}
	// The lease; the step with the call started; its result; the answer.
	if got, want := rec.unflushed(), []bool{true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("commits skipping the flush: %v, want %v", got, want)
	}

	runID, err := sess.Enqueue(ctx(t), "count again")
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.batches = nil
	rec.mu.Unlock()
	if _, err := b.agent.ResumeRun(ctx(t), "acme", runID); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.unflushed(), []bool{true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("commits of a resumed run skipping the flush: %v, want %v", got, want)
	}
}

// countingToolTurn is a tool "count", not idempotent, counting its calls
// in calls, and a model that calls it once a run, then answers.
func countingToolTurn(t *testing.T, calls *atomic.Int64) ([]tool.Tool, func(agentpgtest.Request) agentpgtest.Reply) {
	t.Helper()
	count, err := tool.NewFunc("count", "Counts.", func(context.Context, struct{}) (string, error) {
		calls.Add(1)
		return "counted", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return []tool.Tool{count}, callsToolOnce("count", map[string]any{}, 300*time.Millisecond)
}

// What a crash of PostgreSQL can lose of a run's first commit, which is
// not flushed (its lease and its record), ends the run at its next commit,
// before any tool runs: the run fails with ErrLeaseLost, nothing of it is
// stored, and the session goes on.
func TestLostLeaseCommitFailsBeforeAnyTool(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	tools, responder := countingToolTurn(t, &calls)
	b := setup(t, func(c *agentpg.Config) { c.Tools = tools })
	b.model.SetResponder(responder)
	sess := b.session(t, "acme", "user-1")
	if _, err := sess.Run(ctx(t), "first"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { _, err := sess.Run(ctx(t), "second"); done <- err }()
	waitFor(t, func() bool { return len(b.model.Requests()) == 3 })
	// Roll back what the run's first commit wrote, as a restarted server
	// would have had it not reached the disk.
	_, err := b.db.Exec(ctx(t), `
WITH r AS (DELETE FROM agentpg.runs WHERE session_id = $1 AND status = 'running' RETURNING id)
UPDATE agentpg.sessions SET lease_token = lease_token - 1, lease_run_id = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_run_id IN (SELECT id FROM r)`, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, agentpg.ErrLeaseLost) {
		t.Fatalf("run whose first commit was lost: err = %v, want ErrLeaseLost", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the tool ran %d times, want once (by the first run only)", n)
	}
	if _, texts := conversation(t, sess); len(texts) != 4 {
		t.Fatalf("stored %q, want the first run's 4 messages only", texts)
	}
	if res, err := sess.Run(ctx(t), "third"); err != nil || res.Text != "done" || calls.Load() != 2 {
		t.Fatalf("the session after: %v, %v (tool calls %d)", res, err, calls.Load())
	}
}
