//! Users: one row per (tenant, subject), created on the subject's first authenticated request in
//! that tenant. A tenant admin (the `tenant:admin` scope, or the `admin` role) manages roles.

use palisade_store::{Page, PageRequest, Tx, on_tx};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::TenancyError;

/// A user's role in a tenant (named `Role` in the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Role)]
pub enum UserRole {
    Member,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub subject: String,
    pub role: UserRole,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    subject: String,
    role: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            subject: row.subject,
            role: if row.role == "admin" { UserRole::Admin } else { UserRole::Member },
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The selected columns, as a macro so that each statement is one `concat!`ed `&'static str`
/// (no `format!` per query; sqlx caches the prepared statement per connection).
macro_rules! columns {
    () => {
        "id, tenant_id, subject, role, created_at, updated_at"
    };
}

/// The user for `subject` in the tenant, created if this is its first request there.
/// Returns whether it was created (so the caller can audit it).
pub async fn provision(tx: &mut Tx, tenant_id: Uuid, subject: &str) -> Result<(User, bool), TenancyError> {
    if let Some(user) = find(tx, tenant_id, subject).await? {
        return Ok((user, false));
    }
    let now = OffsetDateTime::now_utc();
    let inserted = on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO users (id, tenant_id, subject, role, created_at, updated_at) \
         VALUES ($1, $2, $3, 'member', $4, $4) ON CONFLICT (tenant_id, subject) DO NOTHING"
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(subject)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    let user = find(tx, tenant_id, subject)
        .await?
        .ok_or_else(|| TenancyError::Store(palisade_store::StoreError::Query(sqlx::Error::RowNotFound)))?;
    Ok((user, inserted == 1))
}

/// As [`find`], in the same round trip checking the tenant's status in the database: the tenant
/// directory caches tenants for `tenancy.cache_ttl`, and a deletion (or suspension) made through
/// another replica must refuse the next request here, not one TTL later.
pub async fn find_in_live_tenant(tx: &mut Tx, tenant_id: Uuid, subject: &str) -> Result<Option<User>, TenancyError> {
    type Row =
        (String, Option<OffsetDateTime>, Option<Uuid>, Option<String>, Option<OffsetDateTime>, Option<OffsetDateTime>);
    let row: Option<Row> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT t.status, t.deleted_at, u.id, u.role, u.created_at, u.updated_at \
         FROM tenants t LEFT JOIN users u ON u.tenant_id = t.id AND u.subject = $2 WHERE t.id = $1"
    )
    .bind(tenant_id)
    .bind(subject)
    .fetch_optional(conn)
    .await)?;
    let Some((status, deleted_at, id, role, created_at, updated_at)) = row else {
        return Err(TenancyError::TenantNotFound(tenant_id.to_string()));
    };
    if deleted_at.is_some() {
        return Err(TenancyError::TenantDeleted);
    }
    if status != "active" {
        return Err(TenancyError::TenantSuspended);
    }
    Ok(match (id, role, created_at, updated_at) {
        (Some(id), Some(role), Some(created_at), Some(updated_at)) => {
            Some(User::from(UserRow { id, tenant_id, subject: subject.to_owned(), role, created_at, updated_at }))
        }
        _ => None,
    })
}

/// The user for `subject` in the tenant, if it has been provisioned.
pub async fn find(tx: &mut Tx, tenant_id: Uuid, subject: &str) -> Result<Option<User>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 AND subject = $2");
    let row: Option<UserRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(tenant_id).bind(subject).fetch_optional(conn).await)?;
    Ok(row.map(User::from))
}

pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<User>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 AND id = $2");
    let row: Option<UserRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(tenant_id).bind(id).fetch_optional(conn).await)?;
    Ok(row.map(User::from))
}

pub async fn list(tx: &mut Tx, tenant_id: Uuid, page: &PageRequest) -> Result<Page<User>, TenancyError> {
    let (limit, after) = page.parse()?;
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    let rows: Vec<UserRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(tenant_id)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await)?;
    Ok(Page::from_rows(rows.into_iter().map(User::from).collect(), limit, |u| u.id))
}

pub async fn set_role(tx: &mut Tx, tenant_id: Uuid, id: Uuid, role: UserRole) -> Result<Option<User>, TenancyError> {
    let sql =
        concat!("UPDATE users SET role = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 RETURNING ", columns!());
    let row: Option<UserRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(role.as_str())
        .bind(OffsetDateTime::now_utc())
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(User::from))
}
