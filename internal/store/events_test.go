package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// eventsFixture is a store on a database of the test's own with a session
// and a run holding its lease.
type eventsFixture struct {
	db    *pgxpool.Pool
	st    *store.Store
	lease store.Lease
}

func newEventsFixture(t *testing.T) *eventsFixture {
	t.Helper()
	ctx := t.Context()
	db := agentpgtest.DB(t)
	st, err := store.New(db, "")
	if err != nil {
		t.Fatal(err)
	}
	sessionID := uuid.NewString()
	if _, err := st.CreateSession(ctx, store.CreateSessionParams{ID: sessionID, TenantID: "acme", Identifier: "events"}); err != nil {
		t.Fatal(err)
	}
	begun, err := st.BeginRun(ctx, store.BeginRunParams{
		TenantID: "acme", SessionID: sessionID, RunID: uuid.NewString(), Model: "m", LeaseTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &eventsFixture{db: db, st: st, lease: begun.Lease}
}

// message is an assistant message of text, to store.
func message(text string) []store.NewMessage {
	return []store.NewMessage{{ID: uuid.NewString(), Role: "assistant",
		Content: json.RawMessage(`[{"type":"text","text":"` + text + `"}]`)}}
}

// textEvents are text delta events, one per text.
func textEvents(texts ...string) []store.NewEvent {
	events := make([]store.NewEvent, len(texts))
	for i, text := range texts {
		data, _ := json.Marshal(map[string]string{"text": text})
		events[i] = store.NewEvent{Kind: "text", Data: data}
	}
	return events
}

func runEnd() store.NewEvent {
	return store.NewEvent{Kind: store.EventRunEnd, Data: json.RawMessage(`{"status":"completed"}`)}
}

// eventTexts returns "seq:kind:text" for each event.
func eventTexts(t *testing.T, events []store.RunEvent) []string {
	t.Helper()
	out := make([]string, len(events))
	for i, e := range events {
		var d struct{ Text string }
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		out[i] = fmt.Sprintf("%d:%s:%s", e.Seq, e.Kind, d.Text)
	}
	return out
}

func TestAppendEventsNumbersConsecutively(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	run := f.lease.RunID

	last, err := f.st.AppendEvents(ctx, "acme", run, textEvents("a", "b", "c"))
	if err != nil || last != 3 {
		t.Fatalf("first append: %d, %v", last, err)
	}
	last, err = f.st.AppendEvents(ctx, "acme", run, append(textEvents("d"), runEnd()))
	if err != nil || last != 5 {
		t.Fatalf("second append: %d, %v", last, err)
	}
	all, err := f.st.ListEvents(ctx, "acme", run, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := "1:text:a 2:text:b 3:text:c 4:text:d 5:run_end:"
	if got := strings.Join(eventTexts(t, all), " "); got != want {
		t.Fatalf("events: %s, want %s", got, want)
	}
	page, err := f.st.ListEvents(ctx, "acme", run, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(eventTexts(t, page), " "); got != "3:text:c 4:text:d" {
		t.Fatalf("page after 2: %s", got)
	}

	// Nothing follows the terminal event.
	if _, err := f.st.AppendEvents(ctx, "acme", run, textEvents("late")); !errors.Is(err, store.ErrEventsEnded) {
		t.Fatalf("append after run_end: %v", err)
	}
}

func TestAppendEventsRefusesMisplacedEnd(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	events := append([]store.NewEvent{runEnd()}, textEvents("after")...)
	if _, err := f.st.AppendEvents(t.Context(), "acme", f.lease.RunID, events); err == nil {
		t.Fatal("a run_end before another event was appended")
	}
	if _, err := f.st.AppendEvents(t.Context(), "acme", f.lease.RunID, nil); err == nil {
		t.Fatal("an empty append succeeded")
	}
}

func TestEventsAreTenantScoped(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, textEvents("secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AppendEvents(ctx, "globex", f.lease.RunID, textEvents("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("append as another tenant: %v", err)
	}
	if _, err := f.st.AppendEvents(ctx, "acme", uuid.NewString(), textEvents("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("append to an unknown run: %v", err)
	}
	events, err := f.st.ListEvents(ctx, "globex", f.lease.RunID, 0, 100)
	if err != nil || len(events) != 0 {
		t.Fatalf("another tenant read %d events: %v", len(events), err)
	}
	if _, err := f.st.EndAbandonedEvents(ctx, "globex", f.lease.RunID, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("EndAbandonedEvents as another tenant: %v", err)
	}
}

// Appends racing on one run still get distinct, consecutive seqs.
func TestConcurrentEventAppendsGetDistinctSeqs(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	const writers, appends = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*appends)
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, textEvents(fmt.Sprint(w, i), "x")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	events, err := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2*writers*appends {
		t.Fatalf("%d events, want %d", len(events), 2*writers*appends)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

// listen returns a connection listening on the store's events channel.
func listen(t *testing.T, f *eventsFixture) *pgxpool.Conn {
	t.Helper()
	conn, err := f.db.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Conn().Close(context.Background()); conn.Release() })
	if _, err := conn.Exec(t.Context(), "LISTEN "+pgx.Identifier{f.st.EventsChannel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return conn
}

func waitNotification(t *testing.T, conn *pgxpool.Conn, within time.Duration) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return n.Payload, true
}

func TestAppendEventsNotifiesOnCommit(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	conn := listen(t, f)

	// Events appended in a transaction that rolls back are not announced.
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.WithDB(tx).AppendEvents(ctx, "acme", f.lease.RunID, textEvents("gone")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if payload, ok := waitNotification(t, conn, 200*time.Millisecond); ok {
		t.Fatalf("a rolled back append was announced: %s", payload)
	}

	last, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, textEvents("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	payload, ok := waitNotification(t, conn, 10*time.Second)
	if !ok {
		t.Fatal("no notification")
	}
	runID, seq, stops, ok := store.ParseEventsPayload(payload)
	if !ok || runID != f.lease.RunID || seq != last || last != 2 || stops {
		t.Fatalf("payload %q (run %s, seq %d, stops %v), want run %s seq %d", payload, runID, seq, stops, f.lease.RunID, last)
	}
}

// TestStepEventsSayWhenTheRunStops checks that a step's events announce
// the run stopping (paused for approvals, or ended) and only then: WaitRun
// reads a run only on such an announcement.
func TestStepEventsSayWhenTheRunStops(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	conn := listen(t, f)
	stops := func(what string) bool {
		t.Helper()
		payload, ok := waitNotification(t, conn, 10*time.Second)
		if !ok {
			t.Fatalf("%s: no notification", what)
		}
		runID, _, stops, ok := store.ParseEventsPayload(payload)
		if !ok || runID != f.lease.RunID {
			t.Fatalf("%s: payload %q", what, payload)
		}
		return stops
	}
	if _, err := f.st.CommitStep(ctx, f.lease, store.StepParams{Messages: message("step"), Events: textEvents("step"),
		LeaseTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if stops("a running step") {
		t.Fatal("a step the run goes on from announced that it stopped")
	}
	pending := store.ToolCall{ID: uuid.NewString(), ToolUseID: "toolu_1", Name: "pay", Input: json.RawMessage(`{}`),
		Status: store.ToolAwaitingApproval}
	if _, err := f.st.CommitStep(ctx, f.lease, store.StepParams{Messages: message("paying"), Events: textEvents("approval"),
		ToolCalls: []store.ToolCall{pending}, Status: store.RunAwaitingApproval}); err != nil {
		t.Fatal(err)
	}
	if !stops("a pause for approvals") {
		t.Fatal("a run paused for approvals did not announce that it stopped")
	}
	if _, err := f.st.CancelRun(ctx, "acme", f.lease.RunID, "test", testJob); err != nil {
		t.Fatal(err)
	}
	if !stops("a cancel") {
		t.Fatal("a cancelled run did not announce that it stopped")
	}
}

func TestEventsChannelFitsAnIdentifier(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 63)
	st, err := store.New(nil, long)
	if err != nil {
		t.Fatal(err)
	}
	if ch := st.EventsChannel(); len(ch) > 63 {
		t.Fatalf("channel %q is %d bytes", ch, len(ch))
	}
	other, _ := store.New(nil, strings.Repeat("s", 62)+"t")
	if other.EventsChannel() == st.EventsChannel() {
		t.Fatal("two schemas share a channel")
	}
	def, _ := store.New(nil, "")
	if ch := def.EventsChannel(); ch != "agentpg_events_agentpg" {
		t.Fatalf("default channel %q", ch)
	}
}

func TestEndAbandonedEvents(t *testing.T) {
	t.Parallel()

	t.Run("live run", func(t *testing.T) {
		t.Parallel()
		f := newEventsFixture(t)
		ctx := t.Context()
		ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 10*time.Second)
		if err != nil || ended {
			t.Fatalf("live run: ended %v, %v", ended, err)
		}
		if _, err := f.st.EndAbandonedEvents(ctx, "acme", uuid.NewString(), time.Second); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown run: %v", err)
		}
	})

	t.Run("ended run", func(t *testing.T) {
		t.Parallel()
		f := newEventsFixture(t)
		ctx := t.Context()
		if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, []store.NewEvent{runEnd()}); err != nil {
			t.Fatal(err)
		}
		ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 0)
		if err != nil || !ended {
			t.Fatalf("ended run: ended %v, %v", ended, err)
		}
		if events, _ := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 10); len(events) != 1 {
			t.Fatalf("%d events, want the one run_end", len(events))
		}
	})

	t.Run("finished without its end", func(t *testing.T) {
		t.Parallel()
		f := newEventsFixture(t)
		ctx := t.Context()
		if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, textEvents("partial")); err != nil {
			t.Fatal(err)
		}
		_, err := f.st.CommitStep(ctx, f.lease, store.StepParams{
			Status: store.RunCompleted, StopReason: "end_turn", Iterations: 1,
			Usage:    store.Usage{InputTokens: 10, OutputTokens: 5, CacheReadTokens: 3, CacheWriteTokens: 2},
			Messages: []store.NewMessage{{ID: uuid.NewString(), Role: "user", Content: json.RawMessage(`[{"type":"text","text":"hi"}]`)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		// Just finished: its process may be about to append the end.
		if ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, time.Minute); err != nil || ended {
			t.Fatalf("just finished: ended %v, %v", ended, err)
		}
		conn := listen(t, f)
		if ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 0); err != nil || !ended {
			t.Fatalf("past grace: ended %v, %v", ended, err)
		}
		if payload, ok := waitNotification(t, conn, 10*time.Second); !ok || payload != f.lease.RunID+":2:stop" {
			t.Fatalf("notification %q, %v", payload, ok)
		}
		events, err := f.st.ListEvents(ctx, "acme", f.lease.RunID, 1, 10)
		if err != nil || len(events) != 1 || events[0].Kind != store.EventRunEnd || events[0].Seq != 2 {
			t.Fatalf("events after 1: %+v, %v", events, err)
		}
		var data map[string]any
		if err := json.Unmarshal(events[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		want := `map[status:completed stop_reason:end_turn usage:map[cache_creation_input_tokens:2 cache_read_input_tokens:3 input_tokens:10 output_tokens:5]]`
		if got := fmt.Sprint(data); got != want {
			t.Fatalf("run_end data %s, want %s", got, want)
		}
		// Only once.
		if ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 0); err != nil || !ended {
			t.Fatalf("again: ended %v, %v", ended, err)
		}
		if events, _ := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 10); len(events) != 2 {
			t.Fatalf("%d events, want 2", len(events))
		}
	})

	t.Run("running without its lease", func(t *testing.T) {
		t.Parallel()
		f := newEventsFixture(t)
		ctx := t.Context()
		if _, err := f.db.Exec(ctx, `UPDATE agentpg.sessions SET lease_expires_at = now() - interval '1 minute'`); err != nil {
			t.Fatal(err)
		}
		if ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 2*time.Minute); err != nil || ended {
			t.Fatalf("within grace: ended %v, %v", ended, err)
		}
		if ended, err := f.st.EndAbandonedEvents(ctx, "acme", f.lease.RunID, 30*time.Second); err != nil || !ended {
			t.Fatalf("past grace: ended %v, %v", ended, err)
		}
		events, err := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 10)
		if err != nil || len(events) != 1 {
			t.Fatalf("events: %+v, %v", events, err)
		}
		var data struct{ Status, Error string }
		json.Unmarshal(events[0].Data, &data)
		if data.Status != "failed" || !strings.Contains(data.Error, "abandoned") {
			t.Fatalf("run_end %s", events[0].Data)
		}
		// The run's own late end is refused: its events already ended.
		if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, []store.NewEvent{runEnd()}); !errors.Is(err, store.ErrEventsEnded) {
			t.Fatalf("late end: %v", err)
		}
		// Its lease expired but was not taken: a late step is stored, and
		// its events are not, after the end.
		if _, err := f.st.CommitStep(ctx, f.lease, store.StepParams{Messages: message("late"), Events: textEvents("late")}); err != nil {
			t.Fatalf("late step: %v", err)
		}
		if events, err := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 10); err != nil || len(events) != 1 || events[0].Kind != store.EventRunEnd {
			t.Fatalf("events after the late step: %+v, %v", events, err)
		}
	})
}

// A run's events go with the run: deleting its session deletes them.
func TestEventsAreDeletedWithTheirRun(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	ctx := t.Context()
	if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, append(textEvents("a"), runEnd())); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.FailRun(ctx, f.lease, store.FailedRun{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeleteSession(ctx, "acme", f.lease.SessionID); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := f.db.QueryRow(ctx, `SELECT count(*) FROM agentpg.run_events`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d events left, %v", left, err)
	}
}

// TestFailRunEvents checks that a failing run's last events are stored and
// announced with its failure while it holds its lease, and only then.
func TestFailRunEvents(t *testing.T) {
	t.Parallel()
	failEnd := store.NewEvent{Kind: store.EventRunEnd, Data: json.RawMessage(`{"status":"failed"}`)}
	cases := []struct {
		name       string
		lostLease  bool
		endedFirst bool
		want       []string
		announced  bool
	}{
		{name: "holding the lease", want: []string{"1:text:a", "2:text:b", "3:run_end:"}, announced: true},
		{name: "lease lost", lostLease: true, want: []string{"1:text:a"}},
		{name: "events ended", endedFirst: true, want: []string{"1:text:a", "2:run_end:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newEventsFixture(t)
			ctx := t.Context()
			first := textEvents("a")
			if c.endedFirst {
				first = append(first, runEnd())
			}
			if _, err := f.st.AppendEvents(ctx, "acme", f.lease.RunID, first); err != nil {
				t.Fatal(err)
			}
			conn := listen(t, f)
			lease := f.lease
			if c.lostLease {
				lease.Token++ // another process took the session over
			}
			events := append(textEvents("b"), failEnd)
			if _, err := f.st.FailRun(ctx, lease, store.FailedRun{Reason: "boom", Class: "model", Events: events}); err != nil {
				t.Fatal(err)
			}
			run, err := f.st.GetRun(ctx, "acme", f.lease.RunID)
			if err != nil || run.Status != store.RunFailed {
				t.Fatalf("run = %+v, %v; want it failed, lease or not", run, err)
			}
			stored, err := f.st.ListEvents(ctx, "acme", f.lease.RunID, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if got := eventTexts(t, stored); strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("events %q, want %q", got, c.want)
			}
			within := 200 * time.Millisecond // for what must not come
			if c.announced {
				within = 10 * time.Second
			}
			payload, ok := waitNotification(t, conn, within)
			if ok != c.announced {
				t.Fatalf("announced %v (%q), want %v", ok, payload, c.announced)
			}
			if ok {
				runID, seq, stops, _ := store.ParseEventsPayload(payload)
				if runID != f.lease.RunID || seq != 3 || !stops {
					t.Fatalf("payload %q, want run %s seq 3 stopping", payload, f.lease.RunID)
				}
			}
		})
	}
}
