-- Compaction: a summary of the archived start of a conversation, with the
-- user's first request kept word for word, carried on the session row; compaction_gen grows with every compaction so a process
-- holding a cached history knows to read it again.
ALTER TABLE {{schema}}.sessions
    ADD COLUMN summary          text,
    ADD COLUMN first_intent     text,
    ADD COLUMN compacted_at_seq bigint  NOT NULL DEFAULT 0,
    ADD COLUMN compaction_gen   integer NOT NULL DEFAULT 0;

-- One row per compaction: what it did and what it cost.
CREATE TABLE {{schema}}.compaction_events (
    id                 uuid        PRIMARY KEY,
    session_id         uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id          text        NOT NULL,
    strategy           text        NOT NULL CHECK (strategy IN ('prune', 'summarize', 'hybrid')),
    trigger            text        NOT NULL CHECK (trigger IN ('auto', 'manual')),
    tokens_before      integer     NOT NULL,
    tokens_after       integer     NOT NULL,
    messages_archived  integer     NOT NULL,
    messages_pruned    integer     NOT NULL,
    duration_ms        integer     NOT NULL,
    input_tokens       bigint      NOT NULL DEFAULT 0,
    output_tokens      bigint      NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX compaction_events_session_idx ON {{schema}}.compaction_events (tenant_id, session_id, created_at);

-- Messages compacted away: removed ones, and the original of pruned ones.
CREATE TABLE {{schema}}.message_archive (
    compaction_id uuid        NOT NULL REFERENCES {{schema}}.compaction_events (id) ON DELETE CASCADE,
    id            uuid        NOT NULL,
    session_id    uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id     text        NOT NULL,
    run_id        uuid,
    seq           bigint      NOT NULL,
    role          text        NOT NULL,
    content       jsonb       NOT NULL,
    usage         jsonb,
    created_at    timestamptz NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (compaction_id, id)
);

CREATE INDEX message_archive_session_idx ON {{schema}}.message_archive (tenant_id, session_id, seq);
CREATE INDEX message_archive_archived_idx ON {{schema}}.message_archive (archived_at);
