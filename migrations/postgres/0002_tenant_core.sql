-- The platform's tenant-scoped tables: members, the audit log and idempotency keys. Each carries
-- tenant_id and is isolated by palisade_tenant_scoped (0001_platform.sql).

CREATE TABLE users (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    subject text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, subject)
);
SELECT palisade_tenant_scoped('users', 'SELECT, INSERT, UPDATE');

CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    actor text NOT NULL,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_id text NOT NULL,
    request_id text,
    client_ip text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_tenant_id_id ON audit_events (tenant_id, id DESC);
-- The audit log is append-only for the server.
SELECT palisade_tenant_scoped('audit_events', 'SELECT, INSERT');

CREATE TABLE idempotency_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    key text NOT NULL,
    request_hash text NOT NULL,
    status smallint NOT NULL,
    body text NOT NULL,
    etag text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
-- Expired keys are swept per tenant on every keyed POST.
CREATE INDEX idempotency_keys_tenant_id_created_at ON idempotency_keys (tenant_id, created_at);
SELECT palisade_tenant_scoped('idempotency_keys', 'SELECT, INSERT, UPDATE, DELETE');
