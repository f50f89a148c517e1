//! API keys' storage: the tenant-scoped repository the `/api-keys` resource uses, the lookup by
//! lookup id that authentication makes before the tenant is known, and the record of a key's use.
//! The key format, hashing and comparison are the auth crate's (`palisade_auth::api_key`).

use std::{future::Future, pin::Pin, time::Duration};

use palisade_auth::{
    ApiKeyLookup, KeyUse, StoredKey,
    api_key::{self, GeneratedKey},
};
use palisade_store::{Database, Page, PageRequest, Tx, on_tx};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{RequestMeta, TenancyError, audit::Change, session::bind_tenant, write};

/// `last_used_at` is rewritten at most this often per key (unless the address changes), so a
/// busy key does not write on every request.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// An API key's metadata; never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    /// The key's first characters (`psk_` and its lookup id), to recognise it by.
    #[schema(example = "psk_3hQ9zK1mXb7T")]
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// The user (in this tenant) who created it.
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// To within a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: Uuid,
    name: String,
    scopes: String,
    lookup_id: String,
    created_at: OffsetDateTime,
    created_by: Uuid,
    expires_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    last_used_ip: Option<String>,
    revoked_at: Option<OffsetDateTime>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            scopes: split_scopes(&row.scopes),
            prefix: format!("{}{}", api_key::PREFIX, row.lookup_id),
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            last_used_ip: row.last_used_ip,
            revoked_at: row.revoked_at,
        }
    }
}

fn split_scopes(scopes: &str) -> Vec<String> {
    scopes.split_whitespace().map(str::to_owned).collect()
}

/// The selected columns, as a macro so each statement is one `concat!`ed `&'static str`.
macro_rules! columns {
    () => {
        "id, name, scopes, lookup_id, created_at, created_by, expires_at, last_used_at, last_used_ip, revoked_at"
    };
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: Uuid,
}

fn generated() -> Result<GeneratedKey, TenancyError> {
    api_key::generate().map_err(|_| TenancyError::Random)
}

/// Creates a key; returns its metadata and the full key, which exists only in this answer.
pub async fn create(tx: &mut Tx, tenant_id: Uuid, new: &NewKey<'_>) -> Result<(ApiKey, String), TenancyError> {
    let key = generated()?;
    let sql = concat!(
        "INSERT INTO api_keys (id, tenant_id, lookup_id, secret_hash, name, scopes, created_by, created_at, expires_at) ",
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        columns!()
    );
    let row: ApiKeyRow = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(&key.lookup_id)
        .bind(&key.secret_hash)
        .bind(new.name)
        .bind(new.scopes.join(" "))
        .bind(new.created_by)
        .bind(OffsetDateTime::now_utc())
        .bind(new.expires_at)
        .fetch_one(conn)
        .await)?;
    Ok((row.into(), key.key))
}

pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<ApiKey>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM api_keys WHERE tenant_id = $1 AND id = $2");
    let row: Option<ApiKeyRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(tenant_id).bind(id).fetch_optional(conn).await)?;
    Ok(row.map(ApiKey::from))
}

/// The tenant's keys, revoked ones included, oldest first.
pub async fn list(tx: &mut Tx, tenant_id: Uuid, page: &PageRequest) -> Result<Page<ApiKey>, TenancyError> {
    let (limit, after) = page.parse()?;
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    let rows: Vec<ApiKeyRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(tenant_id)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await)?;
    Ok(Page::from_rows(rows.into_iter().map(ApiKey::from).collect(), limit, |k| k.id))
}

/// Revokes a key; a revoked key keeps its first `revoked_at`. Returns the key and whether this
/// call revoked it (`None` when there is no such key in the tenant).
pub async fn revoke(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<(ApiKey, bool)>, TenancyError> {
    let Some(before) = get(tx, tenant_id, id).await? else { return Ok(None) };
    if before.revoked_at.is_some() {
        return Ok(Some((before, false)));
    }
    let sql = concat!(
        "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL RETURNING ",
        columns!()
    );
    let row: Option<ApiKeyRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(OffsetDateTime::now_utc())
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    match row {
        Some(row) => Ok(Some((row.into(), true))),
        None => Ok(get(tx, tenant_id, id).await?.map(|key| (key, false))),
    }
}

/// The outcome of a rotation.
#[derive(Debug)]
pub enum Rotation {
    /// The key with its new lookup id, and the new full key (shown once).
    Rotated(Box<ApiKey>, String),
    /// A revoked key stays revoked: create a new one instead.
    Revoked,
    NotFound,
}

/// Gives a key a new lookup id and secret; the old secret stops working when this commits.
pub async fn rotate(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Rotation, TenancyError> {
    let key = generated()?;
    let sql = concat!(
        "UPDATE api_keys SET lookup_id = $1, secret_hash = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL ",
        "RETURNING ",
        columns!()
    );
    let row: Option<ApiKeyRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(&key.lookup_id)
        .bind(&key.secret_hash)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(match row {
        Some(row) => Rotation::Rotated(Box::new(row.into()), key.key),
        None if get(tx, tenant_id, id).await?.is_some() => Rotation::Revoked,
        None => Rotation::NotFound,
    })
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: Uuid,
    tenant_id: Uuid,
    secret_hash: Vec<u8>,
    scopes: String,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    last_used_ip: Option<String>,
}

/// The key with `lookup_id`, whatever its tenant: on PostgreSQL through the one function that
/// may read it before a tenant is bound (migrations/postgres/0006_api_keys.sql).
pub async fn lookup(db: &Database, lookup_id: &str) -> Result<Option<StoredKey>, TenancyError> {
    let mut tx = db.begin_read().await?;
    let row: Option<StoredRow> = match tx {
        Tx::Postgres(_) => on_tx!(&mut tx, |conn| sqlx::query_as(
            "SELECT id, tenant_id, secret_hash, scopes, expires_at, revoked_at, last_used_at, last_used_ip \
             FROM palisade_api_key_lookup($1)"
        )
        .bind(lookup_id)
        .fetch_optional(conn)
        .await)?,
        Tx::Sqlite(_) => on_tx!(&mut tx, |conn| sqlx::query_as(
            "SELECT id, tenant_id, secret_hash, scopes, expires_at, revoked_at, last_used_at, last_used_ip \
             FROM api_keys WHERE lookup_id = $1"
        )
        .bind(lookup_id)
        .fetch_optional(conn)
        .await)?,
    };
    tx.commit().await?;
    Ok(row.map(|row| StoredKey {
        id: row.id,
        tenant_id: row.tenant_id,
        secret_hash: row.secret_hash,
        scopes: split_scopes(&row.scopes),
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
        last_used_ip: row.last_used_ip,
    }))
}

/// Whether this use must be written: the first use, a use from another address than the last
/// recorded one, or the first use after [`LAST_USED_RESOLUTION`].
fn needs_recording(key: &KeyUse, ip: Option<&str>, now: OffsetDateTime) -> bool {
    let stale = key.last_used_at.is_none_or(|at| now - at >= LAST_USED_RESOLUTION);
    stale || (ip.is_some() && ip != key.last_used_ip.as_deref())
}

/// Records a request made with `key` in `tenant_id`: `last_used_at` and `last_used_ip`, at most
/// once a minute, and the audit event `api_key.used_from_new_ip` when the address differs from
/// the last recorded one (the first use included). The update is conditional on what the lookup
/// saw, so of several replicas noticing the same change only one writes and audits it.
pub async fn record_use(db: &Database, tenant_id: Uuid, key: &KeyUse, meta: &RequestMeta) -> Result<(), TenancyError> {
    let now = OffsetDateTime::now_utc();
    let ip = meta.client_ip.map(|ip| ip.to_string());
    if !needs_recording(key, ip.as_deref(), now) {
        return Ok(());
    }
    let new_ip = ip.is_some() && ip != key.last_used_ip;
    let mut tx = db.begin().await?;
    bind_tenant(&mut tx, tenant_id).await?;
    let updated = on_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE api_keys SET last_used_at = $1, last_used_ip = COALESCE($2, last_used_ip) \
         WHERE tenant_id = $3 AND id = $4 AND last_used_at IS NOT DISTINCT FROM $5 \
         AND last_used_ip IS NOT DISTINCT FROM $6"
    )
    .bind(now)
    .bind(ip.as_deref())
    .bind(tenant_id)
    .bind(key.id)
    .bind(key.last_used_at)
    .bind(key.last_used_ip.as_deref())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if updated == 1 && new_ip {
        let id = key.id.to_string();
        let change = Change { action: "api_key.used_from_new_ip", resource_type: "api_key", resource_id: &id };
        write::commit(tx, tenant_id, &api_key::subject(key.id), change, meta).await
    } else {
        // No audit row for a mere timestamp (it would be one a minute per key).
        tx.commit().await?;
        Ok(())
    }
}

/// The authenticator's view of the store.
#[derive(Debug, Clone)]
pub struct ApiKeyDirectory {
    db: Database,
}

impl ApiKeyDirectory {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl ApiKeyLookup for ApiKeyDirectory {
    fn find<'a>(
        &'a self,
        lookup_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<StoredKey>, String>> + Send + 'a>> {
        Box::pin(async move { lookup(&self.db, lookup_id).await.map_err(|error| error.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(at: Option<OffsetDateTime>, ip: Option<&str>) -> KeyUse {
        KeyUse { id: Uuid::nil(), last_used_at: at, last_used_ip: ip.map(str::to_owned) }
    }

    #[test]
    fn a_use_is_written_first_then_once_a_minute_or_from_a_new_address() {
        let now = OffsetDateTime::now_utc();
        let recent = Some(now - time::Duration::seconds(10));
        let old = Some(now - time::Duration::seconds(61));
        assert!(needs_recording(&used(None, None), Some("10.0.0.1"), now));
        assert!(!needs_recording(&used(recent, Some("10.0.0.1")), Some("10.0.0.1"), now));
        assert!(needs_recording(&used(recent, Some("10.0.0.1")), Some("10.0.0.2"), now));
        assert!(needs_recording(&used(old, Some("10.0.0.1")), Some("10.0.0.1"), now));
        assert!(!needs_recording(&used(recent, Some("10.0.0.1")), None, now));
    }
}
