-- A tenant's usage of one day and model was one row, which every step of
-- every run of the tenant updated: its commits took turns on the row's
-- lock, each waiting for the one before to be flushed. The row is now
-- split in usageShards (16) rows, a session always adding to the same
-- one (by its id's hash), so runs of different sessions rarely wait for
-- each other. Readers sum the shards.
ALTER TABLE {{schema}}.tenant_usage ADD COLUMN shard smallint NOT NULL DEFAULT 0 CHECK (shard >= 0);
ALTER TABLE {{schema}}.tenant_usage DROP CONSTRAINT tenant_usage_pkey;
ALTER TABLE {{schema}}.tenant_usage ADD PRIMARY KEY (tenant_id, day, model, shard);
