package agentpg_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// scaleRow adds the slow row of BenchmarkAgainstLoop.
var scaleRow = flag.Bool("agentpg.scale", false,
	"BenchmarkAgainstLoop: also run 512 sessions at once, the model taking 1 s (about 30 s more)")

// BenchmarkAgainstLoop measures AgentPG against a hand-written loop (see
// handLoop) in one run, each on its own default pool (4 connections on 2
// cores) and its own SDK client, against agentpgtest's scripted model
// running in a process of its own, so that this process's CPU time is the
// client's alone: AgentPG or the loop, pgx, the SDK and HTTP. It prints
// the table of docs/performance.md, ratios included. Run with
//
//	go test -run '^$' -bench '^BenchmarkAgainstLoop$' -benchtime 1x .
//
// and add "-args -agentpg.scale" for 512 sessions at once. The
// measures interleave the two in chunks of ten turns, so that a change in
// the machine's load falls on both.
func BenchmarkAgainstLoop(b *testing.B) {
	model := startModelProcess(b)
	db := agentpgtest.DB(b)
	if _, err := db.Exec(context.Background(), loopSchema); err != nil {
		b.Fatal(err)
	}
	load := loadAverage()
	t := &loopTable{}
	b.ResetTimer()
	t.longSession(b, db, model)
	t.concurrent(b, db, model)
	t.toolTurns(b, db, model)
	if *scaleRow {
		t.scale(b, db, model)
	}
	b.StopTimer()
	t.print(os.Stdout, load, loadAverage())
	b.ReportMetric(t.sequential[0]/t.sequential[1], "seq-turns/s-vs-loop")
	b.ReportMetric(float64(t.cpu[0][1])/float64(t.cpu[0][0]), "cpu-turn1000/turn10")
	b.ReportMetric(float64(t.beyond[0])/float64(t.beyond[1]), "tool-beyond-vs-loop")
}

// loopTable holds BenchmarkAgainstLoop's measures; index 0 is AgentPG's,
// 1 the loop's.
type loopTable struct {
	roundTrips, commits [2]float64
	dbTime              [2]time.Duration    // per turn after turn 10, round trips timed by the client
	sequential          [2]float64          // turns/s
	latency, cpu        [2][2]time.Duration // after turn 10, after turn 1,000: median, mean
	concurrentRate      [2]float64          // turns/s
	concurrentWaits     [2]float64          // pool acquisitions that waited, per turn
	concurrentCPU       [2]time.Duration    // per turn
	beyond              [2]time.Duration    // median tool turn beyond the model and the tool
	toolRoundTrips      [2]float64
	toolCommits         [2]float64
	toolDBTime          [2]time.Duration // per turn
	scaled              bool
	scaleRate           [2]float64 // turns/s; 1 is the loop without a database
	scaleCPU            [2]time.Duration
	scaleHeap           [2]float64 // bytes per session in flight
}

const (
	benchModel  = "claude-sonnet-5-5"
	benchSystem = "Be brief."
	benchPrompt = "What is the time?"
	// toolPrompt makes the benchmark's model call the tool echo.
	toolPrompt = "tool: What is the weather in Oslo?"
	// delayHeader carries how long the benchmark's model waits before it
	// answers.
	delayHeader = "X-Bench-Delay"
	// chunk is how many turns one contender runs before the other's turn.
	chunk = 10
)

// The measured turns of the long session: window turns after turn 10
// and after turn lateTurn; the first sequentialTurns make its rate.
const (
	window          = 50
	lateTurn        = 1000
	sequentialTurns = 300
)

// longSession runs one session of each contender for lateTurn+window
// turns, each contender in a process of its own (see
// TestContenderProcess), so that neither's heap and garbage weigh on the
// other's CPU time, the two taking turns chunk by chunk: the rate over
// the first sequentialTurns, and the round trips, commits, database time,
// latency and CPU of the turns after turn 10 and after turn lateTurn.
func (t *loopTable) longSession(b *testing.B, db *pgxpool.Pool, model string) {
	procs := []*contenderProcess{
		startContenderProcess(b, 0, db, model), startContenderProcess(b, 1, db, model),
	}
	samples := [2][]turnSample{}
	var counted [2]chunkReport
	for start := 0; start < lateTurn+window; start += chunk {
		for i, p := range procs {
			report := p.run(b, chunk)
			samples[i] = append(samples[i], report.Samples...)
			if start >= 10 && start < 10+window {
				counted[i].Statements += report.Statements
				counted[i].Commits += report.Commits
				counted[i].DBTime += report.DBTime
			}
		}
	}
	for i := range procs {
		t.roundTrips[i] = float64(counted[i].Statements) / window
		t.commits[i] = float64(counted[i].Commits) / window
		t.dbTime[i] = counted[i].DBTime / window
		var total time.Duration
		for _, s := range samples[i][:sequentialTurns] {
			total += s.Wall
		}
		t.sequential[i] = sequentialTurns / total.Seconds()
		for j, from := range []int{10, lateTurn} {
			measured := samples[i][from : from+window]
			t.latency[i][j] = median(measured, func(s turnSample) time.Duration { return s.Wall })
			var cpu time.Duration
			for _, s := range measured {
				cpu += s.CPU
			}
			t.cpu[i][j] = cpu / window
		}
	}
}

// chunkReport is what a contender's process reports of a chunk of turns:
// each turn, the CPU time of the garbage collection that ends the chunk
// shared among them, and the chunk's round trips, commits and database
// time.
type chunkReport struct {
	Samples             []turnSample
	Statements, Commits int64
	DBTime              time.Duration
}

// contenderProcess is a process running a session of a contender.
type contenderProcess struct {
	in  *json.Encoder
	out *json.Decoder
}

// run has the process run n turns.
func (p *contenderProcess) run(b *testing.B, n int) chunkReport {
	var report chunkReport
	if err := p.in.Encode(n); err != nil {
		b.Fatal(err)
	}
	if err := p.out.Decode(&report); err != nil {
		b.Fatalf("the contender's process: %v", err)
	}
	if len(report.Samples) != n {
		b.Fatalf("the contender's process ran %d turns of %d", len(report.Samples), n)
	}
	return report
}

// Environment variables of TestContenderProcess: which contender it runs
// (its index in contenders' result), on which database, against which
// model.
const (
	contenderEnv   = "AGENTPG_BENCH_CONTENDER"
	contenderDBEnv = "AGENTPG_BENCH_DB"
	contenderModel = "AGENTPG_BENCH_MODEL_URL"
)

// startContenderProcess starts this test binary as the process running
// a session of contender i (0 AgentPG, 1 the loop), stopped when the
// benchmark ends.
func startContenderProcess(b *testing.B, i int, db *pgxpool.Pool, model string) *contenderProcess {
	stdin, stdout := startHelper(b, "TestContenderProcess", fmt.Sprintf("%s=%d", contenderEnv, i),
		contenderDBEnv+"="+db.Config().ConnString(), contenderModel+"="+model)
	return &contenderProcess{in: json.NewEncoder(stdin), out: json.NewDecoder(stdout)}
}

// TestContenderProcess is the process startContenderProcess starts: it
// opens a session of its contender and, for each number of turns read
// from its standard input, runs them and writes their chunkReport, until
// its input ends. It does nothing unless started by
// startContenderProcess.
func TestContenderProcess(t *testing.T) {
	if os.Getenv(contenderEnv) == "" {
		return
	}
	which, err := strconv.Atoi(os.Getenv(contenderEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	db, err := pgxpool.New(ctx, os.Getenv(contenderDBEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := contenders(t, db, os.Getenv(contenderModel), 0, false)[which]
	sess := openAll(t, []*contender{c}, 1)[0][0]
	in, out := json.NewDecoder(os.Stdin), json.NewEncoder(os.Stdout)
	c.counter.on.Store(true)
	for {
		var n int
		if err := in.Decode(&n); err != nil {
			return // the benchmark ended
		}
		statements, commits, dbTime := c.counter.statements.Load(), c.counter.commits.Load(), c.counter.dbTime.Load()
		report := chunkReport{Samples: make([]turnSample, n)}
		for i := range n {
			if report.Samples[i], err = c.timedTurn(ctx, sess, benchPrompt); err != nil {
				t.Fatal(err)
			}
		}
		report.Statements = c.counter.statements.Load() - statements
		report.Commits = c.counter.commits.Load() - commits
		report.DBTime = time.Duration(c.counter.dbTime.Load() - dbTime)
		gc := collect() / time.Duration(n)
		for i := range report.Samples {
			report.Samples[i].CPU += gc
		}
		if err := out.Encode(report); err != nil {
			t.Fatal(err)
		}
	}
}

// collect collects the garbage, and returns the CPU time it took.
func collect() time.Duration {
	start := processCPU()
	runtime.GC()
	return processCPU() - start
}

// concurrent runs 8 sessions of each contender, 20 turns each, at once,
// the model taking 50 ms.
func (t *loopTable) concurrent(b *testing.B, db *pgxpool.Pool, model string) {
	const sessions, turns = 8, 20
	cs := contenders(b, db, model, 50*time.Millisecond, false)
	convs := openAll(b, cs, sessions)
	for i, c := range cs {
		runAll(b, convs[i], 1, benchPrompt) // warm: the pool's connections dialed, their statements prepared
		runtime.GC()
		waits := c.pool.Stat().EmptyAcquireCount()
		cpu := processCPU()
		elapsed := runAll(b, convs[i], turns, benchPrompt)
		t.concurrentCPU[i] = (processCPU() - cpu) / (sessions * turns)
		t.concurrentRate[i] = sessions * turns / elapsed.Seconds()
		t.concurrentWaits[i] = float64(c.pool.Stat().EmptyAcquireCount()-waits) / (sessions * turns)
	}
}

// toolTurns runs tool turns of one session of each contender,
// interleaved: the time of a turn beyond its two model calls and the
// tool's, its round trips and commits.
func (t *loopTable) toolTurns(b *testing.B, db *pgxpool.Pool, model string) {
	const warm, measured = chunk, 50
	ctx := context.Background()
	cs := contenders(b, db, model, 0, true)
	convs := openAll(b, cs, 1)
	beyond := [2][]time.Duration{}
	for start := 0; start < warm+measured; start += chunk {
		for i, c := range cs {
			runtime.GC()
			c.counter.on.Store(start >= warm)
			for range chunk {
				tool := c.toolTime.Load()
				s, err := c.timedTurn(ctx, convs[i][0], toolPrompt)
				if err != nil {
					b.Fatalf("%s, tool turn: %v", c.name, err)
				}
				if start >= warm {
					beyond[i] = append(beyond[i], s.Wall-s.Model-time.Duration(c.toolTime.Load()-tool))
				}
			}
			c.counter.on.Store(false)
		}
	}
	for i, c := range cs {
		t.beyond[i] = median(beyond[i], func(d time.Duration) time.Duration { return d })
		t.toolRoundTrips[i] = float64(c.counter.statements.Load()) / measured
		t.toolCommits[i] = float64(c.counter.commits.Load()) / measured
		t.toolDBTime[i] = time.Duration(c.counter.dbTime.Load()) / measured
	}
}

// scale runs 512 sessions at once, 5 turns each, the model taking a
// second: AgentPG, and the loop without its database (whose transaction
// would hold one of the pool's 4 connections per model call).
func (t *loopTable) scale(b *testing.B, db *pgxpool.Pool, model string) {
	const sessions, turns = 512, 5
	ours := contenders(b, db, model, time.Second, false)[0]
	bare := &contender{name: "SDK alone", clock: &modelClock{}}
	bare.client = benchClient(model, time.Second, bare.clock)
	bare.open = func(context.Context, string) (benchSession, error) {
		return &handLoop{client: bare.client}, nil
	}
	for i, c := range []*contender{ours, bare} {
		convs := openAll(b, []*contender{c}, sessions)[0]
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		peak := samplePeakHeap()
		cpu := processCPU()
		elapsed := runAll(b, convs, turns, benchPrompt)
		t.scaleCPU[i] = (processCPU() - cpu) / (sessions * turns)
		t.scaleRate[i] = sessions * turns / elapsed.Seconds()
		t.scaleHeap[i] = float64(peak()-before.HeapInuse) / sessions
	}
	t.scaled = true
}

// samplePeakHeap samples the heap in use every 100 ms until the returned
// function is called, which returns the highest sample.
func samplePeakHeap() func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// print writes the table, with the load average before and after.
func (t *loopTable) print(w io.Writer, before, after string) {
	ratio := func(ours, loop float64) string { return fmt.Sprintf("%.2f×", ours/loop) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	µs := func(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
	fmt.Fprintf(w, "\nAgentPG against a hand-written loop, one run; load average %s before, %s after; GOMAXPROCS %d\n\n",
		before, after, runtime.GOMAXPROCS(0))
	fmt.Fprintln(w, "| measure | AgentPG | hand-written loop | AgentPG / loop | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fmt.Fprintf(w, "| plain turn round trips / commits | %.2f / %.2f | %.2f / %.2f | | 3 / ≤ 2 |\n",
		t.roundTrips[0], t.commits[0], t.roundTrips[1], t.commits[1])
	fmt.Fprintf(w, "| sequential plain turns/s, one session, %d turns | %.0f | %.0f | %s | ≥ 1.1× |\n",
		sequentialTurns, t.sequential[0], t.sequential[1], ratio(t.sequential[0], t.sequential[1]))
	for j, turn := range []string{"10", "1,000"} {
		fmt.Fprintf(w, "| latency of the %d turns after turn %s, median, compaction off | %s | %s | %s | |\n", window, turn,
			ms(t.latency[0][j]), ms(t.latency[1][j]), ratio(float64(t.latency[0][j]), float64(t.latency[1][j])))
	}
	fmt.Fprintf(w, "| … database time per turn after turn 10 (round trips, timed by the client) | %s | %s | %s | |\n",
		ms(t.dbTime[0]), ms(t.dbTime[1]), ratio(float64(t.dbTime[0]), float64(t.dbTime[1])))
	for j, turn := range []string{"10", "1,000"} {
		fmt.Fprintf(w, "| process CPU per turn after turn %s, mean (time outside the model) | %s | %s | %s | |\n", turn,
			µs(t.cpu[0][j]), µs(t.cpu[1][j]), ratio(float64(t.cpu[0][j]), float64(t.cpu[1][j])))
	}
	fmt.Fprintf(w, "| CPU per turn, turn 1,000 / turn 10 | %s | %s | | AgentPG ≤ 1.2× |\n",
		ratio(float64(t.cpu[0][1]), float64(t.cpu[0][0])), ratio(float64(t.cpu[1][1]), float64(t.cpu[1][0])))
	fmt.Fprintf(w, "| 8 sessions × 20 turns, model 50 ms, 4 connections: turns/s | %.0f (%.0f%% of 160) | %.0f | %s | ≥ 150 |\n",
		t.concurrentRate[0], t.concurrentRate[0]/1.6, t.concurrentRate[1], ratio(t.concurrentRate[0], t.concurrentRate[1]))
	fmt.Fprintf(w, "| … connection waits per turn; CPU per turn | %.2f; %s | %.2f; %s | | |\n",
		t.concurrentWaits[0], µs(t.concurrentCPU[0]), t.concurrentWaits[1], µs(t.concurrentCPU[1]))
	fmt.Fprintf(w, "| tool turn beyond 2 model calls and the tool, median | %s | %s | %s | ≤ 1.0× |\n",
		ms(t.beyond[0]), ms(t.beyond[1]), ratio(float64(t.beyond[0]), float64(t.beyond[1])))
	fmt.Fprintf(w, "| tool turn round trips / commits; database time | %.2f / %.2f; %s | %.2f / %.2f; %s | | |\n",
		t.toolRoundTrips[0], t.toolCommits[0], ms(t.toolDBTime[0]), t.toolRoundTrips[1], t.toolCommits[1], ms(t.toolDBTime[1]))
	if t.scaled {
		fmt.Fprintf(w, "| 512 sessions × 5 turns, model 1 s: turns/s (of 512); CPU per turn; heap per session | %.0f (%.0f%%); %s; %.0f KB | SDK alone, no database: %.0f (%.0f%%); %s; %.0f KB | %s | ≥ 90%% |\n",
			t.scaleRate[0], t.scaleRate[0]/5.12, µs(t.scaleCPU[0]), t.scaleHeap[0]/1024,
			t.scaleRate[1], t.scaleRate[1]/5.12, µs(t.scaleCPU[1]), t.scaleHeap[1]/1024,
			ratio(t.scaleRate[0], t.scaleRate[1]))
	} else {
		fmt.Fprintln(w, "| 512 sessions × 5 turns, model 1 s | not run: add -args -agentpg.scale | | | ≥ 90% |")
	}
	fmt.Fprintln(w, "\nAgentPG v0, the reference implementation, is not available here: its column is left out.")
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if fields := strings.Fields(string(data)); err == nil && len(fields) >= 3 {
		return strings.Join(fields[:3], " ")
	}
	return "unknown"
}

// median returns the median of f over samples.
func median[T any](samples []T, f func(T) time.Duration) time.Duration {
	values := make([]time.Duration, len(samples))
	for i, s := range samples {
		values[i] = f(s)
	}
	slices.Sort(values)
	return values[len(values)/2]
}

// benchSession is one session of a contender.
type benchSession interface {
	turn(ctx context.Context, prompt string) error
}

// ourSession is an AgentPG session.
type ourSession struct{ *agentpg.Session }

func (s ourSession) turn(ctx context.Context, prompt string) error {
	_, err := s.Run(ctx, prompt)
	return err
}

// contender is AgentPG or the hand-written loop, with its pool, whose
// statements counter counts, and its model client, whose calls clock
// times.
type contender struct {
	name     string
	pool     *pgxpool.Pool
	counter  *statementCounter
	client   *anthropic.Client
	clock    *modelClock
	toolTime *atomic.Int64 // nanoseconds spent in the tool
	open     func(ctx context.Context, id string) (benchSession, error)
}

// turnSample is what a turn took: its time, the process's CPU time, and
// the time of its model calls.
type turnSample struct{ Wall, CPU, Model time.Duration }

// timedTurn runs a turn of conv.
func (c *contender) timedTurn(ctx context.Context, conv benchSession, prompt string) (turnSample, error) {
	model, cpu, start := c.clock.total.Load(), processCPU(), time.Now()
	err := conv.turn(ctx, prompt)
	return turnSample{Wall: time.Since(start), CPU: processCPU() - cpu, Model: time.Duration(c.clock.total.Load() - model)}, err
}

// contenders returns AgentPG and the hand-written loop, their model
// answering after delay, offering the tool echo when withTool is set.
func contenders(b testing.TB, db *pgxpool.Pool, model string, delay time.Duration, withTool bool) []*contender {
	cs := make([]*contender, 2)
	for i, name := range []string{"AgentPG", "hand-written loop"} {
		c := &contender{name: name, counter: &statementCounter{}, clock: &modelClock{}, toolTime: new(atomic.Int64)}
		c.pool, _ = tracedPool(b, db, c.counter)
		c.client = benchClient(model, delay, c.clock)
		cs[i] = c
	}
	ours, loop := cs[0], cs[1]
	var tools []tool.Tool
	if withTool {
		tools = []tool.Tool{benchEchoTool(b, ours.toolTime)}
	}
	agent, err := agentpg.New(agentpg.Config{
		DB: ours.pool, Client: ours.client, Model: benchModel, SystemPrompt: benchSystem, Tools: tools,
		Compaction: agentpg.CompactionConfig{Disabled: true},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := agent.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	ours.open = func(ctx context.Context, id string) (benchSession, error) {
		sess, err := agent.NewSession(ctx, "bench", id, nil)
		return ourSession{sess}, err
	}
	loop.open = func(_ context.Context, id string) (benchSession, error) {
		l := &handLoop{pool: loop.pool, client: loop.client, session: id, toolTime: loop.toolTime}
		if withTool {
			l.tools = []anthropic.ToolUnionParam{loopEchoTool}
		}
		return l, nil
	}
	return cs
}

// openAll opens n conversations of each contender.
func openAll(b testing.TB, cs []*contender, n int) [][]benchSession {
	ctx := context.Background()
	convs := make([][]benchSession, len(cs))
	for i, c := range cs {
		for j := range n {
			conv, err := c.open(ctx, fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(c.name, " ", "-"), time.Now().UnixNano(), j))
			if err != nil {
				b.Fatal(err)
			}
			convs[i] = append(convs[i], conv)
		}
	}
	return convs
}

// runAll runs turns turns of each session, the sessions at
// once, and returns how long it took.
func runAll(b *testing.B, convs []benchSession, turns int, prompt string) time.Duration {
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(convs))
	for i, conv := range convs {
		wg.Go(func() {
			for range turns {
				if errs[i] = conv.turn(ctx, prompt); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// benchEchoTool returns the tool echo, which adds the time it takes to
// spent.
func benchEchoTool(b testing.TB, spent *atomic.Int64) tool.Tool {
	echo, err := tool.NewFunc("echo", "Echoes its input.", func(_ context.Context, in cityInput) (string, error) {
		start := time.Now()
		defer func() { spent.Add(int64(time.Since(start))) }()
		return echoCity(in.City), nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return echo
}

// echoCity is what the echo tool does.
func echoCity(city string) string { return "It is sunny in " + city + "." }

// loopEchoTool is the echo tool as the hand-written loop declares it.
var loopEchoTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:        "echo",
	Description: anthropic.String("Echoes its input."),
	InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}},
		Required:   []string{"city"},
	},
}}

// loopSchema is the hand-written loop's table.
const loopSchema = `CREATE TABLE loop_messages (
	session_id text NOT NULL,
	seq int NOT NULL,
	role text NOT NULL,
	content jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (session_id, seq))`

// handLoop is the hand-written loop that issue 10 measures AgentPG
// against: one conversation kept whole in memory, each turn one
// transaction held open across its model calls: BEGIN, insert the prompt,
// stream the answer through the SDK with the whole history, insert it
// and, while the model asks for the tool, run it, insert its result, stream
// the next answer and insert it; COMMIT. A plain turn is 4 round trips, a
// tool turn 6, and one commit. Without a pool, it keeps no record.
type handLoop struct {
	pool     *pgxpool.Pool
	client   *anthropic.Client
	tools    []anthropic.ToolUnionParam
	session  string
	toolTime *atomic.Int64
	history  []anthropic.MessageParam
}

func (l *handLoop) turn(ctx context.Context, prompt string) (err error) {
	var tx pgx.Tx
	if l.pool != nil {
		if tx, err = l.pool.Begin(ctx); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, tx.Rollback(ctx))
			}
		}()
	}
	history := l.history
	next := anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))
	for {
		history = append(history, next)
		if err := l.insert(ctx, tx, "user", len(history), next.OfUser.Content); err != nil {
			return err
		}
		answer, err := l.call(ctx, history)
		if err != nil {
			return err
		}
		reply := answer.ToParam()
		history = append(history, reply)
		if err := l.insert(ctx, tx, "assistant", len(history), reply.OfAssistant.Content); err != nil {
			return err
		}
		if answer.StopReason != anthropic.StopReasonToolUse {
			break
		}
		var results []anthropic.ContentBlockParamUnion
		for _, block := range answer.Content {
			if block.Type == "tool_use" {
				results = append(results, l.runTool(block))
			}
		}
		next = anthropic.NewUserMessage(results...)
	}
	if tx != nil {
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	l.history = history
	return nil
}

// insert stores the seq-th message of the conversation.
func (l *handLoop) insert(ctx context.Context, tx pgx.Tx, role string, seq int, content []anthropic.ContentBlockParamUnion) error {
	if tx == nil {
		return nil
	}
	data, err := json.Marshal(content)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO loop_messages (session_id, seq, role, content) VALUES ($1, $2, $3, $4)`,
		l.session, seq, role, data)
	return err
}

// call streams the model's answer to history.
func (l *handLoop) call(ctx context.Context, history []anthropic.MessageParam) (*anthropic.Message, error) {
	stream := l.client.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
		Model:        benchModel,
		MaxTokens:    agentpg.DefaultMaxTokens,
		System:       []anthropic.TextBlockParam{{Text: benchSystem}},
		Messages:     history,
		Tools:        l.tools,
		CacheControl: anthropic.NewCacheControlEphemeralParam(),
	})
	defer stream.Close()
	answer := &anthropic.Message{}
	for stream.Next() {
		if err := answer.Accumulate(stream.Current()); err != nil {
			return nil, err
		}
	}
	return answer, stream.Err()
}

// runTool runs the echo tool for a tool_use block.
func (l *handLoop) runTool(block anthropic.ContentBlockUnion) anthropic.ContentBlockParamUnion {
	start := time.Now()
	var in cityInput
	err := json.Unmarshal(block.Input, &in)
	result := anthropic.NewToolResultBlock(block.ID, echoCity(in.City), err != nil)
	l.toolTime.Add(int64(time.Since(start)))
	return result
}

// modelClock times the model calls of a client: from sending the request
// to the end of the response's body.
type modelClock struct{ total atomic.Int64 }

// middleware is the clock as an SDK middleware.
func (c *modelClock) middleware(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	start := time.Now()
	res, err := next(req)
	if err != nil {
		c.total.Add(int64(time.Since(start)))
		return res, err
	}
	res.Body = &timedBody{ReadCloser: res.Body, clock: c, start: start}
	return res, nil
}

// timedBody stops its clock at the end of the body or when closed.
type timedBody struct {
	io.ReadCloser
	clock   *modelClock
	start   time.Time
	stopped bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.stop()
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.stop()
	return b.ReadCloser.Close()
}

func (b *timedBody) stop() {
	if !b.stopped {
		b.stopped = true
		b.clock.total.Add(int64(time.Since(b.start)))
	}
}

// benchClient returns an SDK client of the model at url, which answers
// after delay, its calls timed by clock. Its HTTP client keeps as many
// idle connections as sessions run at once, so that none is dialed anew.
func benchClient(url string, delay time.Duration, clock *modelClock) *anthropic.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 1024
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(url),
		option.WithAPIKey("sk-ant-bench"),
		option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: transport}),
		option.WithMiddleware(clock.middleware),
	}
	if delay > 0 {
		opts = append(opts, option.WithHeader(delayHeader, delay.String()))
	}
	client := anthropic.NewClient(opts...)
	return &client
}

// benchResponder answers the benchmark's requests: a tool result with
// "done", a prompt starting with "tool:" by calling the tool echo, any
// other prompt as agentpgtest.Echo does; each after the delay its
// request's delayHeader says.
func benchResponder(req agentpgtest.Request) agentpgtest.Reply {
	var reply agentpgtest.Reply
	last := req.Messages[len(req.Messages)-1].Content
	switch {
	case last[0].Type == "tool_result":
		reply = agentpgtest.Text("done")
	case strings.HasPrefix(last[0].Text, "tool:"):
		reply = agentpgtest.Blocks(agentpgtest.ToolUse(fmt.Sprintf("toolu_%d", len(req.Messages)), "echo", map[string]any{"city": "Oslo"}))
	default:
		reply = agentpgtest.Echo(req)
	}
	reply.Delay, _ = time.ParseDuration(req.Header.Get(delayHeader))
	return reply
}

// modelProcessEnv starts TestScriptedModelProcess as the model server.
const modelProcessEnv = "AGENTPG_BENCH_MODEL"

// startModelProcess starts this test binary as the scripted model's
// process, stopped when the benchmark ends, and returns its URL.
func startModelProcess(b *testing.B) string {
	_, stdout := startHelper(b, "TestScriptedModelProcess", modelProcessEnv+"=1")
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if url, ok := strings.CutPrefix(lines.Text(), "model-url="); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return url
		}
	}
	b.Fatalf("the model process did not start: %v", lines.Err())
	return ""
}

// startHelper starts this test binary running only the test named test,
// with env added to its environment, and returns its standard input and
// output. The process is told to stop, by the end of its input, and waited
// for when the benchmark ends.
func startHelper(b *testing.B, test string, env ...string) (io.Writer, io.Reader) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	return stdin, stdout
}

// TestScriptedModelProcess is the model process startModelProcess starts:
// agentpgtest's scripted server answering with benchResponder, keeping no
// requests, until its standard input ends. It does nothing unless started
// by startModelProcess.
func TestScriptedModelProcess(t *testing.T) {
	if os.Getenv(modelProcessEnv) == "" {
		return
	}
	srv := agentpgtest.NewServer(t)
	srv.KeepRequests(false)
	srv.SetResponder(benchResponder)
	fmt.Printf("model-url=%s\n", srv.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
