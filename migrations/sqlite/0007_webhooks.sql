-- Webhooks; see migrations/postgres/0007_webhooks.sql.
CREATE TABLE webhook_endpoints (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    url TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    event_types TEXT NOT NULL DEFAULT '[]',
    enabled INTEGER NOT NULL DEFAULT 1,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_expires_at TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    disabled_at TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_tenant_id_id ON webhook_endpoints (tenant_id, id);

CREATE TABLE webhook_deliveries (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    endpoint_id BLOB NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (endpoint_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_endpoint_id ON webhook_deliveries (tenant_id, endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_endpoint_status_id ON webhook_deliveries (tenant_id, endpoint_id, status, id DESC);
CREATE INDEX webhook_deliveries_tenant_id_created_at ON webhook_deliveries (tenant_id, created_at);

CREATE TABLE webhook_attempts (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    delivery_id BLOB NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL CHECK (attempt > 0),
    at TEXT NOT NULL,
    status_code INTEGER,
    outcome TEXT NOT NULL CHECK (length(outcome) BETWEEN 1 AND 100),
    duration_ms INTEGER NOT NULL,
    response_excerpt TEXT,
    UNIQUE (delivery_id, attempt)
) STRICT;
CREATE INDEX webhook_attempts_tenant_id_at ON webhook_attempts (tenant_id, at);

ALTER TABLE outbox_events ADD COLUMN relayed_at TEXT;
CREATE INDEX outbox_events_unrelayed ON outbox_events (tenant_id, id) WHERE relayed_at IS NULL;
