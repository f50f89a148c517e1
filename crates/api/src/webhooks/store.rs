//! The webhook tables' queries. Each takes the tenant (the isolation on SQLite; on PostgreSQL
//! row-level security checks it again). Secrets are read only by [`endpoint_secrets`], for the
//! sender; every other read leaves them out.

use palisade_store::{Page, PageRequest, Tx, on_tx};
use palisade_tenancy::TenancyError;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A webhook endpoint as the API shows it: never its secrets (except `secret`, set only in the
/// answers to create and rotate-secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    pub description: String,
    /// The event types delivered; empty means all (see `GET /webhooks/event-types`).
    pub event_types: Vec<String>,
    /// Disabled endpoints receive nothing (set by you, or by the server after repeated failures).
    pub enabled: bool,
    /// Deliveries in a row that failed every attempt.
    pub consecutive_failures: i32,
    /// Why the server disabled the endpoint, when it did.
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<OffsetDateTime>,
    /// While a rotated-out secret still signs alongside the current one: until when.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// The signing secret (`whsec_…`): only in the responses of create and rotate-secret. Store it;
    /// it cannot be read again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Incremented by every change; the `ETag` is derived from it.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl WebhookEndpoint {
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id.simple(), self.version)
    }
}

/// The row behind [`WebhookEndpoint`] (event types as stored JSON text).
#[derive(Debug, sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    url: String,
    description: String,
    event_types: String,
    enabled: bool,
    consecutive_failures: i32,
    disabled_reason: Option<String>,
    disabled_at: Option<OffsetDateTime>,
    previous_secret_expires_at: Option<OffsetDateTime>,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(row: EndpointRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types: parse_types(&row.event_types),
            enabled: row.enabled,
            consecutive_failures: row.consecutive_failures,
            disabled_reason: row.disabled_reason,
            disabled_at: row.disabled_at,
            previous_secret_expires_at: row.previous_secret_expires_at,
            secret: None,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub fn parse_types(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn types_json(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[]".to_owned())
}

macro_rules! endpoint_columns {
    () => {
        "id, url, description, event_types, enabled, consecutive_failures, disabled_reason, disabled_at, \
         previous_secret_expires_at, version, created_at, updated_at"
    };
}

/// What a new endpoint is made of (its secret included, hence no derived `Debug`).
pub struct NewEndpoint<'a> {
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: &'a [String],
    pub secret: &'a str,
}

impl std::fmt::Debug for NewEndpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint").field("description", &self.description).finish_non_exhaustive()
    }
}

pub async fn create(tx: &mut Tx, tenant_id: Uuid, new: &NewEndpoint<'_>) -> Result<WebhookEndpoint, TenancyError> {
    let now = OffsetDateTime::now_utc();
    let row: EndpointRow = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, enabled, secret, \
         consecutive_failures, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, true, $6, 0, 1, $7, $7) \
         RETURNING ",
        endpoint_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(new.url)
    .bind(new.description)
    .bind(types_json(new.event_types))
    .bind(new.secret)
    .bind(now)
    .fetch_one(conn)
    .await)?;
    Ok(row.into())
}

pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<WebhookEndpoint>, TenancyError> {
    let row: Option<EndpointRow> = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(conn)
    .await)?;
    Ok(row.map(Into::into))
}

/// Oldest first.
pub async fn list(tx: &mut Tx, tenant_id: Uuid, page: &PageRequest) -> Result<Page<WebhookEndpoint>, TenancyError> {
    let (limit, after) = page.parse()?;
    let rows: Vec<EndpointRow> = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant_id)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(conn)
    .await)?;
    Ok(Page::from_rows(rows.into_iter().map(Into::into).collect(), limit, |e: &WebhookEndpoint| e.id))
}

/// A partial update; absent fields stay as they are.
#[derive(Debug, Default)]
pub struct Changes {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum Conditional<T> {
    Done(T),
    Stale,
    NotFound,
}

/// Applies `changes` at `expected_version` (any when `None`). Enabling clears the failure run and
/// the reason the server disabled it.
pub async fn update(
    tx: &mut Tx,
    tenant_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
    changes: &Changes,
) -> Result<Conditional<WebhookEndpoint>, TenancyError> {
    let row: Option<EndpointRow> = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "UPDATE webhook_endpoints SET url = COALESCE($1, url), description = COALESCE($2, description), \
         event_types = COALESCE($3, event_types), enabled = COALESCE($4, enabled), \
         consecutive_failures = CASE WHEN $4 THEN 0 ELSE consecutive_failures END, \
         disabled_reason = CASE WHEN $4 THEN NULL ELSE disabled_reason END, \
         disabled_at = CASE WHEN $4 THEN NULL ELSE disabled_at END, \
         version = version + 1, updated_at = $5 \
         WHERE tenant_id = $6 AND id = $7 AND ($8 IS NULL OR version = $8) RETURNING ",
        endpoint_columns!()
    ))
    .bind(changes.url.as_deref())
    .bind(changes.description.as_deref())
    .bind(changes.event_types.as_deref().map(types_json))
    .bind(changes.enabled)
    .bind(OffsetDateTime::now_utc())
    .bind(tenant_id)
    .bind(id)
    .bind(expected_version)
    .fetch_optional(conn)
    .await)?;
    match row {
        Some(row) => Ok(Conditional::Done(row.into())),
        None => missing_or_stale(tx, tenant_id, id).await,
    }
}

/// Makes `secret` the current one; the current one keeps signing until `previous_expires_at`.
pub async fn rotate_secret(
    tx: &mut Tx,
    tenant_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
    secret: &str,
    previous_expires_at: OffsetDateTime,
) -> Result<Conditional<WebhookEndpoint>, TenancyError> {
    let row: Option<EndpointRow> = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $1, previous_secret_expires_at = $2, \
         version = version + 1, updated_at = $3 WHERE tenant_id = $4 AND id = $5 AND ($6 IS NULL OR version = $6) \
         RETURNING ",
        endpoint_columns!()
    ))
    .bind(secret)
    .bind(previous_expires_at)
    .bind(OffsetDateTime::now_utc())
    .bind(tenant_id)
    .bind(id)
    .bind(expected_version)
    .fetch_optional(conn)
    .await)?;
    match row {
        Some(row) => Ok(Conditional::Done(row.into())),
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
        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND ($3 IS NULL OR version = $3)"
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

/// A delivery: one outbox event for one endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// Also the `webhook-id` header of every attempt: deduplicate on it.
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The outbox event delivered.
    pub event_id: Uuid,
    #[schema(example = "todo.created")]
    pub event_type: String,
    /// `pending` (attempts remain), `succeeded` or `failed` (no attempt left, or endpoint disabled).
    #[schema(example = "succeeded")]
    pub status: String,
    /// HTTP attempts made so far.
    pub attempts: i32,
    /// The status code of the last attempt, when a response came back.
    pub last_status_code: Option<i32>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WebhookAttempt {
    /// 1 for the first attempt.
    pub attempt: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The response's status code; absent when none came back.
    pub status_code: Option<i32>,
    /// What happened, `delivered` (2xx), `rejected` (other status), `refused` (address not permitted), `timed_out`, `connect_failed`, `other`.
    pub outcome: String,
    pub duration_ms: i64,
    /// The beginning of the response body.
    pub response_excerpt: Option<String>,
}

/// A delivery with what was sent and every attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryDetail {
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The body sent (and signed) at every attempt.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Oldest first.
    pub attempt_log: Vec<WebhookAttempt>,
}

macro_rules! delivery_columns {
    () => {
        "id, endpoint_id, event_id, event_type, status, attempts, last_status_code, created_at, updated_at"
    };
}

/// An endpoint's deliveries, newest first, optionally of one status.
pub async fn deliveries(
    tx: &mut Tx,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    status: Option<&str>,
    page: &PageRequest,
) -> Result<Page<WebhookDelivery>, TenancyError> {
    let (limit, before) = page.parse()?;
    let fetch = i64::from(limit) + 1;
    let rows: Vec<WebhookDelivery> = match status {
        None => on_tx!(tx, |conn| sqlx::query_as(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(before)
        .bind(fetch)
        .fetch_all(conn)
        .await)?,
        Some(status) => on_tx!(tx, |conn| sqlx::query_as(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND status = $5 \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(before)
        .bind(fetch)
        .bind(status)
        .fetch_all(conn)
        .await)?,
    };
    Ok(Page::from_rows(rows, limit, |d| d.id))
}

pub async fn delivery(
    tx: &mut Tx,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    id: Uuid,
) -> Result<Option<WebhookDeliveryDetail>, TenancyError> {
    let row: Option<(String,)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT payload FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3"
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(conn)
    .await)?;
    let Some((payload,)) = row else { return Ok(None) };
    let delivery: WebhookDelivery = on_tx!(tx, |conn| sqlx::query_as(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_one(conn)
    .await)?;
    let attempt_log: Vec<WebhookAttempt> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT attempt, at, status_code, outcome, duration_ms, response_excerpt FROM webhook_attempts \
         WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt"
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_all(conn)
    .await)?;
    let payload = serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload));
    Ok(Some(WebhookDeliveryDetail { delivery, payload, attempt_log }))
}

/// Marks a delivery pending again (a redelivery was asked for); false when it does not exist.
pub async fn reopen(tx: &mut Tx, tenant_id: Uuid, endpoint_id: Uuid, id: Uuid) -> Result<bool, TenancyError> {
    let updated = on_tx!(tx, |conn| sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', updated_at = $1 \
         WHERE tenant_id = $2 AND endpoint_id = $3 AND id = $4"
    )
    .bind(OffsetDateTime::now_utc())
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(updated == 1)
}
