-- Sessions: one conversation, owned by one tenant. The lease columns give a
-- session one writer at a time: lease_token is a fencing token that grows by
-- one with every acquisition, and every write of a run is conditional on it.
CREATE TABLE {{schema}}.sessions (
    id               uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL CHECK (tenant_id <> ''),
    identifier       text        NOT NULL CHECK (identifier <> ''),
    parent_id        uuid        REFERENCES {{schema}}.sessions (id) ON DELETE SET NULL,
    depth            integer     NOT NULL DEFAULT 0,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    overrides        jsonb       NOT NULL DEFAULT '{}',
    last_seq         bigint      NOT NULL DEFAULT 0,
    lease_token      bigint      NOT NULL DEFAULT 0,
    lease_run_id     uuid,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, identifier)
);

CREATE INDEX sessions_tenant_updated_idx ON {{schema}}.sessions (tenant_id, updated_at DESC);
CREATE INDEX sessions_parent_idx ON {{schema}}.sessions (parent_id) WHERE parent_id IS NOT NULL;

-- Runs: one call of Session.Run, from the prompt to the final answer.
CREATE TABLE {{schema}}.runs (
    id                 uuid        PRIMARY KEY,
    session_id         uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id          text        NOT NULL,
    lease_token        bigint      NOT NULL,
    status             text        NOT NULL DEFAULT 'running'
                                   CHECK (status IN ('running', 'completed', 'failed')),
    model              text        NOT NULL,
    stop_reason        text,
    error              text,
    iterations         integer     NOT NULL DEFAULT 0,
    input_tokens       bigint      NOT NULL DEFAULT 0,
    output_tokens      bigint      NOT NULL DEFAULT 0,
    cache_read_tokens  bigint      NOT NULL DEFAULT 0,
    cache_write_tokens bigint      NOT NULL DEFAULT 0,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);

CREATE INDEX runs_session_idx ON {{schema}}.runs (session_id, started_at);
CREATE INDEX runs_running_idx ON {{schema}}.runs (session_id) WHERE status = 'running';

-- Messages: the conversation, in the Messages API's own content format.
-- Only messages of completed runs are sent to the model; those of failed runs
-- stay for the audit trail.
CREATE TABLE {{schema}}.messages (
    id                 uuid        PRIMARY KEY,
    session_id         uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id          text        NOT NULL,
    run_id             uuid        REFERENCES {{schema}}.runs (id) ON DELETE CASCADE,
    seq                bigint      NOT NULL,
    role               text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content            jsonb       NOT NULL CHECK (jsonb_typeof(content) = 'array' AND jsonb_array_length(content) > 0),
    usage              jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, seq)
);

CREATE INDEX messages_run_idx ON {{schema}}.messages (run_id);
