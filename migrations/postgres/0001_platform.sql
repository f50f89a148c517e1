-- The server connects through a LOGIN role that is a member of palisade_app (see docs/database.md).
-- palisade_app owns nothing, so row-level security applies to it; the migration role owns the tables.
-- The role is created only when missing (an owner without CREATEROLE, as on managed databases,
-- can migrate once an administrator has created it), and a concurrent creation by another
-- database migrating in the same cluster is tolerated.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'palisade_app') THEN
        BEGIN
            CREATE ROLE palisade_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    -- A DNS label that does not spell a uuid (tenants are named by slug or by id).
    slug text NOT NULL UNIQUE CHECK (
        slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
        AND slug !~ '^[0-9a-f]{32}$'
        AND slug !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    ),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Tenants are resolved before a tenant is known, so this table is platform-wide (no RLS);
-- only platform admins reach the write paths.
GRANT USAGE ON SCHEMA public TO palisade_app;
GRANT SELECT, INSERT, UPDATE ON tenants TO palisade_app;

-- The one definition of tenant isolation. Every tenant-scoped table is made so by calling this in
-- the migration that creates it, never by writing the policy out again:
--   SELECT palisade_tenant_scoped('notes', 'SELECT, INSERT, UPDATE, DELETE');
-- It enables and forces row-level security (so the owner's own queries are filtered too, when
-- they run as palisade_app), adds the policy that admits only rows of the tenant named by the
-- transaction-local setting app.tenant_id, and grants palisade_app exactly the privileges given.
-- With the setting absent, current_setting(..., true) is NULL, so no row is visible or insertable.
CREATE FUNCTION palisade_tenant_scoped(tbl regclass, privileges text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF privileges !~ '^(SELECT|INSERT|UPDATE|DELETE)(, (SELECT|INSERT|UPDATE|DELETE))*$' THEN
        RAISE EXCEPTION 'palisade_tenant_scoped: privileges must be a list like ''SELECT, INSERT'', got %', privileges;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s '
        'USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid) '
        'WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
        tbl
    );
    EXECUTE format('GRANT %s ON %s TO palisade_app', privileges, tbl);
END
$$;
REVOKE ALL ON FUNCTION palisade_tenant_scoped(regclass, text) FROM PUBLIC;
