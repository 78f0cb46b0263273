package agentpg_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/tool"
)

// statementCounter is a pgx tracer counting the statements and batches
// sent, each one round trip; the commits: each COMMIT, and each statement
// or batch that writes outside a transaction (a batch is one implicit
// transaction); the rows they return, and the time they take.
type statementCounter struct {
	on                        atomic.Bool
	statements, commits, rows atomic.Int64
	dbTime                    atomic.Int64 // nanoseconds
}

type queryStart struct{}

func (c *statementCounter) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return c.start(ctx, conn, data.SQL)
}

func (c *statementCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	c.end(ctx)
	c.query(data.CommandTag)
}

func (c *statementCounter) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	var sql strings.Builder
	for _, q := range data.Batch.QueuedQueries {
		sql.WriteString(q.SQL)
	}
	return c.start(ctx, conn, sql.String())
}

func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.query(data.CommandTag)
}

func (c *statementCounter) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	c.end(ctx)
}

// start counts a round trip sending sql on conn.
func (c *statementCounter) start(ctx context.Context, conn *pgx.Conn, sql string) context.Context {
	if c.on.Load() {
		c.statements.Add(1)
		sql = strings.ToUpper(strings.TrimSpace(sql))
		inTransaction := conn.PgConn().TxStatus() != 'I'
		writes := strings.Contains(sql, "INSERT ") || strings.Contains(sql, "UPDATE ") || strings.Contains(sql, "DELETE ")
		if strings.HasPrefix(sql, "COMMIT") || writes && !inTransaction {
			c.commits.Add(1)
		}
	}
	return context.WithValue(ctx, queryStart{}, time.Now())
}

// end adds the round trip's time.
func (c *statementCounter) end(ctx context.Context) {
	if start, ok := ctx.Value(queryStart{}).(time.Time); ok && c.on.Load() {
		c.dbTime.Add(int64(time.Since(start)))
	}
}

// query counts the rows a statement read.
func (c *statementCounter) query(tag pgconn.CommandTag) {
	if c.on.Load() && tag.Select() {
		c.rows.Add(tag.RowsAffected())
	}
}

// countingConn counts the bytes PostgreSQL sends.
type countingConn struct {
	net.Conn
	counter *statementCounter
	read    *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.counter.on.Load() {
		c.read.Add(int64(n))
	}
	return n, err
}

// tracedPool returns a pool on db's database whose statements counter
// counts, and the count of bytes read from the server.
func tracedPool(b testing.TB, db *pgxpool.Pool, counter *statementCounter) (*pgxpool.Pool, *atomic.Int64) {
	read := new(atomic.Int64)
	cfg := db.Config().Copy()
	cfg.ConnConfig.Tracer = counter
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		return countingConn{Conn: conn, counter: counter, read: read}, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool, read
}

// BenchmarkPlainTurn measures one Run against the scripted model: database
// round trips and commits per turn, the time and allocations of the whole
// turn (PostgreSQL and the loopback model server included), and the CPU
// time the process spent on it (cpu-µs/turn: all but PostgreSQL's, which
// on a shared machine moves far less than the time does).
func BenchmarkPlainTurn(b *testing.B) {
	benchmarkTurn(b, agentpg.Config{}, agentpgtest.Echo, nil)
}

// BenchmarkPlainTurnRowLevelSecurity is BenchmarkPlainTurn as a superuser,
// which row-level security does not bind (rls=off), and as an application
// role, which it binds (rls=on), in one run. Both send the tenant's setting
// with every statement.
func BenchmarkPlainTurnRowLevelSecurity(b *testing.B) {
	for _, rls := range []bool{false, true} {
		b.Run(fmt.Sprintf("rls=%s", map[bool]string{false: "off", true: "on"}[rls]), func(b *testing.B) {
			db := agentpgtest.DBWithOptions(b, agentpgtest.DBOptions{AppRole: rls})
			benchmarkTurn(b, agentpg.Config{DB: db}, agentpgtest.Echo, nil)
		})
	}
}

// BenchmarkEncryption measures a plain turn and a tool turn with content
// stored in plaintext (keys=off) and encrypted at rest (keys=on,
// Config.Keys), in one run.
func BenchmarkEncryption(b *testing.B) {
	tools, toolResponder := echoToolTurn(b)
	for _, turn := range []struct {
		name      string
		tools     []tool.Tool
		responder func(agentpgtest.Request) agentpgtest.Reply
	}{{"plain", nil, agentpgtest.Echo}, {"tool", tools, toolResponder}} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/keys=%s", turn.name, map[bool]string{false: "off", true: "on"}[on]), func(b *testing.B) {
				cfg := agentpg.Config{Tools: turn.tools}
				if on {
					cfg.Keys = testKeys(b)
				}
				benchmarkTurn(b, cfg, turn.responder, nil)
			})
		}
	}
}

// BenchmarkToolTurn measures a Run in which the model calls one tool and
// then answers: model, tool, model.
func BenchmarkToolTurn(b *testing.B) {
	tools, responder := echoToolTurn(b)
	benchmarkTurn(b, agentpg.Config{Tools: tools}, responder, nil)
}

// BenchmarkGovernance measures a plain turn and a tool turn with the
// governance features off, each on alone, and all on, in one run. Every
// mode logs at debug level to a slog handler writing to io.Discard, so
// that records are made and handled (two a turn: run started, run
// completed): "off" passes them unredacted (Config.DisableLogRedaction),
// "redaction" through redact.Redact. "audit" sets Config.Audit.Enabled,
// its round trips counting the audit log's background writes (a tool
// call is an entry; a plain turn records none); "limits" sets every limit
// of the tenant, high enough never to refuse: admitting each model call
// and counting its usage add statements to the turn's batches, not round
// trips.
func BenchmarkGovernance(b *testing.B) {
	tools, toolResponder := echoToolTurn(b)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	limits := &agentpg.TenantLimits{
		RequestsPerMinute: 1 << 30, TokensPerDay: 1 << 50,
		PerSession: agentpg.SessionLimits{RequestsPerMinute: 1 << 30, TokensPerDay: 1 << 50},
	}
	for _, turn := range []struct {
		name      string
		tools     []tool.Tool
		responder func(agentpgtest.Request) agentpgtest.Reply
	}{{"plain", nil, agentpgtest.Echo}, {"tool", tools, toolResponder}} {
		for _, mode := range []string{"off", "audit", "limits", "redaction", "all"} {
			b.Run(turn.name+"/"+mode, func(b *testing.B) {
				cfg := agentpg.Config{Tools: turn.tools, Logger: logger, DisableLogRedaction: true}
				var tenantLimits *agentpg.TenantLimits
				switch mode {
				case "audit":
					cfg.Audit.Enabled = true
				case "limits":
					tenantLimits = limits
				case "redaction":
					cfg.DisableLogRedaction = false
				case "all":
					cfg.Audit.Enabled, tenantLimits, cfg.DisableLogRedaction = true, limits, false
				}
				benchmarkTurn(b, cfg, turn.responder, tenantLimits)
			})
		}
	}
}

// echoToolTurn returns the tool and the model of a tool turn: the model
// calls the tool echo, then answers.
func echoToolTurn(b *testing.B) ([]tool.Tool, func(agentpgtest.Request) agentpgtest.Reply) {
	echo, err := tool.NewFunc("echo", "Echoes its input.", func(ctx context.Context, in cityInput) (string, error) {
		return in.City, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return []tool.Tool{echo}, callsToolOnce("echo", map[string]any{"city": "Oslo"}, 0)
}

// callsToolOnce is a model that answers a prompt by calling the tool name
// with input, after delay, and the tool's result with "done".
func callsToolOnce(name string, input map[string]any, delay time.Duration) func(agentpgtest.Request) agentpgtest.Reply {
	return func(req agentpgtest.Request) agentpgtest.Reply {
		last := req.Messages[len(req.Messages)-1]
		if last.Content[0].Type == "tool_result" {
			return agentpgtest.Text("done")
		}
		return agentpgtest.Reply{
			Content: []agentpgtest.Block{agentpgtest.ToolUse(fmt.Sprintf("toolu_%d", len(req.Messages)), name, input)},
			Delay:   delay,
		}
	}
}

// benchmarkTurn runs b.N turns, ten per session, on cfg's database (a
// database of the benchmark's own when nil) with cfg's tools, audit and
// logging settings, the model responder and limits on the tenant unless nil, and
// reports round trips and commits per turn (those of the audit log's
// background writes, flushed at the end, included) and turns per second.
func benchmarkTurn(b *testing.B, cfg agentpg.Config, responder func(agentpgtest.Request) agentpgtest.Reply, limits *agentpg.TenantLimits) {
	counter := &statementCounter{}
	if cfg.DB == nil {
		cfg.DB = agentpgtest.DB(b)
	}
	pool, _ := tracedPool(b, cfg.DB, counter)
	model := agentpgtest.NewServer(b)
	model.SetResponder(responder)
	cfg.DB, cfg.Client, cfg.Model, cfg.SystemPrompt = pool, model.Client(), "claude-sonnet-5-5", "Be brief."
	agent, err := agentpg.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if limits != nil {
		if err := agent.SetTenantLimits(ctx, "bench", *limits); err != nil {
			b.Fatal(err)
		}
	}

	const turnsPerSession = 10
	var sess *agentpg.Session
	var cpu time.Duration
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
		start := processCPU()
		if _, err := sess.Run(ctx, "What is the time?"); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - start
	}
	b.StopTimer()
	if err := agent.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/turn")
	b.ReportMetric(float64(counter.statements.Load())/float64(b.N), "roundtrips/turn")
	b.ReportMetric(float64(counter.commits.Load())/float64(b.N), "commits/turn")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
}

// BenchmarkTurnCost measures turn 10, 100 and 1,000 of one session whose
// context window (20,000 tokens) compaction keeps it within: round trips,
// rows and bytes read from PostgreSQL, database time, and bytes sent to the
// model, per turn. "cached" reuses the Session; "loaded" loads it afresh
// for every turn, as a stateless server would.
func BenchmarkTurnCost(b *testing.B) {
	for _, turn := range []int{10, 100, 1000} {
		for _, mode := range []string{"cached", "loaded"} {
			b.Run(fmt.Sprintf("turn=%d/%s", turn, mode), func(b *testing.B) {
				benchmarkTurnAt(b, turn, mode == "loaded")
			})
		}
	}
}

func benchmarkTurnAt(b *testing.B, turn int, reload bool) {
	counter := &statementCounter{}
	pool, bytesRead := tracedPool(b, agentpgtest.DB(b), counter)
	model := agentpgtest.NewServer(b)
	model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if req.System == compaction.SummaryInstructions {
			return agentpgtest.Text(strings.Repeat("The user asked about many things. ", 40))
		}
		return agentpgtest.Text(strings.Repeat("An answer of some length. ", 15))
	})
	agent, err := agentpg.New(agentpg.Config{
		DB: pool, Client: model.Client(), Model: "claude-sonnet-5-5", SystemPrompt: "Be brief.", ContextWindow: 20_000,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sess, err := agent.NewSession(ctx, "bench", "long", nil)
	if err != nil {
		b.Fatal(err)
	}
	prompt := strings.Repeat("A question of some length? ", 4)
	for range turn - 1 {
		if _, err := sess.Run(ctx, prompt); err != nil {
			b.Fatal(err)
		}
	}
	sent := len(model.Requests())

	counter.on.Store(true)
	b.ResetTimer()
	for range b.N {
		if reload {
			if sess, err = agent.LoadSession(ctx, "bench", sess.ID); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := sess.Run(ctx, prompt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	counter.on.Store(false)
	var modelBytes int
	for _, req := range model.Requests()[sent:] {
		modelBytes += len(req.Body)
	}
	n := float64(b.N)
	b.ReportMetric(float64(counter.statements.Load())/n, "roundtrips/turn")
	b.ReportMetric(float64(counter.rows.Load())/n, "rows/turn")
	b.ReportMetric(float64(bytesRead.Load())/n, "db-bytes/turn")
	b.ReportMetric(float64(counter.dbTime.Load())/n/1e3, "db-µs/turn")
	b.ReportMetric(float64(modelBytes)/n, "model-bytes/turn")
}
