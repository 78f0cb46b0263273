package agentpg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/internal/store"
)

// The kinds of Event a run stores besides those it streams to OnEvent.
const (
	// EventRunEnd is a run's last event: Status says how it ended
	// ("completed", "failed" or "cancelled"), with StopReason, Error and
	// the run's Usage. Agent.RunEvents ends after it.
	EventRunEnd EventKind = "run_end"
)

const (
	// eventPageSize is how many events RunEvents reads at a time.
	eventPageSize = 500
	// abandonedRunGrace is how long a run may go without its terminal event
	// once finished, or without its lease once expired, before RunEvents
	// writes the terminal event for it.
	abandonedRunGrace = 10 * time.Second
	// eventFlushInterval is how often, at most, streamed deltas are
	// written while they stream.
	eventFlushInterval = 50 * time.Millisecond
	// eventWriteTimeout bounds one write of events.
	eventWriteTimeout = 5 * time.Second
	// maxEventRetryDelay is the longest an eventWriter's add waits, after
	// failed writes, before it tries to write again.
	maxEventRetryDelay = 30 * time.Second
	// maxBufferedEvents is how many unwritten events an eventWriter keeps
	// while writes fail; past that it drops them.
	maxBufferedEvents = 1000
)

// eventPollInterval is how long RunEvents waits for a notification before
// it reads again anyway (a variable for the tests).
var eventPollInterval = time.Second

// RunEvents yields the events of the tenant's run with a seq above
// afterSeq, in order, each with its Seq, and ends after the run's terminal
// EventRunEnd. It works from any process: the events are read from the
// database, where the run's process stores them as they happen (text and
// thinking deltas coalesced, so one event may carry many deltas), and
// announced with LISTEN/NOTIFY. A caller that stops, or loses its
// connection, and calls again with the Seq of the last event it saw gets
// every later event exactly once. Pass 0 to start at the run's first event;
// a run that has already ended yields its stored events and ends.
//
// An open iterator holds exactly one connection of Config.DB, listening on
// it for notifications and reading the events with it, for as long as the
// loop runs: mind the pool's size when many follow at once. Leaving the
// loop early (break) or ending ctx releases it. While the run is quiet, the
// events are read again at least every second even without a notification.
//
// A run whose process died before storing its terminal event (finished
// without it, or no longer holding its session's lease) is ended by the
// follower, after a grace period, with an EventRunEnd made of what the run's
// record says (Status "failed" for a run that never finished). The
// iteration stops with one error, after which it yields nothing more: ctx's
// error when ctx ends, ErrRunNotFound for a run the tenant does not have,
// ErrInvalidArgument for a bad tenant id or a negative afterSeq, or a
// database error.
func (a *Agent) RunEvents(ctx context.Context, tenantID, runID string, afterSeq int64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if err := a.followRun(ctx, tenantID, runID, afterSeq, yield); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			yield(Event{}, err)
		}
	}
}

// followRun yields the run's events until its end, or until yield returns
// false (nil then), or returns the error that stops it.
func (a *Agent) followRun(ctx context.Context, tenantID, runID string, after int64, yield func(Event, error) bool) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	if !validID(runID) {
		return fmt.Errorf("agentpg: %w", ErrRunNotFound)
	}
	if after < 0 {
		return fmt.Errorf("agentpg: %w: afterSeq must not be negative, got %d", ErrInvalidArgument, after)
	}
	conn, err := a.cfg.DB.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("agentpg: following run: %w", err)
	}
	defer releaseListener(conn)
	// Listen before reading: whatever commits after the read is announced.
	channel := a.store.EventsChannel()
	if err := store.Listen(ctx, conn.Conn(), channel); err != nil {
		return fmt.Errorf("agentpg: following run: %w", err)
	}
	st := a.store.WithDB(conn)
	ended, err := st.EndAbandonedEvents(ctx, tenantID, runID, abandonedRunGrace)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("agentpg: %w", ErrRunNotFound)
	}
	if err != nil {
		return fmt.Errorf("agentpg: following run: %w", err)
	}
	for {
		rows, err := st.ListEvents(ctx, tenantID, runID, after, eventPageSize)
		if err != nil {
			return fmt.Errorf("agentpg: following run: %w", err)
		}
		for _, row := range rows {
			e, err := decodeEvent(row)
			if err != nil {
				return err
			}
			if !yield(e, nil) {
				return nil
			}
			after = e.Seq
			if e.Kind == EventRunEnd {
				return nil
			}
		}
		switch {
		case len(rows) == eventPageSize:
			continue // more to read
		case ended:
			return nil // the caller had seen the end already
		}
		notified, err := waitForEvents(ctx, conn, channel, runID, after)
		if err != nil {
			return err
		}
		if !notified {
			if ended, err = st.EndAbandonedEvents(ctx, tenantID, runID, abandonedRunGrace); err != nil {
				return fmt.Errorf("agentpg: following run: %w", err)
			}
		}
	}
}

// waitForEvents waits, at most eventPollInterval, for a notification of
// events of the run after seq after, and reports whether one came.
func waitForEvents(ctx context.Context, conn *pgxpool.Conn, channel, runID string, after int64) (bool, error) {
	wait, cancel := context.WithTimeout(ctx, eventPollInterval)
	defer cancel()
	for {
		n, err := conn.Conn().WaitForNotification(wait)
		switch {
		case ctx.Err() != nil:
			return false, ctx.Err()
		case wait.Err() != nil:
			return false, nil
		case err != nil:
			return false, fmt.Errorf("agentpg: waiting for run events: %w", err)
		}
		if n.Channel != channel {
			continue
		}
		if id, seq, _, ok := store.ParseEventsPayload(n.Payload); ok && id == runID && seq > after {
			return true, nil
		}
	}
}

// releaseListener stops the connection's listening and gives it back to
// the pool, or closes it if it cannot be trusted with another user.
func releaseListener(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	defer cancel()
	if err := store.Unlisten(ctx, conn.Conn()); err != nil {
		conn.Conn().Close(ctx) // the pool drops a closed connection
	}
	conn.Release()
}

// eventData is how an Event is stored, Kind and Seq aside, in run_events'
// data column. EndAbandonedEvents writes the keys of a run_end itself.
type eventData struct {
	Text      string          `json:"text,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	ToolName  string          `json:"tool_name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	// InputText is a tool input that is not valid JSON, as the model sent
	// it.
	InputText  *string `json:"input_text,omitempty"`
	IsError    bool    `json:"is_error,omitempty"`
	Status     string  `json:"status,omitempty"`
	StopReason string  `json:"stop_reason,omitempty"`
	Error      string  `json:"error,omitempty"`
	Usage      *Usage  `json:"usage,omitempty"`
}

// knownEventKinds are the kinds run_events accepts.
var knownEventKinds = map[EventKind]bool{
	EventText: true, EventThinking: true, EventToolCall: true, EventToolResult: true,
	EventApproval: true, EventRetry: true, EventRunEnd: true,
}

// encodeEvent returns e as a row to append, its texts made storable.
func encodeEvent(e Event) (store.NewEvent, error) {
	if !knownEventKinds[e.Kind] {
		return store.NewEvent{}, fmt.Errorf("agentpg: unknown event kind %q", e.Kind)
	}
	d := eventData{IsError: e.IsError}
	d.Text, _ = storableText(e.Text)
	d.ToolUseID, _ = storableText(e.ToolUseID)
	d.ToolName, _ = storableText(e.ToolName)
	d.Status, _ = storableText(e.Status)
	d.StopReason, _ = storableText(e.StopReason)
	d.Error, _ = storableText(e.Error)
	if len(e.Input) > 0 {
		if json.Valid(e.Input) {
			d.Input, _ = storableJSON(bytes.Clone(e.Input))
		} else {
			text, _ := storableText(string(e.Input))
			d.InputText = &text
		}
	}
	if e.Usage != (Usage{}) {
		d.Usage = &e.Usage
	}
	data, err := json.Marshal(d)
	if err != nil {
		return store.NewEvent{}, fmt.Errorf("agentpg: encoding a %s event: %w", e.Kind, err)
	}
	return store.NewEvent{Kind: string(e.Kind), Data: data}, nil
}

// decodeEvent returns the Event a stored row holds.
func decodeEvent(row store.RunEvent) (Event, error) {
	var d eventData
	if err := json.Unmarshal(row.Data, &d); err != nil {
		return Event{}, fmt.Errorf("agentpg: run event %d: %w", row.Seq, err)
	}
	e := Event{
		Kind: EventKind(row.Kind), Seq: row.Seq,
		Text: d.Text, ToolUseID: d.ToolUseID, ToolName: d.ToolName, Input: d.Input, IsError: d.IsError,
		Status: d.Status, StopReason: d.StopReason, Error: d.Error,
	}
	if len(d.Input) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, d.Input); err == nil { // jsonb spaces its output
			e.Input = compact.Bytes()
		}
	}
	if d.InputText != nil {
		e.Input = json.RawMessage(*d.InputText)
	}
	if d.Usage != nil {
		e.Usage = *d.Usage
	}
	return e, nil
}

// isDelta reports whether events of kind are streamed deltas, which an
// eventWriter coalesces.
func isDelta(kind EventKind) bool { return kind == EventText || kind == EventThinking }

// eventWriter stores a run's events in run_events, for Agent.RunEvents.
// Deltas of text or thinking that follow each other are coalesced into one
// event. The run loop takes the buffered events with each step it commits
// (take), so that they cost no round trip of their own, and the run's end
// with its last step or its failure; deltas streaming for longer than
// eventFlushInterval are written on their own meanwhile, each write one
// statement bounded by eventWriteTimeout. A failed write keeps its events
// for the next one (up to maxBufferedEvents) and is reported, never retried
// in a loop, so storing events never holds a run up for long. A run whose
// end is never stored is ended by its followers after a grace period.
//
// A writer is meant for the run's goroutine; it is safe for concurrent use
// nonetheless.
type eventWriter struct {
	store    *store.Store
	tenantID string
	runID    string

	mu       sync.Mutex
	buf      []Event   // not yet written
	since    time.Time // when the oldest of buf was added
	lastTry  time.Time // of the last write
	failures int       // writes failed in a row
	err      error     // of a write add made, for the next flush or end
	done     bool      // the run's events ended, or can no longer be written
}

// newEventWriter returns a writer for the tenant's run.
func newEventWriter(a *Agent, tenantID, runID string) *eventWriter {
	return &eventWriter{store: a.store, tenantID: tenantID, runID: runID}
}

// add buffers e, coalescing it with the previous event when both are
// deltas of one kind. The buffer goes with the run's next step (take), in
// the step's own round trip; only deltas that stream for longer than
// eventFlushInterval are written on their own, so that followers see a
// long answer as it comes. After failed writes, add waits longer and
// longer before it tries again. A write's error is returned by the next
// take, flush or end. Events added after the end are ignored, and so is an
// EventRunEnd, which goes through take or end.
func (w *eventWriter) add(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if e.Kind == EventRunEnd || !knownEventKinds[e.Kind] {
		w.err = errors.Join(w.err, fmt.Errorf("agentpg: event kind %q cannot be added to a run's events", e.Kind))
		return
	}
	now := time.Now()
	if len(w.buf) == 0 {
		w.since = now
	}
	if n := len(w.buf); n > 0 && isDelta(e.Kind) && w.buf[n-1].Kind == e.Kind {
		w.buf[n-1].Text += e.Text
	} else {
		e.Seq = 0
		w.buf = append(w.buf, e)
	}
	if w.due(e.Kind, now) {
		if err := w.write(context.Background(), nil); err != nil {
			w.err = err // the latest says enough
		}
	}
}

// due reports whether add should write now, after an event of kind: only
// deltas streaming for longer than eventFlushInterval are written on their
// own; every other event goes with the run's next step (take).
func (w *eventWriter) due(kind EventKind, now time.Time) bool {
	if !isDelta(kind) {
		return false
	}
	if w.failures > 0 {
		delay := min(time.Second<<min(w.failures-1, 5), maxEventRetryDelay)
		return now.Sub(w.lastTry) >= delay
	}
	return now.Sub(w.since) >= eventFlushInterval
}

// take returns the buffered events, and end (its Kind set to EventRunEnd)
// if not nil, encoded for the run's next step to store, and forgets them;
// after an end it takes nothing more. It returns the error of a write add
// made since, too.
func (w *eventWriter) take(end *Event) ([]store.NewEvent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	w.err = nil
	if w.done {
		return nil, err
	}
	rows := make([]store.NewEvent, 0, len(w.buf)+1)
	for _, e := range w.buf {
		row, encodeErr := encodeEvent(e)
		if encodeErr != nil {
			err = errors.Join(err, encodeErr)
			continue
		}
		rows = append(rows, row)
	}
	w.buf = w.buf[:0]
	if end != nil {
		e := *end
		e.Kind, e.Seq = EventRunEnd, 0
		row, encodeErr := encodeEvent(e)
		if encodeErr != nil {
			return rows, errors.Join(err, encodeErr)
		}
		rows = append(rows, row)
		w.done = true
	}
	return rows, err
}

// flush writes the buffered events, if any, in one statement, and returns
// its error, or that of a write add made since the last flush. It
// outlives ctx's cancellation, within eventWriteTimeout.
func (w *eventWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	w.err = nil
	if w.done {
		return err
	}
	return errors.Join(err, w.write(ctx, nil))
}

// end writes the buffered events and e, the run's terminal event (its Kind
// is set to EventRunEnd), in one statement, after which the writer writes
// nothing more. It returns the write's error, with that of a write add
// made since the last flush; a failed end may be called again. It outlives
// ctx's cancellation, within eventWriteTimeout, so that a cancelled run's
// end is stored.
func (w *eventWriter) end(ctx context.Context, e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	w.err = nil
	if w.done {
		return err
	}
	e.Kind, e.Seq = EventRunEnd, 0
	return errors.Join(err, w.write(ctx, &e))
}

// write appends the buffer, and end if not nil, in one statement; with
// nothing to write it does nothing. Called with w.mu held.
func (w *eventWriter) write(ctx context.Context, end *Event) error {
	rows := make([]store.NewEvent, 0, len(w.buf)+1)
	kept := w.buf[:0]
	var encodeErr error
	for _, e := range w.buf {
		row, err := encodeEvent(e)
		if err != nil {
			encodeErr = errors.Join(encodeErr, err) // it never will encode: drop it
			continue
		}
		kept, rows = append(kept, e), append(rows, row)
	}
	w.buf = kept
	if end != nil {
		row, err := encodeEvent(*end)
		if err != nil {
			return errors.Join(encodeErr, err)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return encodeErr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventWriteTimeout)
	defer cancel()
	_, err := w.store.AppendEvents(ctx, w.tenantID, w.runID, rows)
	w.lastTry = time.Now()
	switch {
	case err == nil:
		w.buf, w.failures = w.buf[:0], 0
		w.done = end != nil
		return encodeErr
	case errors.Is(err, store.ErrEventsEnded), errors.Is(err, store.ErrNotFound):
		w.buf, w.done = nil, true
		return errors.Join(encodeErr, fmt.Errorf("agentpg: storing the events of run %s: %w", w.runID, err))
	}
	w.failures++
	err = fmt.Errorf("agentpg: storing the events of run %s: %w", w.runID, err)
	if len(w.buf) > maxBufferedEvents {
		err = errors.Join(err, fmt.Errorf("agentpg: dropped %d unstored events of run %s", len(w.buf), w.runID))
		w.buf = nil
	}
	return errors.Join(encodeErr, err)
}
