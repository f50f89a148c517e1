-- Durable background jobs (docs/jobs.md). The queue is platform-wide: a worker on any replica may
-- run any tenant's job, so the table has no row-level security; a job that touches tenant data binds
-- the tenant itself, like a request does. Workers claim with FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 100),
    -- Enqueueing a key that exists already is a no-op: a job runs once per key.
    key text NOT NULL UNIQUE CHECK (char_length(key) BETWEEN 1 AND 500),
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts > 0),
    run_at timestamptz NOT NULL,
    -- While running: the worker holding the job, and when its lease ends (a worker that died is
    -- presumed gone after that, and the job becomes claimable again).
    locked_by text,
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX jobs_queued_run_at ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_locked_until ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_finished_updated_at ON jobs (updated_at) WHERE status IN ('done', 'dead');

GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO palisade_app;
