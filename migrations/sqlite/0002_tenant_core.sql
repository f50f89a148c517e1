CREATE TABLE users (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    subject TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant_id, subject)
) STRICT;

CREATE TABLE audit_events (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    request_id TEXT,
    client_ip TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX audit_events_tenant_id_id ON audit_events (tenant_id, id DESC);

CREATE TABLE idempotency_keys (
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    etag TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT;
CREATE INDEX idempotency_keys_tenant_id_created_at ON idempotency_keys (tenant_id, created_at);
