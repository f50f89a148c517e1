-- Durable background jobs (docs/jobs.md). SQLite runs a single worker; the write lock of
-- BEGIN IMMEDIATE serialises claims.
CREATE TABLE jobs (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    key TEXT NOT NULL UNIQUE CHECK (length(key) BETWEEN 1 AND 500),
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at TEXT NOT NULL,
    locked_by TEXT,
    locked_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX jobs_queued_run_at ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_locked_until ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_finished_updated_at ON jobs (updated_at) WHERE status IN ('done', 'dead');
