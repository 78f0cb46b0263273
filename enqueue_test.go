package agentpg_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// benchAgent returns an agent on a database of the benchmark's own, with a
// scripted model answering (Echo) after latency.
func benchAgent(b *testing.B, latency time.Duration) *agentpg.Agent {
	b.Helper()
	model := agentpgtest.NewServer(b)
	if latency > 0 {
		model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
			reply := agentpgtest.Echo(req)
			reply.Delay = latency
			return reply
		})
	}
	agent, err := agentpg.New(agentpg.Config{
		DB:     agentpgtest.DB(b),
		Client: model.Client(),
		Model:  "claude-sonnet-5-5",
	})
	if err != nil {
		b.Fatal(err)
	}
	return agent
}

// benchSessions makes n sessions of the tenant "bench", named prefix and
// a number.
func benchSessions(b *testing.B, agent *agentpg.Agent, prefix string, n int) []*agentpg.Session {
	b.Helper()
	sessions := make([]*agentpg.Session, n)
	for i := range sessions {
		s, err := agent.NewSession(context.Background(), "bench", fmt.Sprintf("%s%d", prefix, i), nil)
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	return sessions
}

// benchWorker starts a worker, stopped when the benchmark ends.
func benchWorker(b *testing.B, agent *agentpg.Agent, concurrency int) {
	b.Helper()
	w, err := agentpg.NewWorker(agent, agentpg.WorkerConfig{Concurrency: concurrency})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
	})
}

// perSession splits b.N operations over the sessions, in order: a
// goroutine per session calls do with the session and its share, the
// sessions at once. It reports the operations per second as unit.
func perSession(b *testing.B, sessions []*agentpg.Session, unit string, do func(s *agentpg.Session, n int) error) {
	b.Helper()
	b.ResetTimer()
	b.ReportMetric(float64(b.N)/timePerSession(b, sessions, b.N, do).Seconds(), unit)
}

// timePerSession splits n operations over the sessions as perSession does,
// and returns the time they took.
func timePerSession(b *testing.B, sessions []*agentpg.Session, n int, do func(s *agentpg.Session, n int) error) time.Duration {
	b.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			if err := do(s, (n-i+len(sessions)-1)/len(sessions)); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// repeat makes op a perSession operation: op on the session n times, until
// it fails.
func repeat(op func(s *agentpg.Session) error) func(s *agentpg.Session, n int) error {
	return func(s *agentpg.Session, n int) error {
		for range n {
			if err := op(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// BenchmarkAsyncTurns measures enqueued turns executed per second by one
// worker of 1, 4 or 8 concurrent runs, over 8 sessions, the model
// answering at once: the queue's and the run state machine's overhead.
// As BenchmarkDirectTurns has a goroutine per session calling Run, it has
// one per session enqueueing its turns, in order, then waiting for them.
func BenchmarkAsyncTurns(b *testing.B) {
	for _, workers := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			agent := benchAgent(b, 0)
			benchWorker(b, agent, workers)
			perSession(b, benchSessions(b, agent, "s", 8), "turns/s", enqueueTurns(agent))
		})
	}
}

// enqueueTurns is the perSession operation of BenchmarkAsyncTurns: enqueue
// n turns of the session, in order, then wait for them.
func enqueueTurns(agent *agentpg.Agent) func(s *agentpg.Session, n int) error {
	ctx := context.Background()
	return func(s *agentpg.Session, n int) error {
		var ids []string
		for range n {
			id, err := s.Enqueue(ctx, "turn")
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			if _, err := agent.WaitRun(ctx, "bench", id); err != nil {
				return err
			}
		}
		return nil
	}
}

// runTurns is the perSession operation of BenchmarkDirectTurns: n turns of
// the session with Run.
func runTurns(s *agentpg.Session, n int) error {
	return repeat(func(s *agentpg.Session) error {
		_, err := s.Run(context.Background(), "turn")
		return err
	})(s, n)
}

// BenchmarkAsyncAgainstDirect measures BenchmarkAsyncTurns at 8 workers
// and BenchmarkDirectTurns side by side, on one agent and 16 sessions: in
// 10 rounds, each executes a tenth of its b.N turns in turn, first one,
// then the other, so that both meet the machine alike (a shared machine's
// speed drifts by tens of percent within minutes, which separate runs of
// the two benchmarks take for a difference between them). It reports both
// rates, and async's as a share of direct's.
func BenchmarkAsyncAgainstDirect(b *testing.B) {
	agent := benchAgent(b, 0)
	direct, async := benchSessions(b, agent, "direct", 8), benchSessions(b, agent, "async", 8)
	benchWorker(b, agent, 8)
	const rounds = 10
	var directTime, asyncTime time.Duration
	b.ResetTimer()
	for r := range rounds {
		n := (b.N - r + rounds - 1) / rounds
		if r%2 == 0 {
			directTime += timePerSession(b, direct, n, runTurns)
			asyncTime += timePerSession(b, async, n, enqueueTurns(agent))
		} else {
			asyncTime += timePerSession(b, async, n, enqueueTurns(agent))
			directTime += timePerSession(b, direct, n, runTurns)
		}
	}
	b.ReportMetric(float64(b.N)/directTime.Seconds(), "direct-turns/s")
	b.ReportMetric(float64(b.N)/asyncTime.Seconds(), "async-turns/s")
	b.ReportMetric(directTime.Seconds()/asyncTime.Seconds(), "async/direct")
}

// BenchmarkAsyncBacklog measures a Worker of 8 concurrent runs draining a
// backlog enqueued session after session (each session's runs together, in
// the order River would fetch their jobs) before it started, the model
// answering at once or after 20 ms. One job executes each session's runs,
// so the Worker executes 8 sessions' runs at once however they were
// enqueued: compare with BenchmarkAsyncTurns' 8 workers, whose runs are
// enqueued interleaved, and, at 20 ms, with the 400 turns/s that 8 runs at
// a time allow.
func BenchmarkAsyncBacklog(b *testing.B) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%v", latency), func(b *testing.B) {
			agent := benchAgent(b, latency)
			ctx := context.Background()
			sessions := benchSessions(b, agent, "s", 8)
			var last []string
			for i, s := range sessions {
				var id string
				for j := i; j < b.N; j += len(sessions) {
					var err error
					if id, err = s.Enqueue(ctx, "turn"); err != nil {
						b.Fatal(err)
					}
				}
				if id != "" {
					last = append(last, id)
				}
			}
			b.ResetTimer()
			start := time.Now()
			benchWorker(b, agent, 8)
			for _, id := range last {
				if _, err := agent.WaitRun(ctx, "bench", id); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "turns/s")
		})
	}
}

// BenchmarkDirectTurns is BenchmarkAsyncTurns' baseline: 8 goroutines, one
// per session, calling Run directly on the same 8 sessions.
func BenchmarkDirectTurns(b *testing.B) {
	agent := benchAgent(b, 0)
	perSession(b, benchSessions(b, agent, "s", 8), "turns/s", runTurns)
}

// BenchmarkEnqueue measures runs enqueued per second by 8 goroutines, one
// per session, with no Worker to execute them: the enqueue's statement and
// flushed commit, and how often the runs are announced (see
// TestEnqueuedBurstStartsWithoutPolling).
func BenchmarkEnqueue(b *testing.B) {
	agent := benchAgent(b, 0)
	ctx := context.Background()
	perSession(b, benchSessions(b, agent, "s", 8), "enqueues/s", repeat(func(s *agentpg.Session) error {
		_, err := s.Enqueue(ctx, "turn")
		return err
	}))
}

// BenchmarkEnqueueToStart measures the time from Enqueue's return until an
// idle worker has started the run (its status is running or beyond),
// polled every 100µs.
func BenchmarkEnqueueToStart(b *testing.B) {
	agent := benchAgent(b, 0)
	ctx := context.Background()
	sess, err := agent.NewSession(ctx, "bench", "s", nil)
	if err != nil {
		b.Fatal(err)
	}
	benchWorker(b, agent, 4)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		id, err := sess.Enqueue(ctx, "turn")
		if err != nil {
			b.Fatal(err)
		}
		enqueued := time.Now()
		for {
			info, err := agent.GetRun(ctx, "bench", id)
			if err != nil {
				b.Fatal(err)
			}
			if info.Status != agentpg.RunQueued {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(enqueued)
		if _, err := agent.WaitRun(ctx, "bench", id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-start")
}

// BenchmarkAsyncTurnRoundTrips counts the round trips a Worker's process
// makes per enqueued turn, plain and with one tool call, each run enqueued
// once the previous one has ended: the run's own, River's fetch and
// completion of its job, and River's background work (its leader election,
// polls and reports), which a busier queue amortizes over more runs.
// Another Agent, on a pool of its own, enqueues the runs and waits for
// them.
func BenchmarkAsyncTurnRoundTrips(b *testing.B) {
	tools, toolModel := echoToolTurn(b)
	for _, turn := range []struct {
		name  string
		tools []tool.Tool
		model func(agentpgtest.Request) agentpgtest.Reply
	}{{"plain", nil, agentpgtest.Echo}, {"tool", tools, toolModel}} {
		b.Run(turn.name, func(b *testing.B) {
			db := agentpgtest.DB(b)
			counter := &statementCounter{}
			traced, _ := tracedPool(b, db, counter)
			model := agentpgtest.NewServer(b)
			model.SetResponder(turn.model)
			agent := func(pool *pgxpool.Pool) *agentpg.Agent {
				a, err := agentpg.New(agentpg.Config{DB: pool, Client: model.Client(), Model: "claude-sonnet-5-5", Tools: turn.tools})
				if err != nil {
					b.Fatal(err)
				}
				return a
			}
			benchWorker(b, agent(traced), 1)
			client := agent(db)
			sess := benchSessions(b, client, "s", 1)[0]
			ctx := context.Background()
			counter.on.Store(true)
			b.ResetTimer()
			for range b.N {
				id, err := sess.Enqueue(ctx, "turn")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := client.WaitRun(ctx, "bench", id); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			counter.on.Store(false)
			b.ReportMetric(float64(counter.statements.Load())/float64(b.N), "roundtrips/turn")
			b.ReportMetric(float64(counter.commits.Load())/float64(b.N), "commits/turn")
		})
	}
}
