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
	sequential          [2]float64          // turns/s
	latency, cpu        [2][2]time.Duration // median at turn 10, turn 1,000
	concurrentRate      [2]float64          // turns/s
	concurrentWaits     [2]float64          // pool acquisitions that waited, per turn
	concurrentCPU       [2]time.Duration    // per turn
	beyond              [2]time.Duration    // median tool turn beyond the model and the tool
	toolRoundTrips      [2]float64
	toolCommits         [2]float64
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

// The measured turns of the long session: from turn 10 and from turn
// 1,000, window turns each; the first sequentialTurns make its rate.
const (
	window          = 20
	lateTurn        = 1000
	sequentialTurns = 300
)

// longSession runs one session of each contender for lateTurn+window
// turns, interleaved: the rate over the first sequentialTurns, the round
// trips, commits, latency and CPU of the turns from 10 and from lateTurn.
func (t *loopTable) longSession(b *testing.B, db *pgxpool.Pool, model string) {
	ctx := context.Background()
	cs := contenders(b, db, model, 0, false)
	convs := openAll(b, cs, 1)
	samples := [2][]turnSample{}
	for start := 0; start < lateTurn+window-1; start += chunk {
		for i, c := range cs {
			for turn := start; turn < start+chunk; turn++ {
				c.counter.on.Store(turn >= 9 && turn < 9+window) // turn+1 is the turn's number
				s, err := c.timedTurn(ctx, convs[i][0], benchPrompt)
				if err != nil {
					b.Fatalf("%s, turn %d: %v", c.name, turn+1, err)
				}
				samples[i] = append(samples[i], s)
			}
			c.counter.on.Store(false)
		}
	}
	for i, c := range cs {
		t.roundTrips[i] = float64(c.counter.statements.Load()) / window
		t.commits[i] = float64(c.counter.commits.Load()) / window
		var total time.Duration
		for _, s := range samples[i][:sequentialTurns] {
			total += s.wall
		}
		t.sequential[i] = sequentialTurns / total.Seconds()
		for j, from := range []int{9, lateTurn - 1} {
			measured := samples[i][from : from+window]
			t.latency[i][j] = median(measured, func(s turnSample) time.Duration { return s.wall })
			t.cpu[i][j] = median(measured, func(s turnSample) time.Duration { return s.cpu })
		}
	}
}

// concurrent runs 8 sessions of each contender, 20 turns each, at once,
// the model taking 50 ms.
func (t *loopTable) concurrent(b *testing.B, db *pgxpool.Pool, model string) {
	const sessions, turns = 8, 20
	cs := contenders(b, db, model, 50*time.Millisecond, false)
	convs := openAll(b, cs, sessions)
	for i, c := range cs {
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
			c.counter.on.Store(start >= warm)
			for range chunk {
				tool := c.toolTime.Load()
				s, err := c.timedTurn(ctx, convs[i][0], toolPrompt)
				if err != nil {
					b.Fatalf("%s, tool turn: %v", c.name, err)
				}
				if start >= warm {
					beyond[i] = append(beyond[i], s.wall-s.model-time.Duration(c.toolTime.Load()-tool))
				}
			}
			c.counter.on.Store(false)
		}
	}
	for i, c := range cs {
		t.beyond[i] = median(beyond[i], func(d time.Duration) time.Duration { return d })
		t.toolRoundTrips[i] = float64(c.counter.statements.Load()) / measured
		t.toolCommits[i] = float64(c.counter.commits.Load()) / measured
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
		fmt.Fprintf(w, "| turn %s latency, median, compaction off | %s | %s | %s | |\n", turn,
			ms(t.latency[0][j]), ms(t.latency[1][j]), ratio(float64(t.latency[0][j]), float64(t.latency[1][j])))
	}
	for j, turn := range []string{"10", "1,000"} {
		fmt.Fprintf(w, "| process CPU per turn at turn %s (time outside the model) | %s | %s | %s | |\n", turn,
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
	fmt.Fprintf(w, "| tool turn round trips / commits | %.2f / %.2f | %.2f / %.2f | | |\n",
		t.toolRoundTrips[0], t.toolCommits[0], t.toolRoundTrips[1], t.toolCommits[1])
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
type turnSample struct{ wall, cpu, model time.Duration }

// timedTurn runs a turn of conv.
func (c *contender) timedTurn(ctx context.Context, conv benchSession, prompt string) (turnSample, error) {
	model, cpu, start := c.clock.total.Load(), processCPU(), time.Now()
	err := conv.turn(ctx, prompt)
	return turnSample{wall: time.Since(start), cpu: processCPU() - cpu, model: time.Duration(c.clock.total.Load() - model)}, err
}

// contenders returns AgentPG and the hand-written loop, their model
// answering after delay, offering the tool echo when withTool is set.
func contenders(b *testing.B, db *pgxpool.Pool, model string, delay time.Duration, withTool bool) []*contender {
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
func openAll(b *testing.B, cs []*contender, n int) [][]benchSession {
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
func benchEchoTool(b *testing.B, spent *atomic.Int64) tool.Tool {
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestScriptedModelProcess$")
	cmd.Env = append(os.Environ(), modelProcessEnv+"=1")
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
		_ = stdin.Close() // the process ends when its input does
		_ = cmd.Wait()
	})
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
