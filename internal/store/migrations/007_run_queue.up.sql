-- Enqueued runs (Session.Enqueue) are executed by workers on River
-- (github.com/riverqueue/river), whose tables live in this schema too:
-- Migrate applies River's own migrations (riverpgxv5, currently up to its
-- version 8, River v0.51.2) after ours, in the same transaction.
--
-- A session's runs execute in order: a queued run starts only when no
-- earlier run of its session is queued, running or awaiting approval. This
-- index serves that check, and finding a session's next queued run.
CREATE INDEX runs_session_active_idx ON {{schema}}.runs (session_id, id)
    WHERE status IN ('queued', 'running', 'awaiting_approval');
