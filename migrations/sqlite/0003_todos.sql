CREATE TABLE todos (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    done INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    created_by BLOB NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX todos_tenant_id_id ON todos (tenant_id, id);
CREATE INDEX todos_tenant_id_done_id ON todos (tenant_id, done, id);
