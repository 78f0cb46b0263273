package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// BenchmarkTurnStatements measures the database side of a plain turn alone
// (BeginRun with the history of what is new, CommitStep of the prompt and
// the answer), with no model in the
// process, at turn 10, 100 and 1,000 of a session: its cost must not grow
// with the session's age.
func BenchmarkTurnStatements(b *testing.B) {
	for _, turn := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("turn=%d", turn), func(b *testing.B) {
			benchmarkTurnStatements(b, agentpgtest.DB(b), turn)
		})
	}
}

// BenchmarkTurnStatementsRowLevelSecurity is BenchmarkTurnStatements at
// turn 100 as a superuser, which row-level security does not bind
// (rls=off), and as an application role, which it binds (rls=on).
func BenchmarkTurnStatementsRowLevelSecurity(b *testing.B) {
	for _, rls := range []bool{false, true} {
		b.Run(fmt.Sprintf("rls=%s", map[bool]string{false: "off", true: "on"}[rls]), func(b *testing.B) {
			benchmarkTurnStatements(b, agentpgtest.DBWithOptions(b, agentpgtest.DBOptions{AppRole: rls}), 100)
		})
	}
}

// benchmarkTurnStatements measures the statements of turn turn of a
// session on db.
func benchmarkTurnStatements(b *testing.B, db *pgxpool.Pool, turn int) {
	ctx := context.Background()
	st, err := store.New(db, "")
	if err != nil {
		b.Fatal(err)
	}
	sessionID := uuid.NewString()
	if _, err := st.CreateSession(ctx, store.CreateSessionParams{ID: sessionID, TenantID: "bench", Identifier: "long"}); err != nil {
		b.Fatal(err)
	}
	var lastSeq int64
	oneTurn := func() int {
		runID := uuid.NewString()
		begun, err := st.BeginRun(ctx, store.BeginRunParams{
			TenantID: "bench", SessionID: sessionID, RunID: runID, Model: "m", LeaseTTL: time.Minute,
			CachedSeq: lastSeq,
		})
		if err != nil {
			b.Fatal(err)
		}
		step, err := st.CommitStep(ctx, begun.Lease, store.StepParams{
			Messages: []store.NewMessage{
				{ID: uuid.NewString(), Role: "user", Content: promptContent},
				{ID: uuid.NewString(), Role: "assistant", Content: answerContent, Usage: usage},
			},
			Status: store.RunCompleted, Iterations: 1, StopReason: "end_turn",
		})
		if err != nil {
			b.Fatal(err)
		}
		lastSeq = step.FirstSeq + 1
		return len(begun.History)
	}
	for range turn - 1 {
		oneTurn()
	}
	read := 0
	b.ResetTimer()
	for range b.N {
		read += oneTurn()
	}
	b.ReportMetric(float64(read)/float64(b.N), "history-rows/turn")
}

var (
	promptContent = json.RawMessage(`[{"type":"text","text":"A question of some length? A question of some length?"}]`)
	answerContent = json.RawMessage(`[{"type":"text","text":"An answer of some length. An answer of some length. An answer of some length."}]`)
	usage         = json.RawMessage(`{"input_tokens":100,"output_tokens":20}`)
)
