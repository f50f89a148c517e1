//! The example resource: what a real tenant-scoped resource looks like end to end. Rename it and
//! keep its habits: every query takes the tenant, writes bump a version that is the ETag, and each
//! write appends an audit event in the same transaction.

use palisade_store::{Page, PageRequest, Tx, on_tx};
use palisade_tenancy::TenancyError;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub done: bool,
    /// Incremented by every change; the `ETag` is derived from it.
    pub version: i64,
    /// The user (in this tenant) who created it.
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl Todo {
    /// A strong validator: the id and version identify this exact representation.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id.simple(), self.version)
    }
}

/// A partial update; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub title: Option<String>,
    pub done: Option<bool>,
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum Conditional<T> {
    Done(T),
    /// The todo changed since the version the client had (`If-Match` failed).
    Stale,
    NotFound,
}

const COLUMNS: &str = "id, title, done, version, created_by, created_at, updated_at";

pub async fn create(tx: &mut Tx, tenant_id: Uuid, title: &str, created_by: Uuid) -> Result<Todo, TenancyError> {
    let now = OffsetDateTime::now_utc();
    let sql = format!(
        "INSERT INTO todos (id, tenant_id, title, done, version, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, false, 1, $4, $5, $5) RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(title)
        .bind(created_by)
        .bind(now)
        .fetch_one(conn)
        .await)?)
}

pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<Todo>, TenancyError> {
    let sql = format!("SELECT {COLUMNS} FROM todos WHERE tenant_id = $1 AND id = $2");
    Ok(on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(id).fetch_optional(conn).await)?)
}

pub async fn list(
    tx: &mut Tx,
    tenant_id: Uuid,
    done: Option<bool>,
    page: &PageRequest,
) -> Result<Page<Todo>, TenancyError> {
    let (limit, after) = page.parse()?;
    let sql = format!(
        "SELECT {COLUMNS} FROM todos WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) AND ($3 IS NULL OR done = $3) \
         ORDER BY id LIMIT $4"
    );
    let rows: Vec<Todo> = on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(after)
        .bind(done)
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await)?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

/// Applies `changes` if the todo is still at `expected_version` (any version when `None`).
/// The version check is in the UPDATE itself, so of two concurrent writers with the same ETag
/// exactly one succeeds.
pub async fn update(
    tx: &mut Tx,
    tenant_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
    changes: &Changes,
) -> Result<Conditional<Todo>, TenancyError> {
    let sql = format!(
        "UPDATE todos SET title = COALESCE($1, title), done = COALESCE($2, done), version = version + 1, updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5 AND ($6 IS NULL OR version = $6) RETURNING {COLUMNS}"
    );
    let updated: Option<Todo> = on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(changes.title.as_deref())
        .bind(changes.done)
        .bind(OffsetDateTime::now_utc())
        .bind(tenant_id)
        .bind(id)
        .bind(expected_version)
        .fetch_optional(conn)
        .await)?;
    match updated {
        Some(todo) => Ok(Conditional::Done(todo)),
        None => missing_or_stale(tx, tenant_id, id).await,
    }
}

pub async fn delete(
    tx: &mut Tx,
    tenant_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<Conditional<()>, TenancyError> {
    let deleted = on_tx!(tx, |conn| sqlx::query(
        "DELETE FROM todos WHERE tenant_id = $1 AND id = $2 AND ($3 IS NULL OR version = $3)"
    )
    .bind(tenant_id)
    .bind(id)
    .bind(expected_version)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if deleted == 1 { Ok(Conditional::Done(())) } else { missing_or_stale(tx, tenant_id, id).await }
}

async fn missing_or_stale<T>(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Conditional<T>, TenancyError> {
    Ok(if get(tx, tenant_id, id).await?.is_some() { Conditional::Stale } else { Conditional::NotFound })
}
