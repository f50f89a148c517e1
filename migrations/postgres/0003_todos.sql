-- The example resource. A resource's migration creates its table, an index for every filter and
-- sort its API offers, and makes it tenant-scoped in the same migration.

CREATE TABLE todos (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 500),
    done boolean NOT NULL DEFAULT false,
    version bigint NOT NULL DEFAULT 1,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Lists are ordered by id within a tenant; `?done=` filters within that order.
CREATE INDEX todos_tenant_id_id ON todos (tenant_id, id);
CREATE INDEX todos_tenant_id_done_id ON todos (tenant_id, done, id);
SELECT palisade_tenant_scoped('todos', 'SELECT, INSERT, UPDATE, DELETE');
