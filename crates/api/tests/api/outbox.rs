//! The transactional outbox (ADR 0007) on both backends: every committed write has exactly one
//! event, recorded with its audit row; a transaction that fails after its event was inserted keeps
//! neither the write nor the event.

use palisade_store::{Database, Tx, on_tx};
use palisade_tenancy::{outbox, session::bind_tenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Backend, send, spawn_app};

on_both_backends!(
    every_committed_write_has_exactly_one_event_matching_its_audit_row,
    a_transaction_failing_after_its_outbox_insert_keeps_neither_the_write_nor_the_event,
);

/// (type, resource id) of every event of `tenant`, and of every audit row, each sorted.
async fn events_and_audit(db: &Database, tenant: Uuid) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let mut tx = db.begin().await.unwrap();
    bind_tenant(&mut tx, tenant).await.unwrap();
    let events: Vec<(String, i32, String)> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT event_type, payload_version, payload FROM outbox_events WHERE tenant_id = $1"
    )
    .bind(tenant)
    .fetch_all(conn)
    .await)
    .unwrap();
    let audit: Vec<(String, String)> =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT action, resource_id FROM audit_events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(conn)
            .await)
        .unwrap();
    tx.commit().await.unwrap();
    let mut events: Vec<(String, String)> = events
        .into_iter()
        .map(|(kind, version, payload)| {
            assert_eq!(version, outbox::PAYLOAD_VERSION);
            let payload: Value = serde_json::from_str(&payload).unwrap();
            (kind, payload["resource"]["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut audit = audit;
    events.sort();
    audit.sort();
    (events, audit)
}

async fn every_committed_write_has_exactly_one_event_matching_its_audit_row(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.jobs.enabled = false).await else { return };
    let tenant: Uuid = app.create_tenant("outbox-a").await["id"].as_str().unwrap().parse().unwrap();
    let token = app.token(Some("outbox-a"), "alice", &["todos:read", "todos:write"]);
    let created = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": "one"}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let patched = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"done": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let etag = patched.headers()["etag"].to_str().unwrap().to_owned();
    let refused = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": ""}))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "a refused write records nothing");
    let deleted =
        app.client.delete(app.url(&location)).bearer_auth(&token).header("if-match", &etag).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let (events, audit) = events_and_audit(&app.state.db, tenant).await;
    let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    for expected in ["tenant.created", "user.provisioned", "todo.created", "todo.updated", "todo.deleted"] {
        assert_eq!(types.iter().filter(|t| **t == expected).count(), 1, "{expected} in {types:?}");
    }
    assert_eq!(events, audit, "one event per audited write");
    app.stop().await;
}

/// A write, its event, then a statement that fails: the handler's `?` drops the transaction.
async fn write_event_then_fail(tx: &mut Tx, tenant: Uuid, todo: Uuid) -> Result<(), sqlx::Error> {
    let creator: (Uuid,) = on_tx!(tx, |conn| sqlx::query_as("SELECT id FROM users WHERE tenant_id = $1 LIMIT 1")
        .bind(tenant)
        .fetch_one(conn)
        .await)?;
    let insert = "INSERT INTO todos (id, tenant_id, title, done, version, created_by, created_at, updated_at) \
                  VALUES ($1, $2, 'doomed', false, 1, $3, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')";
    on_tx!(tx, |conn| sqlx::query(insert).bind(todo).bind(tenant).bind(creator.0).execute(conn).await.map(drop))?;
    outbox::record(tx, tenant, "todo.created", &json!({"resource": {"type": "todo", "id": todo.to_string()}}))
        .await
        .expect("event recorded");
    // The same id again: a primary key violation, after the event was inserted.
    on_tx!(tx, |conn| sqlx::query(insert).bind(todo).bind(tenant).bind(creator.0).execute(conn).await.map(drop))?;
    Ok(())
}

async fn a_transaction_failing_after_its_outbox_insert_keeps_neither_the_write_nor_the_event(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.jobs.enabled = false).await else { return };
    let tenant: Uuid = app.create_tenant("outbox-b").await["id"].as_str().unwrap().parse().unwrap();
    let token = app.token(Some("outbox-b"), "bob", &["todos:read"]);
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &token, None).await.status(), StatusCode::OK);
    let (before, _) = events_and_audit(&app.state.db, tenant).await;

    let todo = Uuid::now_v7();
    let mut tx = app.state.db.begin().await.unwrap();
    bind_tenant(&mut tx, tenant).await.unwrap();
    let failed = write_event_then_fail(&mut tx, tenant, todo).await;
    assert!(failed.is_err(), "the second insert must fail");
    drop(tx);

    let (after, _) = events_and_audit(&app.state.db, tenant).await;
    assert_eq!(after, before, "the event of the failed transaction is gone");
    let mut tx = app.state.db.begin().await.unwrap();
    bind_tenant(&mut tx, tenant).await.unwrap();
    let todos: i64 = on_tx!(&mut tx, |conn| sqlx::query_scalar("SELECT count(*) FROM todos WHERE id = $1")
        .bind(todo)
        .fetch_one(conn)
        .await)
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(todos, 0, "the write of the failed transaction is gone");
    app.stop().await;
}
