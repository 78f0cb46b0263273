package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// The run loop does not store events yet: these tests write them with an
// eventWriter on a run begun as the run loop begins one, and follow them
// with RunEvents.

// eventsEnv is an agent on a database of the test's own, with a session
// and a run in progress, holding the session's lease.
type eventsEnv struct {
	agent *Agent
	cfg   Config
	db    *pgxpool.Pool
	runID string
}

func newEventsEnv(t *testing.T) *eventsEnv {
	t.Helper()
	db := agentpgtest.DB(t)
	cfg := Config{DB: db, Client: agentpgtest.NewServer(t).Client(), Model: "claude-sonnet-5-5"}
	agent, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := agent.NewSession(t.Context(), "acme", "events", nil)
	if err != nil {
		t.Fatal(err)
	}
	begun, err := agent.store.BeginRun(t.Context(), store.BeginRunParams{
		TenantID: "acme", SessionID: sess.ID, RunID: newID(), Model: cfg.Model, LeaseTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &eventsEnv{agent: agent, cfg: cfg, db: db, runID: begun.Lease.RunID}
}

// another returns a second agent on the same database, as another process
// would have.
func (env *eventsEnv) another(t *testing.T) *Agent {
	t.Helper()
	agent, err := New(env.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return agent
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collect gathers what events yields until it ends or fails.
func collect(events iter.Seq2[Event, error]) ([]Event, error) {
	var got []Event
	for e, err := range events {
		if err != nil {
			return got, err
		}
		got = append(got, e)
	}
	return got, nil
}

// describe renders an event for comparison.
func describe(e Event) string {
	s := fmt.Sprintf("%d %s", e.Seq, e.Kind)
	for _, f := range []struct{ name, value string }{
		{"text", e.Text}, {"id", e.ToolUseID}, {"name", e.ToolName}, {"input", string(e.Input)},
		{"status", e.Status}, {"stop", e.StopReason}, {"error", e.Error},
	} {
		if f.value != "" {
			s += fmt.Sprintf(" %s=%q", f.name, f.value)
		}
	}
	if e.IsError {
		s += " is_error"
	}
	if e.Usage != (Usage{}) {
		s += fmt.Sprintf(" usage=%d/%d", e.Usage.InputTokens, e.Usage.OutputTokens)
	}
	return s
}

func describeAll(events []Event) string {
	lines := make([]string, len(events))
	for i, e := range events {
		lines[i] = describe(e)
	}
	return strings.Join(lines, "\n")
}

// storedEvents returns the run's stored events, as RunEvents yields them.
func (env *eventsEnv) storedEvents(t *testing.T) []Event {
	t.Helper()
	rows, err := env.agent.store.ListEvents(t.Context(), "acme", env.runID, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]Event, len(rows))
	for i, row := range rows {
		if events[i], err = decodeEvent(row); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

func TestEventWriterStoresEventsInOrder(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	w := newEventWriter(env.agent, "acme", env.runID)
	w.add(Event{Kind: EventThinking, Text: "The user wants the weather."})
	w.add(Event{Kind: EventText, Text: "Let me check."})
	w.add(Event{Kind: EventToolCall, ToolUseID: "toolu_1", ToolName: "weather", Input: json.RawMessage(`{"city": "Paris", "days": [1, 2]}`)})
	w.add(Event{Kind: EventApproval, ToolUseID: "toolu_1", ToolName: "weather", Status: "pending"})
	w.add(Event{Kind: EventApproval, ToolUseID: "toolu_1", ToolName: "weather", Status: "approved"})
	w.add(Event{Kind: EventToolCall, ToolUseID: "toolu_2", ToolName: "weather", Input: json.RawMessage(`{"city":`)})
	w.add(Event{Kind: EventToolResult, ToolUseID: "toolu_1", ToolName: "weather", Text: "sunny"})
	w.add(Event{Kind: EventToolResult, ToolUseID: "toolu_2", ToolName: "weather", Text: "invalid input", IsError: true})
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	w.add(Event{Kind: EventText, Text: "It is sunny <& 20°C>."})
	if err := w.end(ctx, Event{Status: "completed", StopReason: "end_turn", Usage: Usage{InputTokens: 120, OutputTokens: 30}}); err != nil {
		t.Fatal(err)
	}
	// Nothing is stored after the end.
	w.add(Event{Kind: EventText, Text: "late"})
	if err := w.flush(ctx); err != nil {
		t.Fatalf("flush after end: %v", err)
	}

	got, err := collect(env.agent.RunEvents(ctx, "acme", env.runID, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`1 thinking text="The user wants the weather."`,
		`2 text text="Let me check."`,
		`3 tool_call id="toolu_1" name="weather" input="{\"city\":\"Paris\",\"days\":[1,2]}"`,
		`4 approval id="toolu_1" name="weather" status="pending"`,
		`5 approval id="toolu_1" name="weather" status="approved"`,
		`6 tool_call id="toolu_2" name="weather" input="{\"city\":"`,
		`7 tool_result text="sunny" id="toolu_1" name="weather"`,
		`8 tool_result text="invalid input" id="toolu_2" name="weather" is_error`,
		`9 text text="It is sunny <& 20°C>."`,
		`10 run_end status="completed" stop="end_turn" usage=120/30`,
	}, "\n")
	if got := describeAll(got); got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}
}

func TestEventWriterCoalescesDeltas(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	w := newEventWriter(env.agent, "acme", env.runID)
	var text, thinking strings.Builder
	for i := range 100 {
		delta := fmt.Sprintf("%d·", i)
		text.WriteString(delta)
		w.add(Event{Kind: EventText, Text: delta})
		if i%25 == 0 {
			thinking.WriteString(delta)
			w.add(Event{Kind: EventThinking, Text: delta})
		}
	}
	if err := w.end(ctx, Event{Status: "completed"}); err != nil {
		t.Fatal(err)
	}
	events := env.storedEvents(t)
	var gotText, gotThinking strings.Builder
	for _, e := range events {
		switch e.Kind {
		case EventText:
			gotText.WriteString(e.Text)
		case EventThinking:
			gotThinking.WriteString(e.Text)
		}
	}
	if gotText.String() != text.String() || gotThinking.String() != thinking.String() {
		t.Fatalf("coalesced deltas changed:\ntext %q\nwant %q\nthinking %q\nwant %q",
			gotText.String(), text.String(), gotThinking.String(), thinking.String())
	}
	// 104 deltas, in about a millisecond: the first is written alone, the
	// others together, a text and a thinking event for each stretch.
	if len(events) > 20 {
		t.Fatalf("104 deltas took %d events:\n%s", len(events), describeAll(events))
	}
	t.Logf("104 deltas took %d events", len(events))
}

// A follower in another process, started before the events, gets each
// exactly once, in order, and ends after the run's end.
func TestRunEventsFollowsALiveRun(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	type result struct {
		events []Event
		err    error
	}
	followers := make(chan result, 2)
	for _, agent := range []*Agent{env.agent, env.another(t)} {
		go func() {
			events, err := collect(agent.RunEvents(ctx, "acme", env.runID, 0))
			followers <- result{events, err}
		}()
	}

	w := newEventWriter(env.agent, "acme", env.runID)
	var text strings.Builder
	for step := range 5 {
		for i := range 20 {
			delta := fmt.Sprintf("[%d.%d]", step, i)
			text.WriteString(delta)
			w.add(Event{Kind: EventText, Text: delta})
			time.Sleep(time.Millisecond)
		}
		w.add(Event{Kind: EventToolCall, ToolUseID: fmt.Sprint("toolu_", step), ToolName: "t", Input: json.RawMessage(`{}`)})
		time.Sleep(20 * time.Millisecond)
		w.add(Event{Kind: EventToolResult, ToolUseID: fmt.Sprint("toolu_", step), ToolName: "t", Text: "ok"})
		if err := w.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.end(ctx, Event{Status: "completed", StopReason: "end_turn"}); err != nil {
		t.Fatal(err)
	}

	stored := describeAll(env.storedEvents(t))
	for range 2 {
		r := <-followers
		if r.err != nil {
			t.Fatalf("follower: %v", r.err)
		}
		if got := describeAll(r.events); got != stored {
			t.Fatalf("follower got:\n%s\nstored:\n%s", got, stored)
		}
		var got strings.Builder
		for i, e := range r.events {
			if e.Seq != int64(i+1) {
				t.Fatalf("event %d has seq %d", i, e.Seq)
			}
			if e.Kind == EventText {
				got.WriteString(e.Text)
			}
		}
		if got.String() != text.String() {
			t.Fatalf("text %q, want %q", got.String(), text.String())
		}
		if last := r.events[len(r.events)-1]; last.Kind != EventRunEnd || last.Status != "completed" {
			t.Fatalf("last event: %s", describe(last))
		}
	}
}

// A follower that stops and comes back with the last seq it saw gets the
// rest, exactly once.
func TestRunEventsResumesAfterSeq(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	w := newEventWriter(env.agent, "acme", env.runID)
	for i := range 5 {
		w.add(Event{Kind: EventToolResult, ToolUseID: fmt.Sprint("toolu_", i), Text: fmt.Sprint("result ", i)})
		if err := w.flush(ctx); err != nil { // a step would store it
			t.Fatal(err)
		}
	}

	var seen []Event
	for e, err := range env.agent.RunEvents(ctx, "acme", env.runID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, e)
		if len(seen) == 3 {
			break
		}
	}
	last := seen[len(seen)-1].Seq

	for i := 5; i < 8; i++ {
		w.add(Event{Kind: EventToolResult, ToolUseID: fmt.Sprint("toolu_", i), Text: fmt.Sprint("result ", i)})
		if err := w.flush(ctx); err != nil { // a step would store it
			t.Fatal(err)
		}
	}
	if err := w.end(ctx, Event{Status: "failed", Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	rest, err := collect(env.another(t).RunEvents(ctx, "acme", env.runID, last))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describeAll(append(seen, rest...)), describeAll(env.storedEvents(t)); got != want {
		t.Fatalf("seen, then resumed:\n%s\nwant:\n%s", got, want)
	}
	if len(rest) != 6 || rest[0].Seq != 4 {
		t.Fatalf("resumed after %d with:\n%s", last, describeAll(rest))
	}

	// After the end, there is nothing more to follow.
	end := rest[len(rest)-1].Seq
	if more, err := collect(env.agent.RunEvents(ctx, "acme", env.runID, end)); err != nil || len(more) != 0 {
		t.Fatalf("after the end: %s, %v", describeAll(more), err)
	}
}

// A follower holds one connection, and gives it back when the loop stops
// early or its context ends.
func TestRunEventsHoldsOneConnection(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	w := newEventWriter(env.agent, "acme", env.runID)
	w.add(Event{Kind: EventToolCall, ToolUseID: "toolu_1", ToolName: "t"})
	if err := w.flush(ctx); err != nil { // a step would store it
		t.Fatal(err)
	}
	baseline := env.db.Stat().AcquiredConns()

	// Break.
	inLoop, proceed, done := make(chan int32), make(chan struct{}), make(chan error)
	go func() {
		for _, err := range env.agent.RunEvents(ctx, "acme", env.runID, 0) {
			if err != nil {
				done <- err
				return
			}
			inLoop <- env.db.Stat().AcquiredConns()
			<-proceed
			break
		}
		done <- nil
	}()
	if held := <-inLoop; held != baseline+1 {
		t.Errorf("a follower holds %d connections, want 1", held-baseline)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if held := env.db.Stat().AcquiredConns(); held != baseline {
		t.Errorf("%d connections held after break, want %d", held, baseline)
	}

	// Cancellation, while waiting for events.
	followCtx, cancel := context.WithCancel(ctx)
	var errs []error
	go func() {
		for e, err := range env.agent.RunEvents(followCtx, "acme", env.runID, 0) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if e.Seq == 1 {
				cancel()
			}
		}
		close(done)
	}()
	<-done
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("errors after cancellation: %v", errs)
	}
	if held := env.db.Stat().AcquiredConns(); held != baseline {
		t.Errorf("%d connections held after cancellation, want %d", held, baseline)
	}
}

// Notifications wake a follower: with the safety net's re-read an hour
// away, a follower still gets each event. Not parallel: it changes
// eventPollInterval.
func TestRunEventsWakesOnNotification(t *testing.T) {
	defer func(d time.Duration) { eventPollInterval = d }(eventPollInterval)
	eventPollInterval = time.Hour
	env := newEventsEnv(t)
	ctx := testContext(t)
	w := newEventWriter(env.agent, "acme", env.runID)
	w.add(Event{Kind: EventToolCall, ToolUseID: "toolu_1", ToolName: "t"})
	if err := w.flush(ctx); err != nil { // a step would store it
		t.Fatal(err)
	}

	var got []string
	for e, err := range env.another(t).RunEvents(ctx, "acme", env.runID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, describe(e))
		switch e.Seq {
		case 1: // written after the follower's read: only a notification tells it
			w.add(Event{Kind: EventToolResult, ToolUseID: "toolu_1", ToolName: "t", Text: "ok"})
			if err := w.flush(ctx); err != nil { // a step would store it
				t.Fatal(err)
			}
		case 2:
			if err := w.end(ctx, Event{Status: "completed"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := `1 tool_call id="toolu_1" name="t"|2 tool_result text="ok" id="toolu_1" name="t"|3 run_end status="completed"`
	if strings.Join(got, "|") != want {
		t.Fatalf("events: %s, want %s", strings.Join(got, "|"), want)
	}
}

// A writer whose run's events were ended by someone else stops writing and
// says why, once; a run of another tenant cannot be written.
func TestEventWriterStopsOnEndedRun(t *testing.T) {
	t.Parallel()
	env := newEventsEnv(t)
	ctx := testContext(t)
	first := newEventWriter(env.agent, "acme", env.runID)
	if err := first.end(ctx, Event{Status: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	second := newEventWriter(env.agent, "acme", env.runID)
	second.add(Event{Kind: EventToolCall, ToolUseID: "toolu_1"})
	if err := second.flush(ctx); !errors.Is(err, store.ErrEventsEnded) {
		t.Fatalf("flush on an ended run: %v", err)
	}
	second.add(Event{Kind: EventToolCall, ToolUseID: "toolu_2"})
	if err := second.flush(ctx); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	stranger := newEventWriter(env.agent, "globex", env.runID)
	if err := stranger.end(ctx, Event{Status: "completed"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("end as another tenant: %v", err)
	}
	if n := len(env.storedEvents(t)); n != 1 {
		t.Fatalf("%d events stored, want the first writer's end", n)
	}
}
