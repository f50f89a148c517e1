-- Data rights (docs/data-rights.md, docs/adr/0010-data-rights-export-and-erasure.md): tenant
-- exports, tenant erasure (soft delete, then purge after tenancy.erasure_grace) and its tombstone.

-- A tenant is deleted when deleted_at is set; its status (active or suspended) is kept underneath,
-- so a restore brings back exactly what was there. deleted_by is the platform admin's subject.
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by text;
CREATE INDEX tenants_deleted_at ON tenants (deleted_at) WHERE deleted_at IS NOT NULL;

-- What remains of a purged tenant: no name, slug or member, only that it existed, when it was
-- deleted and purged, and who asked. Platform-wide (the tenant is gone); the column is `id`, not
-- `tenant_id`, because every table with a tenant_id is the tenant's data and is purged with it.
CREATE TABLE tenant_tombstones (
    id uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL,
    deleted_by text NOT NULL,
    purged_at timestamptz NOT NULL
);
-- Only the owner's purge function writes tombstones.
GRANT SELECT ON tenant_tombstones TO palisade_app;

-- Tenant exports, archive included: every replica can serve a download from the database (the
-- size cap exports.max_bytes bounds a row; see docs/data-rights.md for the trade-off).
CREATE TABLE tenant_exports (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    status text NOT NULL CHECK (status IN ('pending', 'running', 'ready', 'failed')),
    requested_by text NOT NULL,
    format_version integer NOT NULL CHECK (format_version > 0),
    -- The manifest.json of the archive (row counts and checksums), once ready.
    manifest text,
    archive bytea,
    size_bytes bigint,
    sha256 text,
    error text,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    expires_at timestamptz NOT NULL
);
CREATE INDEX tenant_exports_tenant_id_id ON tenant_exports (tenant_id, id);
CREATE INDEX tenant_exports_expires_at ON tenant_exports (expires_at);
SELECT palisade_tenant_scoped('tenant_exports', 'SELECT, INSERT, UPDATE, DELETE');

-- Purges one deleted tenant: every row of every table with a tenant_id column (found in the
-- catalog, so tables added later are covered without a change here), then the tenant itself,
-- leaving one tombstone. Runs as the owner: the audit log and the outbox are append-only for the
-- server. Refuses a tenant that is not deleted. Foreign keys between tenant tables decide the
-- order; rather than encode it, tables whose rows are still referenced are retried in another
-- pass until every table is empty. Returns the rows deleted.
CREATE FUNCTION palisade_purge_tenant(tenant uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    victim tenants%ROWTYPE;
    pending regclass[];
    blocked regclass[];
    tbl regclass;
    deleted bigint;
    purged bigint := 0;
BEGIN
    SELECT * INTO victim FROM tenants WHERE id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF victim.deleted_at IS NULL THEN
        RAISE EXCEPTION 'palisade_purge_tenant: tenant % is not deleted', tenant;
    END IF;
    PERFORM set_config('app.tenant_id', tenant::text, true);
    SELECT coalesce(array_agg(c.oid::regclass), '{}') INTO pending
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = 'tenant_id' AND NOT a.attisdropped;
    WHILE cardinality(pending) > 0 LOOP
        blocked := '{}';
        FOREACH tbl IN ARRAY pending LOOP
            BEGIN
                EXECUTE format('DELETE FROM %s WHERE tenant_id = $1', tbl) USING tenant;
                GET DIAGNOSTICS deleted = ROW_COUNT;
                purged := purged + deleted;
            EXCEPTION WHEN foreign_key_violation THEN
                blocked := blocked || tbl;
            END;
        END LOOP;
        IF cardinality(blocked) = cardinality(pending) THEN
            RAISE EXCEPTION 'palisade_purge_tenant: rows of % are referenced from outside the tenant', blocked;
        END IF;
        pending := blocked;
    END LOOP;
    DELETE FROM tenants WHERE id = tenant;
    INSERT INTO tenant_tombstones (id, deleted_at, deleted_by, purged_at)
    VALUES (tenant, victim.deleted_at, victim.deleted_by, now())
    ON CONFLICT (id) DO NOTHING;
    PERFORM set_config('app.tenant_id', '', true);
    RETURN purged + 1;
END
$$;
REVOKE ALL ON FUNCTION palisade_purge_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade_purge_tenant(uuid) TO palisade_app;

-- A person's own data across tenants (GDPR art. 15 and 17): the server can see one tenant's users
-- at a time, so finding every membership of a subject goes through these owner functions.
CREATE FUNCTION palisade_subject_memberships(subj text)
RETURNS TABLE (id uuid, tenant_id uuid, role text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tenant uuid;
BEGIN
    FOR tenant IN SELECT t.id FROM tenants t WHERE t.deleted_at IS NULL LOOP
        PERFORM set_config('app.tenant_id', tenant::text, true);
        RETURN QUERY SELECT u.id, u.tenant_id, u.role, u.created_at, u.updated_at
            FROM users u WHERE u.tenant_id = tenant AND u.subject = subj;
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END
$$;
REVOKE ALL ON FUNCTION palisade_subject_memberships(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade_subject_memberships(text) TO palisade_app;
