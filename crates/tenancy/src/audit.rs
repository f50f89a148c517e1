//! The audit log: an append-only record of every write, inserted in the same transaction as the
//! write itself, so an event exists exactly when its change does.

use palisade_store::{Page, PageRequest, Tx, on_tx};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{RequestMeta, TenancyError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The subject that acted.
    pub actor: String,
    /// `<resource>.<verb>`, e.g. `todo.created`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What happened, to whom; who and from where come from the [`RequestMeta`].
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
}

/// Only [`crate::write::commit`] calls this: a write is audited where it is committed.
pub(crate) async fn record(
    tx: &mut Tx,
    tenant_id: Uuid,
    actor: &str,
    change: Change<'_>,
    meta: &RequestMeta,
) -> Result<(), TenancyError> {
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO audit_events \
         (id, tenant_id, actor, action, resource_type, resource_id, request_id, client_ip, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(actor)
    .bind(change.action)
    .bind(change.resource_type)
    .bind(change.resource_id)
    .bind(meta.request_id.as_deref())
    .bind(meta.client_ip.map(|ip| ip.to_string()))
    .bind(OffsetDateTime::now_utc())
    .execute(conn)
    .await
    .map(drop))?;
    Ok(())
}

/// Newest first.
pub async fn list(tx: &mut Tx, tenant_id: Uuid, page: &PageRequest) -> Result<Page<AuditEvent>, TenancyError> {
    let (limit, before) = page.parse()?;
    let rows: Vec<AuditEvent> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT id, tenant_id, actor, action, resource_type, resource_id, request_id, client_ip, created_at \
         FROM audit_events WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )
    .bind(tenant_id)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(conn)
    .await)?;
    Ok(Page::from_rows(rows, limit, |e| e.id))
}
