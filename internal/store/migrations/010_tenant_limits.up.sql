-- Per-tenant limits on model calls (Agent.SetTenantLimits), and the
-- counters they are checked against. A model call is admitted by
-- admit_model_call, run in the statement batch that precedes the call (the
-- batch that begins or resumes the run, or the one storing the tool step
-- before the next call): a refusal raises SQLSTATE AGL01, rolling the
-- whole batch back.
CREATE TABLE {{schema}}.tenant_limits (
    tenant_id           text        NOT NULL CHECK (tenant_id <> ''),
    -- What the row limits: 'tenant', the tenant's calls altogether, or
    -- 'session', each session of the tenant on its own. More scopes may
    -- come.
    scope               text        NOT NULL CHECK (scope IN ('tenant', 'session')),
    -- 0: no such limit. A row with neither is deleted instead.
    requests_per_minute integer     NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    tokens_per_day      bigint      NOT NULL DEFAULT 0 CHECK (tokens_per_day >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, scope),
    CHECK (requests_per_minute > 0 OR tokens_per_day > 0)
);

-- The model calls admitted in the last minute, one row each, for tenants
-- with a requests-per-minute limit: a sliding window, so that no minute,
-- wherever it starts, admits more than the limit. Older rows are deleted
-- as calls are admitted.
CREATE TABLE {{schema}}.model_requests (
    tenant_id   text        NOT NULL,
    session_id  uuid        NOT NULL,
    admitted_at timestamptz NOT NULL
);
CREATE INDEX model_requests_tenant_idx ON {{schema}}.model_requests (tenant_id, admitted_at);
CREATE INDEX model_requests_session_idx ON {{schema}}.model_requests (session_id, admitted_at);
-- How many rows of model_requests each tenant has, kept with them, so that
-- admitting a call under the limit reads no more than this row.
CREATE TABLE {{schema}}.model_request_counts (
    tenant_id text    PRIMARY KEY,
    admitted  integer NOT NULL CHECK (admitted >= 0)
);

-- Usage per tenant, UTC day and model: model calls (compaction summaries
-- included) and their tokens as the API counted them, added by the same
-- batches that store a run's usage.
CREATE TABLE {{schema}}.tenant_usage (
    tenant_id          text   NOT NULL,
    day                date   NOT NULL,
    model              text   NOT NULL,
    requests           bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, model)
);
CREATE INDEX tenant_usage_day_idx ON {{schema}}.tenant_usage (day);

-- A session's input and output tokens of one UTC day, for per-session
-- budgets.
ALTER TABLE {{schema}}.sessions
    ADD COLUMN usage_day        date,
    ADD COLUMN usage_day_tokens bigint NOT NULL DEFAULT 0;

-- limit_exceeded refuses a model call: SQLSTATE AGL01, with the scope, the
-- limit, its value and when to retry (milliseconds) as JSON in DETAIL.
CREATE FUNCTION {{schema}}.limit_exceeded(p_scope text, p_limit text, p_max bigint, p_retry interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'AGL01', MESSAGE = 'tenant limit exceeded',
        DETAIL = json_build_object('scope', p_scope, 'limit', p_limit, 'max', p_max,
            'retry_after_ms', greatest(ceil(extract(epoch FROM p_retry) * 1000), 1))::text;
END
$$;

-- admit_model_call admits one model call of the tenant's session, or
-- refuses it with limit_exceeded. Without limits it reads one index entry.
-- Token budgets count input and output tokens of the current UTC day; with
-- a requests-per-minute limit, the tenant's admissions take turns on its
-- limit rows, so that processes never admit more than the limit together.
CREATE FUNCTION {{schema}}.admit_model_call(p_tenant text, p_session uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t_rpm integer;
    t_tpd bigint;
    s_rpm integer;
    s_tpd bigint;
    today date := (now() AT TIME ZONE 'UTC')::date;
    to_midnight interval := ((now() AT TIME ZONE 'UTC')::date + 1) - (now() AT TIME ZONE 'UTC');
    at_ timestamptz;
    used bigint;
    nth timestamptz;
    expired integer;
    in_window integer;
BEGIN
    SELECT coalesce(max(requests_per_minute) FILTER (WHERE scope = 'tenant'), 0),
           coalesce(max(tokens_per_day) FILTER (WHERE scope = 'tenant'), 0),
           coalesce(max(requests_per_minute) FILTER (WHERE scope = 'session'), 0),
           coalesce(max(tokens_per_day) FILTER (WHERE scope = 'session'), 0)
    INTO t_rpm, t_tpd, s_rpm, s_tpd
    FROM {{schema}}.tenant_limits WHERE tenant_id = p_tenant;
    IF t_rpm = 0 AND t_tpd = 0 AND s_rpm = 0 AND s_tpd = 0 THEN
        RETURN;
    END IF;

    IF t_tpd > 0 THEN
        SELECT coalesce(sum(input_tokens + output_tokens), 0) INTO used
        FROM {{schema}}.tenant_usage WHERE tenant_id = p_tenant AND day = today;
        IF used >= t_tpd THEN
            PERFORM {{schema}}.limit_exceeded('tenant', 'tokens_per_day', t_tpd, to_midnight);
        END IF;
    END IF;
    IF s_tpd > 0 THEN
        SELECT CASE WHEN usage_day = today THEN usage_day_tokens ELSE 0 END INTO used
        FROM {{schema}}.sessions WHERE id = p_session;
        IF coalesce(used, 0) >= s_tpd THEN
            PERFORM {{schema}}.limit_exceeded('session', 'tokens_per_day', s_tpd, to_midnight);
        END IF;
    END IF;
    IF t_rpm = 0 AND s_rpm = 0 THEN
        RETURN;
    END IF;

    -- Admissions of the tenant take turns on its limit rows, locked in
    -- scope order as SetLimits locks them.
    PERFORM 1 FROM {{schema}}.tenant_limits WHERE tenant_id = p_tenant ORDER BY scope FOR UPDATE;
    -- Read after the lock, so that admissions taking turns are in clock
    -- order.
    at_ := clock_timestamp();
    DELETE FROM {{schema}}.model_requests WHERE tenant_id = p_tenant AND admitted_at <= at_ - interval '1 minute';
    GET DIAGNOSTICS expired = ROW_COUNT;
    SELECT coalesce(max(admitted), 0) - expired INTO in_window FROM {{schema}}.model_request_counts WHERE tenant_id = p_tenant;
    IF t_rpm > 0 AND in_window >= t_rpm THEN
        -- Room comes when the calls that fill the window leave it: the
        -- oldest, or more when the limit was lowered.
        SELECT admitted_at INTO nth FROM {{schema}}.model_requests
        WHERE tenant_id = p_tenant ORDER BY admitted_at OFFSET in_window - t_rpm LIMIT 1;
        PERFORM {{schema}}.limit_exceeded('tenant', 'requests_per_minute', t_rpm, nth + interval '1 minute' - at_);
    END IF;
    IF s_rpm > 0 THEN
        SELECT admitted_at INTO nth FROM {{schema}}.model_requests
        WHERE session_id = p_session AND admitted_at > at_ - interval '1 minute'
        ORDER BY admitted_at DESC OFFSET s_rpm - 1 LIMIT 1;
        IF FOUND THEN
            PERFORM {{schema}}.limit_exceeded('session', 'requests_per_minute', s_rpm, nth + interval '1 minute' - at_);
        END IF;
    END IF;
    INSERT INTO {{schema}}.model_requests (tenant_id, session_id, admitted_at) VALUES (p_tenant, p_session, at_);
    INSERT INTO {{schema}}.model_request_counts (tenant_id, admitted) VALUES (p_tenant, in_window + 1)
    ON CONFLICT (tenant_id) DO UPDATE SET admitted = EXCLUDED.admitted;
END
$$;

-- usage_anomalies lists the tenants whose input and output tokens of the
-- current UTC day exceed p_threshold times their daily average over the
-- seven days before (days without usage count as zero). A tenant without
-- usage in those days has no baseline and is not listed. For operators:
--   SELECT * FROM agentpg.usage_anomalies(3);
CREATE FUNCTION {{schema}}.usage_anomalies(p_threshold float8)
RETURNS TABLE (tenant_id text, today_tokens bigint, trailing_avg float8, ratio float8)
LANGUAGE sql STABLE AS $$
    WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS d),
    per_tenant AS (
        SELECT u.tenant_id,
               sum(u.input_tokens + u.output_tokens) FILTER (WHERE u.day = t.d)::bigint AS today_tokens,
               sum(u.input_tokens + u.output_tokens) FILTER (WHERE u.day < t.d)::float8 / 7 AS trailing_avg
        FROM {{schema}}.tenant_usage u, today t
        WHERE u.day BETWEEN t.d - 7 AND t.d
        GROUP BY u.tenant_id
    )
    SELECT tenant_id, today_tokens, trailing_avg, today_tokens / trailing_avg
    FROM per_tenant
    WHERE trailing_avg > 0 AND today_tokens > p_threshold * trailing_avg
    ORDER BY today_tokens / trailing_avg DESC, tenant_id
$$;
