-- Run events: what a run streamed (text and thinking deltas, possibly
-- coalesced), its tool calls and results, approvals and, last, its end, in a
-- per-run sequence, so that any process can follow a run and a follower that
-- reconnects with the last seq it saw gets every later event exactly once.
--
-- runs.event_seq is the last seq given to an event of the run: appending
-- updates the runs row, which serializes the run's appends and makes seqs
-- consecutive. runs.events_ended is set with the run's terminal event
-- (run_end), after which nothing more is appended.
ALTER TABLE {{schema}}.runs
    ADD COLUMN event_seq    bigint  NOT NULL DEFAULT 0,
    ADD COLUMN events_ended boolean NOT NULL DEFAULT false;

-- The primary key leads with run_id: it serves the reads, by run and seq,
-- and the cascading delete of a run's events with the run.
CREATE TABLE {{schema}}.run_events (
    run_id     uuid        NOT NULL REFERENCES {{schema}}.runs (id) ON DELETE CASCADE,
    tenant_id  text        NOT NULL,
    seq        bigint      NOT NULL CHECK (seq > 0),
    kind       text        NOT NULL
                           CHECK (kind IN ('text', 'thinking', 'tool_call', 'tool_result', 'approval', 'retry', 'run_end')),
    data       jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
