-- Retention policies: how long a tenant's data is kept. The row of tenant ''
-- is the default, for tenants without one of their own; a tenant's row
-- replaces the default as a whole. A NULL period keeps that data forever.
CREATE TABLE {{schema}}.retention_policies (
    tenant_id  text        PRIMARY KEY,
    sessions   interval    CHECK (sessions > interval '0'),
    archive    interval    CHECK (archive > interval '0'),
    run_events interval    CHECK (run_events > interval '0'),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The retention job reads expired rows oldest first, across tenants.
CREATE INDEX sessions_root_updated_idx ON {{schema}}.sessions (updated_at) WHERE parent_id IS NULL;
CREATE INDEX run_events_created_idx ON {{schema}}.run_events (created_at);
