//! The relay: outbox events → deliveries. Each pass visits the tenants one by one (on PostgreSQL
//! under that tenant's `app.tenant_id`, as row-level security requires), takes the tenant's
//! un-relayed events with `FOR UPDATE SKIP LOCKED` (so two relays running at once take different
//! events), and in that one transaction inserts one delivery per matching enabled endpoint, its
//! `webhooks.deliver` job, and marks the events relayed. A crash anywhere rolls all of it back:
//! an event is relayed exactly once, and every delivery has its job.

use std::time::Duration;

use palisade_jobs::Queue;
use palisade_store::{Backend, Database, Tx, on_tx};
use palisade_tenancy::session::bind_tenant;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use super::{WebhooksError, store::parse_types};

/// The job kind that delivers one delivery.
pub const DELIVER: &str = "webhooks.deliver";
/// The scheduled job kind that runs one relay pass.
pub const RELAY: &str = "webhooks.relay";

/// Events taken per tenant per transaction.
const BATCH: i64 = 100;

/// A `webhooks.deliver` job's payload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DeliverJob {
    pub tenant_id: Uuid,
    pub delivery_id: Uuid,
}

/// The key of a delivery's job: one job per delivery, whoever enqueues it.
pub fn deliver_key(delivery_id: Uuid) -> String {
    format!("{DELIVER}:{delivery_id}")
}

/// What one pass did, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pass {
    /// Events marked relayed.
    pub events: u64,
    /// Deliveries created.
    pub deliveries: u64,
    /// How long the oldest event relayed had waited (zero when none).
    pub oldest_wait: Duration,
}

#[derive(Debug, sqlx::FromRow)]
struct Event {
    id: Uuid,
    event_type: String,
    payload: String,
    created_at: OffsetDateTime,
}

#[derive(Debug, sqlx::FromRow)]
struct Target {
    id: Uuid,
    event_types: String,
    created_at: OffsetDateTime,
}

/// The body sent for an event, as Standard Webhooks recommends: its type, when it happened, and
/// its data (the outbox payload).
pub fn body(event_type: &str, at: OffsetDateTime, payload: &str) -> String {
    let data = serde_json::from_str(payload).unwrap_or_else(|_| serde_json::Value::String(payload.to_owned()));
    let timestamp = at.format(&Rfc3339).unwrap_or_default();
    serde_json::json!({ "type": event_type, "timestamp": timestamp, "data": data }).to_string()
}

/// Relays every tenant's pending events.
pub async fn relay_once(db: &Database, queue: &Queue) -> Result<Pass, WebhooksError> {
    let mut tx = db.begin_read().await?;
    let tenants: Vec<(Uuid,)> =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT id FROM tenants ORDER BY id").fetch_all(conn).await)
            .map_err(|e| db.observe(e))?;
    tx.commit().await?;
    let mut pass = Pass::default();
    for (tenant,) in tenants {
        loop {
            let (taken, more) = relay_tenant(db, queue, tenant, &mut pass).await?;
            if !more || taken == 0 {
                break;
            }
        }
    }
    Ok(pass)
}

/// One batch of one tenant; returns how many events it took and whether the batch was full.
async fn relay_tenant(
    db: &Database,
    queue: &Queue,
    tenant: Uuid,
    pass: &mut Pass,
) -> Result<(u64, bool), WebhooksError> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let select = format!(
        "SELECT id, event_type, payload, created_at FROM outbox_events \
         WHERE tenant_id = $1 AND relayed_at IS NULL ORDER BY id LIMIT $2{lock}"
    );
    let mut tx = db.begin().await?;
    bind_tenant(&mut tx, tenant).await?;
    let events: Vec<Event> = on_tx!(&mut tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(select.as_str()))
        .bind(tenant)
        .bind(BATCH)
        .fetch_all(conn)
        .await)
    .map_err(|e| db.observe(e))?;
    if events.is_empty() {
        tx.commit().await?;
        return Ok((0, false));
    }
    let targets: Vec<Target> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT id, event_types, created_at FROM webhook_endpoints WHERE tenant_id = $1 AND enabled ORDER BY id"
    )
    .bind(tenant)
    .fetch_all(conn)
    .await)
    .map_err(|e| db.observe(e))?;
    let now = queue.now();
    for event in &events {
        let body = body(&event.event_type, event.created_at, &event.payload);
        for target in &targets {
            let types = parse_types(&target.event_types);
            // An endpoint receives what happens after it exists, of the types it asked for.
            let wanted = types.is_empty() || types.contains(&event.event_type);
            if !wanted || target.created_at > event.created_at {
                continue;
            }
            if let Some(delivery_id) = insert_delivery(&mut tx, tenant, target.id, event, &body, now).await? {
                let job = DeliverJob { tenant_id: tenant, delivery_id };
                queue.enqueue_in(&mut tx, DELIVER, &deliver_key(delivery_id), &job, now).await?;
                pass.deliveries += 1;
            }
        }
        on_tx!(&mut tx, |conn| sqlx::query(
            "UPDATE outbox_events SET relayed_at = $1 WHERE tenant_id = $2 AND id = $3"
        )
        .bind(now)
        .bind(tenant)
        .bind(event.id)
        .execute(conn)
        .await
        .map(drop))
        .map_err(|e| db.observe(e))?;
        let waited = (OffsetDateTime::now_utc() - event.created_at).try_into().unwrap_or(Duration::ZERO);
        pass.oldest_wait = pass.oldest_wait.max(waited);
    }
    tx.commit().await?;
    let taken = events.len() as u64;
    pass.events += taken;
    Ok((taken, i64::try_from(taken).unwrap_or(i64::MAX) >= BATCH))
}

/// Inserts the delivery of `event` to `endpoint` unless there is one; returns its id when new.
async fn insert_delivery(
    tx: &mut Tx,
    tenant: Uuid,
    endpoint: Uuid,
    event: &Event,
    body: &str,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, WebhooksError> {
    let id = Uuid::now_v7();
    let added = on_tx!(tx, |conn| {
        sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, payload, status, attempts, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
         ON CONFLICT (endpoint_id, event_id) DO NOTHING"
    )
    .bind(id)
    .bind(tenant)
    .bind(endpoint)
    .bind(event.id)
    .bind(&event.event_type)
    .bind(body)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok((added == 1).then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_wraps_the_event_data_with_its_type_and_time() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let body: serde_json::Value =
            serde_json::from_str(&body("todo.created", at, r#"{"resource":{"type":"todo","id":"x"}}"#)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"type": "todo.created", "timestamp": "2023-11-14T22:13:20Z",
                "data": {"resource": {"type": "todo", "id": "x"}}})
        );
    }
}
