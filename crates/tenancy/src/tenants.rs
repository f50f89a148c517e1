//! Tenants: the platform-wide table (not row-level secured: a tenant must be found before one is
//! known) and its repository functions, plus the lookup cache used on every request.

use std::sync::Arc;

use moka::future::Cache;
use palisade_store::{Database, Page, PageRequest, Tx, on_tx};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{TenancyConfig, TenancyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    /// Erasure requested: refused everywhere (410), restorable until `tenancy.erasure_grace` has
    /// passed, then purged (docs/data-rights.md).
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    /// The status a request sees: deletion overrides the stored active/suspended (which a restore
    /// brings back).
    fn of(stored: &str, deleted: bool) -> Self {
        match (deleted, stored) {
            (true, _) => Self::Deleted,
            (false, "active") => Self::Active,
            (false, _) => Self::Suspended,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// When erasure was requested; the tenant is purged `tenancy.erasure_grace` later.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    status: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    deleted_at: Option<OffsetDateTime>,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Self {
            id: row.id,
            slug: row.slug,
            name: row.name,
            status: TenantStatus::of(&row.status, row.deleted_at.is_some()),
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// The selected columns, as a macro so that each statement is one `concat!`ed `&'static str`
/// (no `format!` per query; sqlx caches the prepared statement per connection).
macro_rules! columns {
    () => {
        "id, slug, name, status, created_at, updated_at, deleted_at"
    };
}

/// A slug is a DNS label (it may be a subdomain): 1–63 lowercase letters, digits and inner hyphens.
/// It may not look like a uuid: tenants are named by slug *or* id, and a slug spelling another
/// tenant's id would let its tokens name that tenant.
pub fn is_valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
        && Uuid::parse_str(slug).is_err()
}

/// The one spelling of a tenant name used as a cache key: a uuid in any accepted form becomes
/// its lowercase hyphenated form, so every spelling of an id is forgotten together.
fn canonical(name: &str) -> (String, Option<Uuid>) {
    match Uuid::parse_str(name) {
        Ok(id) => (id.to_string(), Some(id)),
        Err(_) => (name.to_owned(), None),
    }
}

pub async fn create(tx: &mut Tx, slug: &str, name: &str) -> Result<Tenant, TenancyError> {
    let now = OffsetDateTime::now_utc();
    let sql = concat!(
        "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', $4, $4) \
         ON CONFLICT (slug) DO NOTHING RETURNING ",
        columns!()
    );
    let row: Option<TenantRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(Uuid::now_v7())
        .bind(slug)
        .bind(name)
        .bind(now)
        .fetch_optional(conn)
        .await)?;
    row.map(Tenant::from).ok_or_else(|| TenancyError::SlugTaken(slug.to_owned()))
}

pub async fn by_id(tx: &mut Tx, id: Uuid) -> Result<Option<Tenant>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM tenants WHERE id = $1");
    let row: Option<TenantRow> = on_tx!(tx, |conn| sqlx::query_as(sql).bind(id).fetch_optional(conn).await)?;
    Ok(row.map(Tenant::from))
}

pub async fn by_slug(tx: &mut Tx, slug: &str) -> Result<Option<Tenant>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM tenants WHERE slug = $1");
    let row: Option<TenantRow> = on_tx!(tx, |conn| sqlx::query_as(sql).bind(slug).fetch_optional(conn).await)?;
    Ok(row.map(Tenant::from))
}

pub async fn list(tx: &mut Tx, page: &PageRequest) -> Result<Page<Tenant>, TenancyError> {
    let (limit, after) = page.parse()?;
    let sql = concat!("SELECT ", columns!(), " FROM tenants WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2");
    let rows: Vec<TenantRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(after).bind(i64::from(limit) + 1).fetch_all(conn).await)?;
    Ok(Page::from_rows(rows.into_iter().map(Tenant::from).collect(), limit, |t| t.id))
}

/// Sets the status (active or suspended) of a tenant that is not deleted; `None` when there is no
/// such tenant.
pub async fn set_status(tx: &mut Tx, id: Uuid, status: TenantStatus) -> Result<Option<Tenant>, TenancyError> {
    let sql = concat!(
        "UPDATE tenants SET status = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL RETURNING ",
        columns!()
    );
    let row: Option<TenantRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(status.as_str())
        .bind(OffsetDateTime::now_utc())
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(Tenant::from))
}

/// Marks the tenant deleted by `actor` (soft delete); `None` when there is no such tenant or it is
/// deleted already.
pub async fn mark_deleted(tx: &mut Tx, id: Uuid, actor: &str) -> Result<Option<Tenant>, TenancyError> {
    let sql = concat!(
        "UPDATE tenants SET deleted_at = $1, deleted_by = $2, updated_at = $1 WHERE id = $3 AND deleted_at IS NULL \
         RETURNING ",
        columns!()
    );
    let row: Option<TenantRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(OffsetDateTime::now_utc())
        .bind(actor)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(Tenant::from))
}

/// Undoes [`mark_deleted`] (the tenant returns to its status before); `None` when there is no such
/// tenant or it is not deleted.
pub async fn restore(tx: &mut Tx, id: Uuid) -> Result<Option<Tenant>, TenancyError> {
    let sql = concat!(
        "UPDATE tenants SET deleted_at = NULL, deleted_by = NULL, updated_at = $1 \
         WHERE id = $2 AND deleted_at IS NOT NULL RETURNING ",
        columns!()
    );
    let row: Option<TenantRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(OffsetDateTime::now_utc()).bind(id).fetch_optional(conn).await)?;
    Ok(row.map(Tenant::from))
}

/// Tenant lookups by slug or id, cached (including misses, so a flood of made-up names costs one
/// query each per TTL rather than one per request).
#[derive(Clone)]
pub struct TenantDirectory {
    db: Database,
    cache: Cache<String, Option<Arc<Tenant>>>,
}

impl std::fmt::Debug for TenantDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDirectory").field("entries", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl TenantDirectory {
    pub fn new(db: Database, config: &TenancyConfig) -> Self {
        let cache = Cache::builder().max_capacity(config.cache_capacity).time_to_live(config.cache_ttl).build();
        Self { db, cache }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Finds a tenant by uuid or slug.
    pub async fn find(&self, name: &str) -> Result<Option<Arc<Tenant>>, TenancyError> {
        let (key, id) = canonical(name);
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let mut tx = self.db.begin().await?;
        let found = match id {
            Some(id) => by_id(&mut tx, id).await?,
            None => by_slug(&mut tx, name).await?,
        };
        tx.commit().await?;
        let found = found.map(Arc::new);
        self.cache.insert(key, found.clone()).await;
        Ok(found)
    }

    /// Forgets what this instance cached about `tenant` (after a status change or creation).
    pub async fn forget(&self, tenant: &Tenant) {
        self.cache.invalidate(&tenant.slug).await;
        self.cache.invalidate(&tenant.id.to_string()).await;
    }
}

/// Revocations are keyed by tenant uuid: the authenticator asks the directory (and its cache)
/// which tenant a slug claim names.
impl palisade_auth::TenantIds for TenantDirectory {
    fn tenant_id<'a>(&'a self, claim: &'a str) -> std::pin::Pin<Box<dyn Future<Output = Option<Uuid>> + Send + 'a>> {
        Box::pin(async move {
            match self.find(claim).await {
                Ok(tenant) => tenant.map(|tenant| tenant.id),
                Err(error) => {
                    tracing::warn!(%error, "the tenant of a token could not be looked up for its revocation key");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels() {
        for ok in ["demo", "acme-corp", "a", "t1"] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        let uuid_like = Uuid::now_v7();
        for bad in [
            "",
            "-a",
            "a-",
            "Acme",
            "a_b",
            "a.b",
            &"x".repeat(64),
            &uuid_like.simple().to_string(),
            &uuid_like.to_string(),
        ] {
            assert!(!is_valid_slug(bad), "{bad}");
        }
    }
}
