-- SQLite is the embedded single-process default: isolation is enforced in the application
-- (every query takes the tenant), there are no roles and no row-level security. The tables,
-- columns, constraints and indexes are those of the PostgreSQL migrations with SQLite types
-- (crates/store/tests/schema_parity.rs compares the two).
CREATE TABLE tenants (
    id BLOB PRIMARY KEY NOT NULL,
    -- A DNS label that does not spell a uuid (tenants are named by slug or by id).
    slug TEXT NOT NULL UNIQUE CHECK (
        length(slug) BETWEEN 1 AND 63
        AND slug NOT GLOB '*[^a-z0-9-]*'
        AND slug NOT GLOB '-*'
        AND slug NOT GLOB '*-'
        AND NOT (length(slug) = 32 AND slug NOT GLOB '*[^0-9a-f]*')
        AND slug NOT GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
    ),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
