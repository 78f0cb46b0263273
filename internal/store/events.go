package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventRunEnd is the kind of a run's terminal event: once it is appended,
// the run takes no more events.
const EventRunEnd = "run_end"

// ErrEventsEnded: the run's terminal event is already stored, so no event
// may follow it.
var ErrEventsEnded = errors.New("run events already ended")

// NewEvent is an event to append to a run.
type NewEvent struct {
	Kind string
	Data json.RawMessage // a JSON object
}

// RunEvent is a row of the run_events table.
type RunEvent struct {
	Seq       int64
	Kind      string
	Data      json.RawMessage
	CreatedAt time.Time
}

// EventsChannel is the channel on which appended events are announced with
// NOTIFY, one channel per schema. Each payload is "<run id>:<last seq>",
// the last seq of the run once the announced events are stored, followed
// by ":stop" when they stop the run: end its events, or pause it for
// approvals (see ParseEventsPayload).
func (s *Store) EventsChannel() string {
	const prefix = "agentpg_events_"
	if len(prefix)+len(s.schema) <= 63 { // longer identifiers are cut, and pg_notify refuses them
		return prefix + s.schema
	}
	h := fnv.New64a()
	h.Write([]byte(s.schema))
	return prefix + strconv.FormatUint(h.Sum64(), 16)
}

// ParseEventsPayload splits a notification payload of EventsChannel into
// the run id, the run's last seq, and whether the events stop the run (end
// its events, or pause it for approvals): what waits for a run's end need
// read it only then.
func ParseEventsPayload(payload string) (runID string, lastSeq int64, stops, ok bool) {
	payload, stops = strings.CutSuffix(payload, ":stop")
	runID, seq, ok := strings.Cut(payload, ":")
	if !ok {
		return "", 0, false, false
	}
	lastSeq, err := strconv.ParseInt(seq, 10, 64)
	return runID, lastSeq, stops, err == nil
}

const appendEventsSQL = `
WITH r AS (
    UPDATE {{schema}}.runs
    SET event_seq = event_seq + cardinality($3::text[]),
        events_ended = $5
    WHERE tenant_id = $1 AND id = $2 AND NOT events_ended
    RETURNING id, tenant_id, event_seq
), ev AS (
    INSERT INTO {{schema}}.run_events (run_id, tenant_id, seq, kind, data, key_version)
    SELECT r.id, r.tenant_id, r.event_seq - cardinality($3::text[]) + e.n, e.kind, e.data, $7
    FROM r, unnest($3::text[], $4::jsonb[]) WITH ORDINALITY AS e(kind, data, n)
)
SELECT event_seq, pg_notify($6, $2::text || ':' || event_seq || CASE WHEN $5 THEN ':stop' ELSE '' END)::text FROM r`

// eventArrays are a run's events, sealed, column by column.
type eventArrays struct {
	kinds []string
	data  []json.RawMessage
}

// ends reports whether the events end the run's: their last is its
// EventRunEnd.
func (e eventArrays) ends() bool {
	return len(e.kinds) > 0 && e.kinds[len(e.kinds)-1] == EventRunEnd
}

// eventColumns seals the run's events and lays them out column by column.
func (w *sealer) eventColumns(runID string, events []NewEvent) (eventArrays, error) {
	e := eventArrays{kinds: make([]string, len(events)), data: make([]json.RawMessage, len(events))}
	for i, ev := range events {
		if ev.Kind == EventRunEnd && i != len(events)-1 {
			return eventArrays{}, fmt.Errorf("a %s event must come last", EventRunEnd)
		}
		e.kinds[i] = ev.Kind
		var err error
		if e.data[i], err = w.json(eventData(runID, ev.Kind), ev.Data); err != nil {
			return eventArrays{}, err
		}
	}
	return e, nil
}

const runEventsEndedSQL = `SELECT events_ended FROM {{schema}}.runs WHERE tenant_id = $1 AND id = $2`

// AppendEvents appends events to the tenant's run with the seqs that follow
// the run's last, and announces them on EventsChannel, in one statement:
// the notification is delivered when, and only if, the events commit. It
// returns the seq of the last event. Appends to one run are serialized by
// its row, so concurrent ones never share a seq. An event of kind
// EventRunEnd may only come last: it ends the run's events, and any later
// append is ErrEventsEnded. An unknown run is ErrNotFound.
func (s *Store) AppendEvents(ctx context.Context, tenantID, runID string, events []NewEvent) (int64, error) {
	if len(events) == 0 {
		return 0, errors.New("no events to append")
	}
	w, err := s.sealer(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	ev, err := w.eventColumns(runID, events)
	if err != nil {
		return 0, err
	}
	var lastSeq int64
	var notified string
	err = s.as(tenantID).QueryRow(ctx, s.q(appendEventsSQL), tenantID, runID, ev.kinds, ev.data, ev.ends(), s.EventsChannel(), w.version()).
		Scan(&lastSeq, &notified)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, s.whyNoEvents(ctx, tenantID, runID)
	}
	if err != nil {
		return 0, fmt.Errorf("appending run events: %w", err)
	}
	return lastSeq, nil
}

// whyNoEvents explains an append that found no run to append to.
func (s *Store) whyNoEvents(ctx context.Context, tenantID, runID string) error {
	var ended bool
	err := s.as(tenantID).QueryRow(ctx, s.q(runEventsEndedSQL), tenantID, runID).Scan(&ended)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("appending run events: %w", err)
	case ended:
		return ErrEventsEnded
	}
	return errors.New("appending run events: the run changed meanwhile") // not reached: appends are serialized
}

const listEventsSQL = `
SELECT seq, kind, data, created_at, key_version
FROM {{schema}}.run_events
WHERE run_id = $2 AND tenant_id = $1 AND seq > $3
ORDER BY seq
LIMIT $4`

// ListEvents returns up to limit events of the tenant's run with a seq
// above afterSeq, in order. A run with no such events, or none of the
// tenant's, returns none: see EndAbandonedEvents to tell them apart.
func (s *Store) ListEvents(ctx context.Context, tenantID, runID string, afterSeq int64, limit int) ([]RunEvent, error) {
	type sealedEvent struct {
		RunEvent
		keyVersion *int
	}
	sealed, err := queryAll(ctx, s.as(tenantID), "run events", s.q(listEventsSQL), func(row pgx.CollectableRow) (sealedEvent, error) {
		var e sealedEvent
		err := row.Scan(&e.Seq, &e.Kind, &e.Data, &e.CreatedAt, &e.keyVersion)
		return e, err
	}, tenantID, runID, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	o := s.opener(ctx, tenantID)
	events := make([]RunEvent, len(sealed))
	for i, e := range sealed {
		if e.Data, err = o.json(e.keyVersion, eventData(runID, e.Kind), e.Data); err != nil {
			return nil, err
		}
		events[i] = e.RunEvent
	}
	return events, nil
}

// endAbandonedEventsSQL appends, in the name of a run whose events will not
// end otherwise, its terminal event. A run is abandoned when it finished
// more than $3 seconds ago without its terminal event (its process died
// between the two, or predates run events), or when it is still marked
// running but has not held its session's lease for $3 seconds past the
// lease's expiry (its process died). The event's data is what the runs row
// knows, in the keys the agentpg package writes: status, stop_reason, error
// and usage.
const endAbandonedEventsSQL = `
WITH r AS (
    SELECT r.id, r.events_ended,
           NOT r.events_ended AND CASE
               WHEN r.status = 'running' THEN NOT EXISTS (
                   SELECT 1 FROM {{schema}}.sessions s
                   WHERE s.id = r.session_id AND s.lease_run_id = r.id
                     AND s.lease_expires_at > now() - make_interval(secs => $3))
               ELSE r.finished_at < now() - make_interval(secs => $3)
           END AS abandoned
    FROM {{schema}}.runs r
    WHERE r.tenant_id = $1 AND r.id = $2
), sealed AS (
    UPDATE {{schema}}.runs u
    SET event_seq = u.event_seq + 1, events_ended = true
    FROM r
    WHERE u.id = r.id AND r.abandoned AND NOT u.events_ended
    RETURNING u.id, u.tenant_id, u.event_seq, u.status, u.stop_reason, u.error,
              u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens
), ev AS (
    INSERT INTO {{schema}}.run_events (run_id, tenant_id, seq, kind, data)
    SELECT id, tenant_id, event_seq, 'run_end', jsonb_strip_nulls(jsonb_build_object(
        'status', CASE WHEN status = 'running' THEN 'failed' ELSE status END,
        'stop_reason', stop_reason,
        'error', CASE WHEN status = 'running' THEN 'abandoned: its lease expired' ELSE error END,
        'usage', jsonb_build_object(
            'input_tokens', input_tokens,
            'output_tokens', output_tokens,
            'cache_read_input_tokens', cache_read_tokens,
            'cache_creation_input_tokens', cache_write_tokens)))
    FROM sealed
)
SELECT r.events_ended OR EXISTS (SELECT 1 FROM sealed),
       (SELECT pg_notify($4, id::text || ':' || event_seq || ':stop')::text FROM sealed)
FROM r`

// EndAbandonedEvents reports whether the tenant's run has ended its
// events, after ending them itself, with a terminal event made of what the
// runs row knows, should the run be abandoned: finished for longer than
// grace without its terminal event, or still running without its lease for
// longer than grace past the lease's expiry. The terminal event is
// announced as AppendEvents does. An unknown run is ErrNotFound.
func (s *Store) EndAbandonedEvents(ctx context.Context, tenantID, runID string, grace time.Duration) (ended bool, err error) {
	var notified *string
	err = s.as(tenantID).QueryRow(ctx, s.q(endAbandonedEventsSQL), tenantID, runID, grace.Seconds(), s.EventsChannel()).
		Scan(&ended, &notified)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("checking run events: %w", err)
	}
	return ended, nil
}
