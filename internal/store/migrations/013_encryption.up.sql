-- Encryption at rest (docs/encryption.md). With Config.Keys set, content is
-- sealed in Go (AES-256-GCM, internal/envelope) before it reaches a
-- statement and opened after it is read; PostgreSQL sees ciphertext only.
--
-- data_keys holds each tenant's data keys, wrapped by a key-encryption key
-- that never enters the database. Versions count up from 1 per tenant and
-- are never reused; the highest is the one new values are sealed with.
-- Older versions stay until the tenant is erased: a process that has not
-- yet seen a rotation may still seal with one, and the value stays readable.
CREATE TABLE {{schema}}.data_keys (
    tenant_id  text        NOT NULL CHECK (tenant_id <> ''),
    version    integer     NOT NULL CHECK (version > 0),
    kek_id     text        NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- When every row was re-encrypted onto this version; NULL while a
    -- rotation onto it runs (RotateKeys resumes it).
    rotated_at timestamptz,
    PRIMARY KEY (tenant_id, version)
);
SELECT {{schema}}.agentpg_enable_tenant_rls('{{schema}}.data_keys');

-- A sealed value is stored in the column of its plaintext, base64 in a text
-- column and a JSON string of base64 in a jsonb one, so that every
-- statement has one shape whether encryption is on or off. A *key_version
-- column says which: NULL for plaintext, else the version of the tenant's
-- data key that sealed the row's values. Values written at different times
-- have versions of their own (a session's metadata and its summary; a tool
-- call and the decision on it). No foreign key ties a version to data_keys:
-- a key is deleted only with its tenant's rows (EraseTenant), and one would
-- cost every insert a lookup and every table an index.
ALTER TABLE {{schema}}.sessions
    ADD COLUMN key_version         integer, -- metadata, overrides
    ADD COLUMN summary_key_version integer; -- summary, first_intent

ALTER TABLE {{schema}}.runs
    ADD COLUMN key_version integer; -- prompt

ALTER TABLE {{schema}}.messages
    ADD COLUMN key_version integer, -- content
    DROP CONSTRAINT messages_content_check,
    ADD CONSTRAINT messages_content_check CHECK (CASE WHEN key_version IS NULL
        THEN jsonb_typeof(content) = 'array' AND jsonb_array_length(content) > 0
        ELSE jsonb_typeof(content) = 'string' END);

ALTER TABLE {{schema}}.message_archive
    ADD COLUMN key_version integer; -- content

ALTER TABLE {{schema}}.tool_executions
    ADD COLUMN key_version      integer, -- input, output
    ADD COLUMN note_key_version integer; -- decision_note

ALTER TABLE {{schema}}.run_events
    ADD COLUMN key_version integer, -- data
    DROP CONSTRAINT run_events_data_check,
    ADD CONSTRAINT run_events_data_check CHECK (jsonb_typeof(data) = CASE WHEN key_version IS NULL THEN 'object' ELSE 'string' END);

-- The tenants whose keys `agentpg keys rotate --all` and `keys status`
-- visit: those with a data key or a session. Their ids only.
CREATE FUNCTION {{schema}}.key_tenants() RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    RETURN QUERY SELECT tenant_id FROM {{schema}}.data_keys UNION SELECT tenant_id FROM {{schema}}.sessions ORDER BY 1;
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.key_tenants() FROM PUBLIC;

-- For agentpg doctor: how many tenants have data keys, when the oldest of
-- their newest keys was made (key age), how many rotations have not
-- finished, and how many tenants have sessions but no data key (their
-- content is not encrypted). Counts and a time only.
CREATE FUNCTION {{schema}}.key_summary(OUT tenants bigint, OUT oldest_current timestamptz, OUT unfinished bigint,
                                       OUT unencrypted_tenants bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('agentpg.cross_tenant', 'on', true);
    SELECT count(*), min(created_at), count(*) FILTER (WHERE rotated_at IS NULL)
    INTO tenants, oldest_current, unfinished
    FROM (SELECT DISTINCT ON (tenant_id) tenant_id, created_at, rotated_at
          FROM {{schema}}.data_keys ORDER BY tenant_id, version DESC) AS newest;
    SELECT count(DISTINCT s.tenant_id) INTO unencrypted_tenants
    FROM {{schema}}.sessions s
    WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.data_keys k WHERE k.tenant_id = s.tenant_id);
    PERFORM set_config('agentpg.cross_tenant', 'off', true);
END
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.key_summary() FROM PUBLIC;
