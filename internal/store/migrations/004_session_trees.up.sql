-- Deleting a session deletes the sessions of the nested agents it called:
-- their messages carry the parent's task text, so none may outlive it.
ALTER TABLE {{schema}}.sessions DROP CONSTRAINT sessions_parent_id_fkey;
ALTER TABLE {{schema}}.sessions ADD CONSTRAINT sessions_parent_id_fkey
    FOREIGN KEY (parent_id) REFERENCES {{schema}}.sessions (id) ON DELETE CASCADE;

-- Every foreign key to sessions gets an index led by session_id, so that a
-- cascading delete finds a session's rows without scanning a whole index.
-- The queries filter by tenant and session and are served as well.
DROP INDEX {{schema}}.tool_executions_session_idx;
CREATE INDEX tool_executions_session_idx ON {{schema}}.tool_executions (session_id, started_at);
DROP INDEX {{schema}}.compaction_events_session_idx;
CREATE INDEX compaction_events_session_idx ON {{schema}}.compaction_events (session_id, created_at);
DROP INDEX {{schema}}.message_archive_session_idx;
CREATE INDEX message_archive_session_idx ON {{schema}}.message_archive (session_id, seq, compaction_id);
