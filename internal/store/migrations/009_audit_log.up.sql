-- The audit log: who did what, when, per tenant, append-only and
-- hash-chained (package audit documents the hashes). Each tenant's entries
-- are numbered by seq from 1 without gaps; each row holds the hash of the
-- one before it. content_hash covers the content columns, which erasure
-- blanks (user_id, session_id, run_id, actor, input, detail); hash covers
-- the previous hash, the envelope (tenant_id, seq, occurred_at, action,
-- tool, success) and content_hash, so erasing content keeps the chain.
CREATE TABLE {{schema}}.audit_log (
    tenant_id    text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    occurred_at  timestamptz NOT NULL,
    action       text        NOT NULL,
    tool         text        NOT NULL,
    success      boolean     NOT NULL,
    user_id      text        NOT NULL,
    session_id   text        NOT NULL,
    run_id       text        NOT NULL,
    actor        text        NOT NULL,
    input        text        NOT NULL,
    detail       text        NOT NULL,
    content_hash bytea       NOT NULL,
    prev_hash    bytea       NOT NULL,
    hash         bytea       NOT NULL,
    -- Set by erasure: when, and the seq of the tombstone entry that says so.
    erased_at    timestamptz,
    erased_by    bigint,
    PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX audit_log_tenant_time_idx ON {{schema}}.audit_log (tenant_id, occurred_at);

-- The head of each tenant's chain: its last seq and hash. Writers lock it
-- (FOR UPDATE) to append one at a time, whatever the process; it also tells
-- when entries were cut from the end of a chain.
CREATE TABLE {{schema}}.audit_heads (
    tenant_id text   PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);

-- Entries are never updated nor deleted, but by erasure: an UPDATE that
-- only blanks the content of an entry not yet erased, marking it erased by
-- a later tombstone, in a transaction that set agentpg.audit_erasure to
-- 'on' (SET LOCAL). Everything else is refused.
CREATE FUNCTION {{schema}}.audit_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF current_setting('agentpg.audit_erasure', true) = 'on'
           AND OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
           AND NEW.erased_by > OLD.seq AND OLD.action <> 'audit_erasure'
           AND (NEW.tenant_id, NEW.seq, NEW.occurred_at, NEW.action, NEW.tool, NEW.success,
                NEW.content_hash, NEW.prev_hash, NEW.hash)
               IS NOT DISTINCT FROM
               (OLD.tenant_id, OLD.seq, OLD.occurred_at, OLD.action, OLD.tool, OLD.success,
                OLD.content_hash, OLD.prev_hash, OLD.hash)
           AND (NEW.user_id, NEW.session_id, NEW.run_id, NEW.actor, NEW.input, NEW.detail)
               = ('', '', '', '', '', '')
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'agentpg: the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {{schema}}.audit_log
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.audit_log_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {{schema}}.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.audit_log_guard();

-- A chain's head only moves forward.
CREATE FUNCTION {{schema}}.audit_heads_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.tenant_id = OLD.tenant_id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'agentpg: audit chain heads only move forward: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_heads_forward_only BEFORE UPDATE OR DELETE ON {{schema}}.audit_heads
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.audit_heads_guard();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON {{schema}}.audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.audit_heads_guard();
