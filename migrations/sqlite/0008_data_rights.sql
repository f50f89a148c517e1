-- Data rights; see migrations/postgres/0008_data_rights.sql. The purge's table discovery and the
-- search for a subject's memberships are done by the server (no roles or RLS on SQLite).
ALTER TABLE tenants ADD COLUMN deleted_at TEXT;
ALTER TABLE tenants ADD COLUMN deleted_by TEXT;
CREATE INDEX tenants_deleted_at ON tenants (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE tenant_tombstones (
    id BLOB PRIMARY KEY NOT NULL,
    deleted_at TEXT NOT NULL,
    deleted_by TEXT NOT NULL,
    purged_at TEXT NOT NULL
) STRICT;

CREATE TABLE tenant_exports (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'ready', 'failed')),
    requested_by TEXT NOT NULL,
    format_version INTEGER NOT NULL CHECK (format_version > 0),
    manifest TEXT,
    archive BLOB,
    size_bytes INTEGER,
    sha256 TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX tenant_exports_tenant_id_id ON tenant_exports (tenant_id, id);
CREATE INDEX tenant_exports_expires_at ON tenant_exports (expires_at);
