-- API keys (docs/api-keys.md, docs/adr/0008-api-keys.md). A key's secret is never stored: only
-- SHA-256 of it, found through the key's lookup id (unique). Tenant-scoped like every tenant
-- table, but authentication must find a key before its tenant is known: that one read goes through
-- palisade_api_key_lookup below, which returns what authentication needs for one lookup id.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    -- The 12 base62 characters after `psk_`; shown in listings so people recognise their keys.
    lookup_id text NOT NULL UNIQUE CHECK (lookup_id ~ '^[0-9A-Za-z]{12}$'),
    secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- Space-separated, as in an OAuth scope claim.
    scopes text NOT NULL CHECK (char_length(scopes) <= 4000),
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    -- Written at most once a minute per key, and at once when the client address changes.
    last_used_at timestamptz,
    last_used_ip text,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_id_id ON api_keys (tenant_id, id);
SELECT palisade_tenant_scoped('api_keys', 'SELECT, INSERT, UPDATE');

-- The lookup before the tenant is known. Row-level security is forced on the owner too, so the
-- owner (the role running this migration, which owns the function) gets one more policy: it may
-- read the row whose lookup id the function has just put in `app.api_key_lookup_id`, and nothing
-- else. The server role does not get this policy: setting the variable itself shows it nothing,
-- and a plain SELECT still sees only its bound tenant's keys.
CREATE POLICY api_key_lookup ON api_keys FOR SELECT TO CURRENT_USER
    USING (lookup_id = nullif(current_setting('app.api_key_lookup_id', true), ''));

CREATE FUNCTION palisade_api_key_lookup(lookup text)
RETURNS TABLE (
    id uuid,
    tenant_id uuid,
    secret_hash bytea,
    scopes text,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    last_used_ip text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM set_config('app.api_key_lookup_id', lookup, true);
    RETURN QUERY
        SELECT k.id, k.tenant_id, k.secret_hash, k.scopes, k.expires_at, k.revoked_at, k.last_used_at, k.last_used_ip
        FROM api_keys k WHERE k.lookup_id = lookup;
    PERFORM set_config('app.api_key_lookup_id', '', true);
END
$$;
REVOKE ALL ON FUNCTION palisade_api_key_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade_api_key_lookup(text) TO palisade_app;
