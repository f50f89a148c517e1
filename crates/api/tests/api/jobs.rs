//! Background jobs in the running server (docs/jobs.md): the cleanup schedule and the webhook relay
//! run their jobs to completion, and each cleanup deletes what has expired and nothing else,
//! through the server's own (non-owner, row-level-secured) role on PostgreSQL.

use std::time::Duration;

use palisade_api::{
    background::{self, Log},
    data_rights::{export, purge},
};
use palisade_store::{Database, on_tx};
use palisade_tenancy::session::bind_tenant;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::{Backend, spawn_app};

on_both_backends!(
    the_server_runs_each_scheduled_cleanup_to_completion,
    the_cleanups_delete_what_has_expired_and_nothing_else
);

async fn job_statuses(db: &Database) -> Vec<(String, String)> {
    let mut tx = db.begin().await.expect("begin");
    let rows = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT kind, status FROM jobs WHERE kind LIKE 'cleanup.%' OR kind = 'tenant.purge' \
             UNION ALL SELECT DISTINCT kind, status FROM jobs WHERE kind = 'webhooks.relay' AND status = 'done' \
             ORDER BY 1"
    )
    .fetch_all(conn)
    .await)
    .expect("jobs");
    tx.commit().await.expect("commit");
    rows
}

async fn the_server_runs_each_scheduled_cleanup_to_completion(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.jobs.poll_interval = Duration::from_millis(50)).await else { return };
    let expected: Vec<(String, String)> = [
        background::PURGE_AUDIT_EVENTS,
        export::PURGE_EXPORTS,
        background::PURGE_FINISHED_JOBS,
        background::PURGE_IDEMPOTENCY_KEYS,
        background::PURGE_OUTBOX_EVENTS,
        background::PURGE_WEBHOOK_DELIVERIES,
        purge::PURGE_TENANTS,
        background::RELAY_WEBHOOKS,
    ]
    .map(|kind| (kind.to_owned(), "done".to_owned()))
    .to_vec();
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = job_statuses(&app.state.db).await;
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, expected);
    app.stop().await;
}

async fn insert_aged(db: &Database, tenant: Uuid, key: &str, at: OffsetDateTime) {
    let mut tx = db.begin().await.expect("begin");
    bind_tenant(&mut tx, tenant).await.expect("bind");
    on_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, etag, created_at) \
         VALUES ($1, $2, 'h', 201, '{}', NULL, $3)"
    )
    .bind(tenant)
    .bind(key)
    .bind(at)
    .execute(conn)
    .await
    .map(drop))
    .expect("idempotency key");
    on_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, actor, action, resource_type, resource_id, created_at) \
         VALUES ($1, $2, 'tester', 'todo.created', 'todo', $3, $4)"
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(key)
    .bind(at)
    .execute(conn)
    .await
    .map(drop))
    .expect("audit event");
    on_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload_version, payload, created_at) \
         VALUES ($1, $2, 'todo.created', 1, $3, $4)"
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(key)
    .bind(at)
    .execute(conn)
    .await
    .map(drop))
    .expect("outbox event");
    tx.commit().await.expect("commit");
}

async fn remaining(db: &Database, tenant: Uuid, table: &str) -> Vec<String> {
    let column = match table {
        "audit_events" => "resource_id",
        "outbox_events" => "payload",
        _ => "key",
    };
    let sql = format!("SELECT {column} FROM {table} WHERE tenant_id = $1 AND {column} LIKE 'aged-%' ORDER BY 1");
    let mut tx = db.begin().await.expect("begin");
    bind_tenant(&mut tx, tenant).await.expect("bind");
    let rows: Vec<(String,)> =
        on_tx!(&mut tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(tenant).fetch_all(conn).await)
            .expect("rows");
    tx.commit().await.expect("commit");
    rows.into_iter().map(|(v,)| v).collect()
}

async fn the_cleanups_delete_what_has_expired_and_nothing_else(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.jobs.enabled = false).await else { return };
    let mut tenants = Vec::new();
    for slug in ["retention-a", "retention-b"] {
        let tenant = app.create_tenant(slug).await;
        tenants.push(tenant["id"].as_str().expect("id").parse::<Uuid>().expect("uuid"));
    }
    let now = OffsetDateTime::now_utc();
    let db = &app.state.db;
    for tenant in &tenants {
        insert_aged(db, *tenant, "aged-old", now - time::Duration::days(40)).await;
        insert_aged(db, *tenant, "aged-recent", now - time::Duration::hours(23)).await;
    }
    assert_eq!(background::purge_idempotency_keys(db).await.expect("purge keys"), 2);
    let cutoff = now - time::Duration::days(30);
    assert_eq!(background::purge_log(db, Log::Audit, cutoff).await.expect("purge audit"), 2);
    assert_eq!(background::purge_log(db, Log::Outbox, cutoff).await.expect("purge outbox"), 2);
    for tenant in tenants {
        assert_eq!(remaining(db, tenant, "idempotency_keys").await, ["aged-recent"]);
        assert_eq!(remaining(db, tenant, "audit_events").await, ["aged-recent"]);
        assert_eq!(remaining(db, tenant, "outbox_events").await, ["aged-recent"]);
    }
    if let Ok(mut tx) = db.begin().await
        && let palisade_store::Tx::Postgres(conn) = &mut tx
    {
        // The owner's purge function deletes from the two logs only, whatever the server asks.
        let refused = sqlx::query("SELECT palisade_purge_log('todos', now())").execute(&mut **conn).await;
        assert!(refused.is_err(), "palisade_purge_log must refuse a table that is not a log");
    }
    app.stop().await;
}
