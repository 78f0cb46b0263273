-- A session's enqueued runs are executed by one River job at a time, run
-- after run, rather than by a job each: the jobs of one session's backlog
-- took a Worker's slots while they waited for each other's turn, and kept
-- the runs of other sessions from starting.
--
-- run_chain is how many runs were enqueued since a job became responsible
-- for the session's enqueued runs, 0 when none is. An enqueue adds 1 in
-- the statement inserting the run, and inserts a job only when it makes
-- run_chain 1. The job executes the session's runs in order; the step that
-- ends one sets run_chain back to 0, ending the job, only when nothing was
-- enqueued since the job saw that no other run was waiting (run_chain is
-- still what it read then). Both writes take the session row's lock, so a
-- run enqueued meanwhile is either seen by the job or given a job of its
-- own (see the store's EnqueueRun and ResumeRun).
ALTER TABLE {{schema}}.sessions ADD COLUMN run_chain bigint NOT NULL DEFAULT 0 CHECK (run_chain >= 0);

-- Sessions whose enqueued runs have jobs already (one a run, inserted
-- before this migration) are served by those: each goes on to the
-- session's later runs once its own has ended.
SELECT set_config('agentpg.cross_tenant', 'on', true);
UPDATE {{schema}}.sessions s SET run_chain = 1
WHERE EXISTS (SELECT 1 FROM {{schema}}.runs r
              WHERE r.session_id = s.id AND r.async AND r.status IN ('queued', 'running', 'awaiting_approval'));
SELECT set_config('agentpg.cross_tenant', 'off', true);

-- The Workers' rescuer (store.OrphanedRunChains) looks across tenants for
-- sessions whose enqueued runs no job executes: River discarded their job
-- after its last attempt, or a run's approvals were all decided and the
-- job that was to continue it was never inserted. For each it returns the
-- tenant and the session's earliest run that has not ended, once that run
-- has waited (since it was enqueued, or started) longer than grace_secs,
-- unless it waits for decisions. It reads River's jobs of kind job_kind.
CREATE FUNCTION {{schema}}.orphaned_run_chains(job_kind text, grace_secs double precision)
RETURNS TABLE (tenant_id text, run_id uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    RETURN QUERY
    SELECT h.tenant_id, h.id
    FROM (SELECT DISTINCT ON (r.session_id) r.id, r.session_id, r.tenant_id,
                 coalesce(r.started_at, r.created_at) AS since
          FROM {{schema}}.runs r
          WHERE r.async AND r.status IN ('queued', 'running', 'awaiting_approval')
          ORDER BY r.session_id, r.id) h
    WHERE h.since < now() - make_interval(secs => grace_secs)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.tool_executions t
                      WHERE t.run_id = h.id AND t.status = 'awaiting_approval')
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.river_job j
                      WHERE j.kind = job_kind AND j.args @> jsonb_build_object('session_id', h.session_id::text)
                        AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled'));
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.orphaned_run_chains(text, double precision) FROM PUBLIC;
