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
