-- SQLite is the embedded single-process default: isolation is enforced in the application
-- (every query takes the tenant), there are no roles and no row-level security.
CREATE TABLE tenants (
    id BLOB PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
