-- The transactional outbox; see migrations/postgres/0005_outbox.sql.
CREATE TABLE outbox_events (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    event_type TEXT NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    payload_version INTEGER NOT NULL CHECK (payload_version > 0),
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX outbox_events_tenant_id_id ON outbox_events (tenant_id, id);
