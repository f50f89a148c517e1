-- API keys; see migrations/postgres/0006_api_keys.sql. SQLite has no row-level security: every
-- query names the tenant, and the lookup by lookup id is the one read that precedes it.
CREATE TABLE api_keys (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    lookup_id TEXT NOT NULL UNIQUE CHECK (length(lookup_id) = 12),
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes TEXT NOT NULL CHECK (length(scopes) <= 4000),
    created_by BLOB NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    last_used_ip TEXT,
    revoked_at TEXT
) STRICT;
CREATE INDEX api_keys_tenant_id_id ON api_keys (tenant_id, id);
