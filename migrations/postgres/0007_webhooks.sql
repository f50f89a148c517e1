-- Webhooks (docs/webhooks.md, docs/adr/0009-webhooks.md): a tenant's endpoints, one delivery per
-- (endpoint, outbox event) made by the relay, and every HTTP attempt of a delivery. All three are
-- tenant-scoped: the relay and the delivery jobs bind the tenant they work for, like a request.

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    url text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2000),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    -- A JSON array of event types; empty means every event type.
    event_types text NOT NULL DEFAULT '[]',
    enabled boolean NOT NULL DEFAULT true,
    -- The current signing secret (`whsec_…`), and during a rotation's overlap the one it replaced,
    -- which keeps signing alongside it until previous_secret_expires_at.
    secret text NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    -- Deliveries in a row that failed all their attempts; webhooks.disable_after_failures of them
    -- disable the endpoint. A success, or re-enabling, resets it.
    consecutive_failures integer NOT NULL DEFAULT 0,
    disabled_reason text,
    disabled_at timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- Lists are ordered by id within a tenant.
CREATE INDEX webhook_endpoints_tenant_id_id ON webhook_endpoints (tenant_id, id);
SELECT palisade_tenant_scoped('webhook_endpoints', 'SELECT, INSERT, UPDATE, DELETE');

CREATE TABLE webhook_deliveries (
    -- Sent as the `webhook-id` header: the same for every attempt, so receivers deduplicate on it.
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id uuid NOT NULL,
    event_type text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 100),
    -- The exact body sent (and signed) at every attempt.
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_status_code integer,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    -- One delivery per event and endpoint, however often the relay runs.
    UNIQUE (endpoint_id, event_id)
);
-- The delivery log of an endpoint is newest first, optionally by status.
CREATE INDEX webhook_deliveries_endpoint_id ON webhook_deliveries (tenant_id, endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_endpoint_status_id ON webhook_deliveries (tenant_id, endpoint_id, status, id DESC);
-- Retention (webhooks.delivery_retention).
CREATE INDEX webhook_deliveries_tenant_id_created_at ON webhook_deliveries (tenant_id, created_at);
SELECT palisade_tenant_scoped('webhook_deliveries', 'SELECT, INSERT, UPDATE, DELETE');

CREATE TABLE webhook_attempts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL CHECK (attempt > 0),
    at timestamptz NOT NULL,
    -- NULL when no HTTP response came back (refused address, timeout, connection error).
    status_code integer,
    outcome text NOT NULL CHECK (char_length(outcome) BETWEEN 1 AND 100),
    duration_ms bigint NOT NULL,
    response_excerpt text,
    UNIQUE (delivery_id, attempt)
);
-- The per-tenant rate limit counts a tenant's attempts of the last second.
CREATE INDEX webhook_attempts_tenant_id_at ON webhook_attempts (tenant_id, at);
SELECT palisade_tenant_scoped('webhook_attempts', 'SELECT, INSERT, DELETE');

-- The relay marks the events it has turned into deliveries. The server may still only append to
-- the outbox otherwise: it may update this one column.
ALTER TABLE outbox_events ADD COLUMN relayed_at timestamptz;
CREATE INDEX outbox_events_unrelayed ON outbox_events (tenant_id, id) WHERE relayed_at IS NULL;
GRANT UPDATE (relayed_at) ON outbox_events TO palisade_app;
