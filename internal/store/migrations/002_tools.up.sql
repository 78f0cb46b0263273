-- The tool ledger: one row per tool call, keyed by run and tool_use id,
-- written in the same statement as the tool_result message that answers it.
CREATE TABLE {{schema}}.tool_executions (
    id          uuid        PRIMARY KEY,
    run_id      uuid        NOT NULL REFERENCES {{schema}}.runs (id) ON DELETE CASCADE,
    session_id  uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id   text        NOT NULL,
    tool_use_id text        NOT NULL,
    name        text        NOT NULL,
    input       jsonb       NOT NULL,
    output      text        NOT NULL,
    is_error    boolean     NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    UNIQUE (run_id, tool_use_id)
);

CREATE INDEX tool_executions_session_idx ON {{schema}}.tool_executions (tenant_id, session_id, started_at);

-- A run of a nested agent points at the run that called it, so its usage
-- can be attributed.
ALTER TABLE {{schema}}.runs ADD COLUMN parent_run_id uuid REFERENCES {{schema}}.runs (id) ON DELETE SET NULL;
CREATE INDEX runs_parent_idx ON {{schema}}.runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
