//! The transactional outbox: the event of a write, inserted in the write's own transaction, so an
//! event exists exactly when its change does (no event for a rolled-back write, no committed write
//! without its event). [`crate::write::commit`] records one for every change, next to the audit
//! row; delivery (webhooks) reads the table afterwards. See ADR 0007.

use palisade_store::{Tx, on_tx};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{TenancyError, audit::Change};

/// The version of [`ChangePayload`]; bump it (and keep the old shape readable) when it changes.
pub const PAYLOAD_VERSION: i32 = 1;

/// What every write's event carries (payload version 1).
#[derive(Debug, Clone, Serialize)]
pub struct ChangePayload<'a> {
    pub resource: Resource<'a>,
    /// The subject that acted.
    pub actor: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resource<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub id: &'a str,
}

impl<'a> ChangePayload<'a> {
    pub fn of(change: &Change<'a>, actor: &'a str) -> Self {
        Self { resource: Resource { kind: change.resource_type, id: change.resource_id }, actor }
    }
}

/// Inserts event `event_type` of `tenant_id` with `payload` (schema [`PAYLOAD_VERSION`]) into
/// `tx`; returns the event's id.
pub async fn record(
    tx: &mut Tx,
    tenant_id: Uuid,
    event_type: &str,
    payload: &impl Serialize,
) -> Result<Uuid, TenancyError> {
    let id = Uuid::now_v7();
    let payload = serde_json::to_string(payload).map_err(|error| TenancyError::Event(error.to_string()))?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload_version, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(id)
    .bind(tenant_id)
    .bind(event_type)
    .bind(PAYLOAD_VERSION)
    .bind(payload)
    .bind(OffsetDateTime::now_utc())
    .execute(conn)
    .await
    .map(drop))?;
    Ok(id)
}
