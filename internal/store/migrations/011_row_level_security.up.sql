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
-- 3. What truly spans tenants (the rescuer of stuck runs, retention, usage
--    anomalies, the lists of tenants with audit chains or limits) runs in
--    SECURITY DEFINER functions owned by the tables' owner, each of which
--    turns agentpg.cross_tenant on for its one statement; a second policy,
--    for the owner alone, accepts every row while that setting is on. The
--    application role can set agentpg.cross_tenant too, but that policy
--    does not apply to it: it crosses tenants only by calling a function,
--    and only to do what the function does.
--
-- A tenant table created after this migration joins with, in its migration:
--
--     SELECT {{schema}}.agentpg_enable_tenant_rls('{{schema}}.the_table');
--
-- (it needs a text column tenant_id), foreign keys to other tenant tables on
-- (tenant_id, ...) referencing a UNIQUE (tenant_id, id), and an entry in the
-- application role's privileges (internal/store/grant.go). A later
-- cross-tenant operation is another function like those at the end.

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
-- schema but schema_migrations, River's, and retention_policies (migration
-- 012), which holds the operator's settings (retention periods by tenant
-- id, '' for the default), no tenant's data.
SELECT {{schema}}.agentpg_enable_tenant_rls(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relnamespace = '{{schema}}'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname <> 'retention_policies';

-- The cross-tenant path: each function below does one thing across
-- tenants, with its owner's rights (SECURITY DEFINER, a fixed search_path)
-- and agentpg.cross_tenant on around its statement (set_config: a
-- function's SET clause may not name a custom setting unless a superuser
-- creates it; an error aborts the transaction or subtransaction, which
-- restores the setting). EXECUTE is revoked from PUBLIC; GrantAppRole
-- grants it to the application role (internal/store/grant.go).

-- The rescuer (store.FailStuckRuns): fails the synchronous runs that no
-- process has held for longer than grace_secs, and returns their ids.
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

-- Usage anomalies (store.UsageAnomalies, and operators: SELECT * FROM
-- agentpg.usage_anomalies(3)): migration 010's function, which sees only
-- what its caller may, runs across tenants inside this one. It returns
-- tenant ids and token counts only.
ALTER FUNCTION {{schema}}.usage_anomalies(float8) RENAME TO usage_anomalies_visible;
REVOKE ALL ON FUNCTION {{schema}}.usage_anomalies_visible(float8) FROM PUBLIC;
CREATE FUNCTION {{schema}}.usage_anomalies(p_threshold float8)
RETURNS TABLE (tenant_id text, today_tokens bigint, trailing_avg float8, ratio float8)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    RETURN QUERY SELECT * FROM {{schema}}.usage_anomalies_visible(p_threshold);
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;

-- How many tenants have limits (store.LimitedTenants, for agentpg doctor).
CREATE FUNCTION {{schema}}.limited_tenants() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n bigint;
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    SELECT count(DISTINCT tenant_id) INTO n FROM {{schema}}.tenant_limits;
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
    RETURN n;
END
$fn$;

-- The tenants with audit entries or a chain head (store.AuditTenants: the
-- chains to verify). Their ids only.
CREATE FUNCTION {{schema}}.audit_tenants() RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    RETURN QUERY SELECT tenant_id FROM {{schema}}.audit_heads UNION SELECT tenant_id FROM {{schema}}.audit_log;
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;

-- Retention (store.ApplyRetention, CountRetention): deletes at most
-- p_limit expired rows of p_kind, oldest first, skipping rows another
-- process holds, or with p_limit NULL counts them; it returns the counts
-- by tenant. The kinds: 'sessions' (roots, that no run holds or waits in:
-- nested agents' sessions go with them), 'archive' (archived messages) and
-- 'run_events' (of runs that ended), past the period of their tenant's
-- policy, or else the default's (tenant ''), in retention_policies
-- (migration 012).
CREATE FUNCTION {{schema}}.retention(p_kind text, p_limit integer) RETURNS TABLE (tenant_id text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    policy constant text := $p$JOIN {{schema}}.retention_policies p ON p.tenant_id = coalesce(
        (SELECT t.tenant_id FROM {{schema}}.retention_policies t WHERE t.tenant_id = x.tenant_id), '')$p$;
    tbl text;
    from_ text;
    where_ text;
    order_ text;
BEGIN
    CASE p_kind
    WHEN 'sessions' THEN
        tbl := 'sessions';
        from_ := '{{schema}}.sessions x ' || policy;
        where_ := $w$x.parent_id IS NULL AND x.updated_at < now() - p.sessions
            AND (x.lease_run_id IS NULL OR x.lease_expires_at <= now())
            AND NOT EXISTS (SELECT 1 FROM {{schema}}.runs r
                            WHERE r.session_id = x.id AND r.status IN ('queued', 'running', 'awaiting_approval'))$w$;
        order_ := 'x.updated_at';
    WHEN 'archive' THEN
        tbl := 'message_archive';
        from_ := '{{schema}}.message_archive x ' || policy;
        where_ := 'x.archived_at < now() - p.archive';
        order_ := 'x.archived_at';
    WHEN 'run_events' THEN
        tbl := 'run_events';
        from_ := '{{schema}}.run_events x ' || policy || $j$
            JOIN {{schema}}.runs r ON r.id = x.run_id AND r.status IN ('completed', 'failed', 'cancelled')$j$;
        where_ := 'x.created_at < now() - p.run_events';
        order_ := 'x.created_at';
    END CASE;
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    IF p_limit IS NULL THEN
        RETURN QUERY EXECUTE format('SELECT x.tenant_id, count(*) FROM %s WHERE %s GROUP BY x.tenant_id', from_, where_);
    ELSE
        RETURN QUERY EXECUTE format($q$
            WITH doomed AS (
                SELECT x.ctid AS row FROM %s
                WHERE %s
                ORDER BY %s
                LIMIT $1
                FOR UPDATE OF x SKIP LOCKED
            ), deleted AS (
                DELETE FROM {{schema}}.%I d USING doomed WHERE d.ctid = doomed.row
                RETURNING d.tenant_id
            )
            SELECT tenant_id, count(*) FROM deleted GROUP BY tenant_id$q$, from_, where_, order_, tbl) USING p_limit;
    END IF;
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;

REVOKE ALL ON FUNCTION {{schema}}.fail_stuck_runs(text, double precision), {{schema}}.usage_anomalies(float8),
    {{schema}}.limited_tenants(), {{schema}}.audit_tenants(), {{schema}}.retention(text, integer) FROM PUBLIC;
