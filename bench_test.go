package agentpg_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// statementCounter is a pgx tracer counting the statements sent, each one
// round trip, and those that write, each its own commit since a turn uses no
// explicit transaction.
type statementCounter struct {
	on                 atomic.Bool
	statements, writes atomic.Int64
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if c.on.Load() {
		c.statements.Add(1)
		sql := strings.ToUpper(data.SQL)
		if strings.Contains(sql, "INSERT ") || strings.Contains(sql, "UPDATE ") || strings.Contains(sql, "DELETE ") {
			c.writes.Add(1)
		}
	}
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// BenchmarkPlainTurn measures one Run against the scripted model: database
// round trips and commits per turn, and the time and allocations of the whole
// turn (PostgreSQL and the loopback model server included).
func BenchmarkPlainTurn(b *testing.B) {
	db := agentpgtest.DB(b)
	counter := &statementCounter{}
	cfg := db.Config().Copy()
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	model := agentpgtest.NewServer(b)
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: model.Client(), Model: "claude-sonnet-4-5", SystemPrompt: "Be brief."})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	const turnsPerSession = 10
	var sess *agentpg.Session
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%turnsPerSession == 0 {
			b.StopTimer()
			counter.on.Store(false)
			sess, err = agent.NewSession(ctx, "bench", fmt.Sprintf("user-%d", i), nil)
			if err != nil {
				b.Fatal(err)
			}
			counter.on.Store(true)
			b.StartTimer()
		}
		if _, err := sess.Run(ctx, "What is the time?"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(counter.statements.Load())/float64(b.N), "roundtrips/turn")
	b.ReportMetric(float64(counter.writes.Load())/float64(b.N), "commits/turn")
}
