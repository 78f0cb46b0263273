-- Runs become a state machine that any process can resume:
--   queued -> running -> (awaiting_approval -> running)* -> completed | failed | cancelled
-- Every transition is one statement guarded by the from-state and, for a
-- running run, the session's fencing token.
ALTER TABLE {{schema}}.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE {{schema}}.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued', 'running', 'awaiting_approval', 'completed', 'failed', 'cancelled'));
ALTER TABLE {{schema}}.runs
    -- The prompt of a run not yet started (an enqueued run); it moves to
    -- messages with the run's first step.
    ADD COLUMN prompt           jsonb,
    -- Why a failed run failed, as a class callers can branch on.
    ADD COLUMN error_class      text,
    -- CancelRun asked a running run to stop at its next step boundary.
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    -- Enqueued runs are resumed by a worker when interrupted; the others
    -- by ResumeRun, or failed by the rescuer.
    ADD COLUMN async            boolean NOT NULL DEFAULT false;
ALTER TABLE {{schema}}.runs ALTER COLUMN started_at DROP NOT NULL, ALTER COLUMN started_at DROP DEFAULT;
ALTER TABLE {{schema}}.runs ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX runs_tenant_status_idx ON {{schema}}.runs (tenant_id, status, id);

-- The tool ledger records a call as started, committed before the tool
-- runs, and completes it after: a crash in between leaves the call's effect
-- known to be uncertain. A call that needs a person's approval waits as
-- awaiting_approval until decided.
ALTER TABLE {{schema}}.tool_executions
    ALTER COLUMN output DROP NOT NULL,
    ALTER COLUMN is_error DROP NOT NULL,
    ALTER COLUMN finished_at DROP NOT NULL,
    ALTER COLUMN started_at DROP NOT NULL,
    ADD COLUMN status        text NOT NULL DEFAULT 'completed'
        CHECK (status IN ('started', 'completed', 'awaiting_approval', 'approved', 'denied')),
    ADD COLUMN decision_note text,
    ADD COLUMN decided_at    timestamptz;
CREATE INDEX tool_executions_awaiting_idx ON {{schema}}.tool_executions (tenant_id, run_id) WHERE status = 'awaiting_approval';
