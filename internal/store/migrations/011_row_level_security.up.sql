-- Row-level security: the second wall between tenants, behind the
-- tenant_id filter of every statement.
--
-- 1. Foreign keys between tenant tables include tenant_id, so that a row of
--    one tenant can never reference a row of another, whoever writes it
--    (superusers included: foreign keys bind everyone).
-- 2. Every tenant table has ENABLE and FORCE ROW LEVEL SECURITY (FORCE: its
--    owner too is subject to the policies) and a policy that shows and
--    accepts only the rows whose tenant_id is the transaction-local
--    setting agentpg.tenant_id, which the store sends with every statement
--    (internal/store/tenant.go). Without it, or set to '', no row matches.
--    Superusers and roles with BYPASSRLS are never subject to policies:
--    the application connects as a role without either (agentpg migrate
--    --app-role, agentpg doctor).
-- 3. What truly spans tenants (the rescuer of stuck runs) runs in a
--    SECURITY DEFINER function owned by the tables' owner, which turns
--    agentpg.cross_tenant on for its one statement; a second policy, for
--    the owner alone, accepts every row while that setting is on. The
--    application role can set agentpg.cross_tenant too, but that policy
--    does not apply to it: it crosses tenants only by calling the function,
--    and only to do what the function does.
--
-- A tenant table created after this migration joins with, in its migration:
--
--     SELECT {{schema}}.agentpg_enable_tenant_rls('{{schema}}.the_table');
--
-- (it needs a text column tenant_id), foreign keys to other tenant tables on
-- (tenant_id, ...) referencing a UNIQUE (tenant_id, id), and an entry in the
-- application role's privileges (internal/store/grant.go). A later
-- cross-tenant operation is another function like fail_stuck_runs.

ALTER TABLE {{schema}}.sessions ADD CONSTRAINT sessions_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE {{schema}}.runs ADD CONSTRAINT runs_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE {{schema}}.compaction_events ADD CONSTRAINT compaction_events_tenant_id_id_key UNIQUE (tenant_id, id);

ALTER TABLE {{schema}}.sessions
    DROP CONSTRAINT sessions_parent_id_fkey,
    ADD CONSTRAINT sessions_parent_id_fkey FOREIGN KEY (tenant_id, parent_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.runs
    DROP CONSTRAINT runs_session_id_fkey,
    ADD CONSTRAINT runs_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE,
    DROP CONSTRAINT runs_parent_run_id_fkey,
    -- SET NULL of the run's parent only: tenant_id stays (PostgreSQL 15).
    ADD CONSTRAINT runs_parent_run_id_fkey FOREIGN KEY (tenant_id, parent_run_id)
        REFERENCES {{schema}}.runs (tenant_id, id) ON DELETE SET NULL (parent_run_id);
ALTER TABLE {{schema}}.messages
    DROP CONSTRAINT messages_session_id_fkey,
    ADD CONSTRAINT messages_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE,
    DROP CONSTRAINT messages_run_id_fkey,
    ADD CONSTRAINT messages_run_id_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES {{schema}}.runs (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.tool_executions
    DROP CONSTRAINT tool_executions_run_id_fkey,
    ADD CONSTRAINT tool_executions_run_id_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES {{schema}}.runs (tenant_id, id) ON DELETE CASCADE,
    DROP CONSTRAINT tool_executions_session_id_fkey,
    ADD CONSTRAINT tool_executions_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.compaction_events
    DROP CONSTRAINT compaction_events_session_id_fkey,
    ADD CONSTRAINT compaction_events_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.message_archive
    DROP CONSTRAINT message_archive_compaction_id_fkey,
    ADD CONSTRAINT message_archive_compaction_id_fkey FOREIGN KEY (tenant_id, compaction_id)
        REFERENCES {{schema}}.compaction_events (tenant_id, id) ON DELETE CASCADE,
    DROP CONSTRAINT message_archive_session_id_fkey,
    ADD CONSTRAINT message_archive_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.run_events
    DROP CONSTRAINT run_events_run_id_fkey,
    ADD CONSTRAINT run_events_run_id_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES {{schema}}.runs (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE {{schema}}.session_waiters
    DROP CONSTRAINT session_waiters_session_id_fkey,
    ADD CONSTRAINT session_waiters_session_id_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES {{schema}}.sessions (tenant_id, id) ON DELETE CASCADE;

-- agentpg_enable_tenant_rls makes tbl a tenant table: row-level security
-- enabled and forced, the tenant policy, and the cross-tenant policy for
-- the table's owner (as it is now: run it again after changing owners). It
-- can be run again. It runs with its caller's rights: only the table's
-- owner may use it.
CREATE FUNCTION {{schema}}.agentpg_enable_tenant_rls(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    owner name := (SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE oid = tbl);
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS agentpg_tenant ON %s', tbl);
    EXECUTE format('DROP POLICY IF EXISTS agentpg_cross_tenant ON %s', tbl);
    EXECUTE format($p$CREATE POLICY agentpg_tenant ON %s
        USING (tenant_id = NULLIF(pg_catalog.current_setting('agentpg.tenant_id', true), ''))
        WITH CHECK (tenant_id = NULLIF(pg_catalog.current_setting('agentpg.tenant_id', true), ''))$p$, tbl);
    EXECUTE format($p$CREATE POLICY agentpg_cross_tenant ON %s TO %I
        USING (pg_catalog.current_setting('agentpg.cross_tenant', true) = 'on')$p$, tbl, owner);
END
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.agentpg_enable_tenant_rls(regclass) FROM PUBLIC;

-- The tenant tables are those with a tenant_id column: every table of the
-- schema but schema_migrations and River's.
SELECT {{schema}}.agentpg_enable_tenant_rls(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relnamespace = '{{schema}}'::regnamespace AND c.relkind IN ('r', 'p');

-- The rescuer (store.FailStuckRuns): fails the synchronous runs, of every
-- tenant, that no process has held for longer than grace_secs. It is all
-- the cross-tenant path can do, and it returns only run ids. It turns
-- agentpg.cross_tenant on around its one statement (set_config, since a
-- function's SET clause may not name a custom setting unless a superuser
-- creates it); an error aborts the statement's transaction or
-- subtransaction, which restores the setting.
CREATE FUNCTION {{schema}}.fail_stuck_runs(reason text, grace_secs double precision) RETURNS SETOF uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    RETURN QUERY
    UPDATE {{schema}}.runs r
    SET status = 'failed', error = reason, error_class = 'interrupted', finished_at = now(), prompt = NULL
    FROM {{schema}}.sessions s
    WHERE r.status = 'running' AND NOT r.async AND s.tenant_id = r.tenant_id AND s.id = r.session_id
      AND (s.lease_run_id IS DISTINCT FROM r.id OR s.lease_expires_at < now() - make_interval(secs => grace_secs))
      AND r.started_at < now() - make_interval(secs => grace_secs)
    RETURNING r.id;
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.fail_stuck_runs(text, double precision) FROM PUBLIC;
