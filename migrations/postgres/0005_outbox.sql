-- The transactional outbox (docs/adr/0007-events-out-outbox-and-job-queue.md): every committed
-- write of tenant data has exactly one event here, inserted in the write's own transaction next to
-- its audit row (crates/tenancy/src/write.rs). The relay that turns events into webhook deliveries
-- reads it; until it lands the server only appends.
CREATE TABLE outbox_events (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    -- `<resource>.<verb>`, e.g. `todo.created`: the audit action of the write.
    event_type text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 100),
    -- The schema version of `payload`, so receivers can tell shapes apart as they evolve.
    payload_version integer NOT NULL CHECK (payload_version > 0),
    payload text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX outbox_events_tenant_id_id ON outbox_events (tenant_id, id);
SELECT palisade_tenant_scoped('outbox_events', 'SELECT, INSERT');
