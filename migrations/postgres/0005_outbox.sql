-- The transactional outbox (docs/adr/0007-events-out-outbox-and-job-queue.md): every committed
-- write of tenant data has exactly one event here, inserted in the write's own transaction next to
-- its audit row (crates/tenancy/src/write.rs). The relay that turns events into webhook deliveries
-- reads it; until it lands the server appends, and events older than jobs.outbox_retention are
-- deleted by the cleanup.outbox_events job.
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

-- Retention of the append-only logs (jobs.audit_retention, jobs.outbox_retention). The server may
-- only append to audit_events and outbox_events; deleting rows older than the retention goes
-- through this one function, which runs as the table owner, accepts only those two tables, and
-- visits the tenants one by one (row-level security is forced on the owner too).
CREATE FUNCTION palisade_purge_log(log regclass, older_than timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    purged bigint := 0;
    deleted bigint;
    tenant uuid;
BEGIN
    IF log NOT IN ('audit_events'::regclass, 'outbox_events'::regclass) THEN
        RAISE EXCEPTION 'palisade_purge_log: % is not a log with a retention', log;
    END IF;
    FOR tenant IN SELECT id FROM tenants LOOP
        PERFORM set_config('app.tenant_id', tenant::text, true);
        EXECUTE format('DELETE FROM %s WHERE tenant_id = $1 AND created_at < $2', log) USING tenant, older_than;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        purged := purged + deleted;
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
    RETURN purged;
END
$$;
REVOKE ALL ON FUNCTION palisade_purge_log(regclass, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade_purge_log(regclass, timestamptz) TO palisade_app;
