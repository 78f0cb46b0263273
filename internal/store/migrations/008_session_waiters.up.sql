-- Waiters for a busy session, served in arrival order across processes: a
-- process whose run finds the session leased takes a ticket and waits; a
-- run may take the lease only when no live waiter arrived before it. A
-- waiter renews its ticket while it waits; the ticket of a process that
-- died expires.
CREATE TABLE {{schema}}.session_waiters (
    ticket     bigserial   PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE,
    tenant_id  text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX session_waiters_session_idx ON {{schema}}.session_waiters (session_id, ticket);

-- Releasing a session's lease wakes its waiters, in any process, without
-- polling: they LISTEN on the schema's channel.
CREATE FUNCTION {{schema}}.notify_session_released() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentpg_sessions_' || left(md5(TG_TABLE_SCHEMA), 16), NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_released AFTER UPDATE OF lease_run_id ON {{schema}}.sessions
    FOR EACH ROW WHEN (OLD.lease_run_id IS NOT NULL AND NEW.lease_run_id IS NULL)
    EXECUTE FUNCTION {{schema}}.notify_session_released();
