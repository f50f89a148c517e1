//! Webhooks end to end on both backends, against a real HTTP receiver on 127.0.0.1 (allow-listed
//! in the test settings): endpoint CRUD with the secret shown once and bad URLs refused, a write
//! delivered once and signed, secret rotation, retries with backoff on an injected clock,
//! auto-disable, the delivery log and redelivery, the per-tenant rate limit, tenant isolation,
//! and on PostgreSQL two replicas delivering each event exactly once.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode as AxumStatus},
    routing::post,
};
use palisade_api::{
    Settings, background,
    webhooks::relay,
};
use palisade_jobs::{Backoff, Clock, ManualClock, Queue, Runner, SystemClock};
use palisade_store::{Database, on_tx};
use palisade_tenancy::session::bind_tenant;
use palisade_webhooks::{SigningSecret, verify};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::support::{Backend, TestApp, create_todo, send, spawn_app};

const ADMIN: &[&str] = &["tenant:admin", "webhooks:read", "webhooks:write", "todos:read", "todos:write"];

on_both_backends!(
    endpoints_go_through_create_read_update_delete_and_the_secret_is_shown_once,
    unsafe_or_malformed_urls_and_unknown_event_types_are_refused_with_a_problem,
    a_todo_write_is_delivered_once_signed_with_the_endpoint_secret,
    during_a_rotation_both_secrets_sign_and_after_the_overlap_only_the_new_one,
    a_failed_attempt_is_retried_only_after_its_backoff,
    an_endpoint_failing_every_attempt_is_disabled_with_an_audit_row_and_an_event,
    the_delivery_log_lists_attempts_and_a_redelivery_makes_a_new_one,
    a_tenant_over_its_delivery_rate_is_deferred_without_counting_attempts,
    a_tenant_never_sees_another_tenants_endpoints_or_deliveries,
);

/// What the receiver got: the headers and body of each request.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Received {
    fn all(&self) -> Vec<(HeaderMap, Bytes)> {
        self.0.lock().unwrap().clone()
    }
}

/// A webhook receiver on 127.0.0.1:0 answering `status` (changeable while it runs).
struct Receiver {
    url: String,
    received: Received,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Self {
        let received = Received::default();
        let status = Arc::new(AtomicU16::new(200));
        let state = (received.clone(), status.clone());
        let app = Router::new()
            .route(
                "/hook",
                post(|State((received, status)): State<(Received, Arc<AtomicU16>)>, headers: HeaderMap, body: Bytes| async move {
                    received.0.lock().unwrap().push((headers, body));
                    (AxumStatus::from_u16(status.load(Ordering::SeqCst)).unwrap(), "receiver says hi")
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received, status }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn ids(&self) -> Vec<String> {
        self.received.all().iter().map(|(h, _)| h["webhook-id"].to_str().unwrap().to_owned()).collect()
    }
}

fn allow_loopback(settings: &mut Settings) {
    settings.jobs.enabled = false;
    settings.webhooks.allow_networks = vec!["127.0.0.0/8".parse().unwrap()];
}

/// The server's job handlers on a queue whose clock the test holds.
struct Jobs {
    queue: Queue,
    runner: Runner,
    clock: ManualClock,
    db: Database,
}

impl Jobs {
    fn new(app: &TestApp) -> Self {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        Self::with_clock(app, clock.clone(), Arc::new(clock))
    }

    fn with_clock(app: &TestApp, clock: ManualClock, source: Arc<dyn Clock>) -> Self {
        let settings = &app.state.settings;
        let jobs = &settings.jobs;
        let backoff = Backoff { base: jobs.backoff_base, max: jobs.backoff_max };
        let db = app.state.db.clone();
        let queue = Queue::new(db.clone(), source, backoff, jobs.max_attempts, jobs.job_timeout);
        let sender = Arc::new(background::sender(&settings.webhooks).unwrap());
        let registry = background::registry(&db, &queue, settings, sender, app.state.metrics.clone());
        let runner = Runner::new(queue.clone(), registry, jobs.clone(), app.state.metrics.clone());
        Self { queue, runner, clock, db }
    }

    /// Relays the outbox, then runs every job due now; returns how many ran.
    async fn run_due(&self) -> usize {
        relay::relay_once(&self.db, &self.queue).await.unwrap();
        let (_stop, stopped) = watch::channel(false);
        let mut ran = 0;
        while let Some(job) = self.queue.claim().await.unwrap() {
            self.runner.run(job, stopped.clone()).await;
            ran += 1;
        }
        ran
    }
}

async fn create_endpoint(app: &TestApp, token: &str, url: &str, types: &[&str]) -> Value {
    let body = json!({"url": url, "description": "test receiver", "event_types": types});
    let response = send(app, Method::POST, "/api/v1/webhooks", token, Some(body)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

fn secret_of(endpoint: &Value) -> SigningSecret {
    SigningSecret::parse(endpoint["secret"].as_str().unwrap()).unwrap()
}

fn verifies(secret: &SigningSecret, headers: &HeaderMap, body: &[u8], now: OffsetDateTime) -> bool {
    verify(secret, headers, body, now.unix_timestamp(), Duration::from_secs(300)).is_ok()
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = send(app, Method::GET, path, token, None).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.unwrap()
}

async fn endpoints_go_through_create_read_update_delete_and_the_secret_is_shown_once(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    app.create_tenant("hooks-crud").await;
    let token = app.token(Some("hooks-crud"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    let created = send(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &token,
        Some(json!({"url": receiver.url, "event_types": ["todo.created"]})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let endpoint: Value = created.json().await.unwrap();
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["event_types"], json!(["todo.created"]));

    let read = send(&app, Method::GET, &location, &token, None).await;
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    let read: Value = read.json().await.unwrap();
    assert!(read.get("secret").is_none(), "the secret is shown only once: {read}");
    let listed = get_json(&app, &token, "/api/v1/webhooks").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(listed["items"][0].get("secret").is_none());

    let patched = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"description": "renamed", "event_types": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!((patched["description"].as_str(), patched["event_types"].clone()), (Some("renamed"), json!([])));
    let stale = app.client.delete(app.url(&location)).bearer_auth(&token).header("if-match", &etag).send().await;
    assert_eq!(stale.unwrap().status(), StatusCode::PRECONDITION_FAILED);

    let types = get_json(&app, &token, "/api/v1/webhooks/event-types").await;
    assert!(types.as_array().unwrap().contains(&json!("todo.created")));

    let member = app.token(Some("hooks-crud"), "bob", &["webhooks:read", "webhooks:write"]);
    assert_eq!(send(&app, Method::GET, "/api/v1/webhooks", &member, None).await.status(), StatusCode::FORBIDDEN);

    assert_eq!(send(&app, Method::DELETE, &location, &token, None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(send(&app, Method::GET, &location, &token, None).await.status(), StatusCode::NOT_FOUND);

    let audit = get_json(&app, &token, "/api/v1/audit-events").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["webhook_endpoint.created", "webhook_endpoint.updated", "webhook_endpoint.deleted"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    app.stop().await;
}

async fn unsafe_or_malformed_urls_and_unknown_event_types_are_refused_with_a_problem(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    app.create_tenant("hooks-bad").await;
    let token = app.token(Some("hooks-bad"), "alice", ADMIN);
    for (url, says) in [
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://10.1.2.3/hook", "private"),
        ("http://[::1]/hook", "loopback"),
        ("ftp://example.com/hook", "scheme"),
        ("https://user:pw@example.com/hook", "password"),
        ("not a url", "not a valid URL"),
    ] {
        let response = send(&app, Method::POST, "/api/v1/webhooks", &token, Some(json!({"url": url}))).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/webhook-url-refused", "{url}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{url}: {problem}");
    }
    let unknown =
        json!({"url": "https://example.com/hook", "event_types": ["todo.created", "todo.exploded"]});
    let response = send(&app, Method::POST, "/api/v1/webhooks", &token, Some(unknown)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/validation-error");
    assert!(problem["detail"].as_str().unwrap().contains("todo.exploded"), "{problem}");
    let listed = get_json(&app, &token, "/api/v1/webhooks").await;
    assert_eq!(listed["items"], json!([]), "nothing refused was stored");
    app.stop().await;

    // Without the allow-list, loopback is refused too, and outside development plain http is.
    let Some(app) = spawn_app(backend, |s| s.jobs.enabled = false).await else { return };
    app.create_tenant("hooks-strict").await;
    let token = app.token(Some("hooks-strict"), "alice", ADMIN);
    let response =
        send(&app, Method::POST, "/api/v1/webhooks", &token, Some(json!({"url": "http://127.0.0.1:9/hook"}))).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("loopback"), "{problem}");
    app.stop().await;
}

async fn a_todo_write_is_delivered_once_signed_with_the_endpoint_secret(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    app.create_tenant("hooks-deliver").await;
    let token = app.token(Some("hooks-deliver"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    let endpoint = create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let jobs = Jobs::new(&app);
    let todo = create_todo(&app, &token, "ship webhooks").await;
    jobs.run_due().await;
    jobs.run_due().await;

    let received = receiver.received.all();
    assert_eq!(received.len(), 1, "one event, one delivery");
    let (headers, body) = &received[0];
    assert!(verifies(&secret_of(&endpoint), headers, body, jobs.clock.now()), "the signature verifies");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["type"], "todo.created");
    assert_eq!(payload["data"]["resource"], json!({"type": "todo", "id": todo["id"]}));
    assert_eq!(payload["data"]["actor"], "alice");
    assert!(OffsetDateTime::parse(payload["timestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).is_ok());

    let id = endpoint["id"].as_str().unwrap();
    let log = get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    let delivery = &log["items"][0];
    assert_eq!(delivery["id"].as_str().unwrap(), headers["webhook-id"].to_str().unwrap(), "webhook-id is the delivery id");
    assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_i64()), (Some("succeeded"), Some(1)));
    let detail =
        get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries/{}", delivery["id"].as_str().unwrap())).await;
    assert_eq!(detail["payload"], payload);
    assert_eq!(detail["attempt_log"][0]["status_code"], 200);
    assert_eq!(detail["attempt_log"][0]["outcome"], "delivered");
    assert_eq!(detail["attempt_log"][0]["response_excerpt"], "receiver says hi");

    let metrics = app.state.metrics.render();
    assert!(metrics.contains("webhook_deliveries_total{outcome=\"delivered\"} 1"), "{metrics}");
    assert!(metrics.contains("webhook_delivery_duration_seconds_count 1"), "{metrics}");

    jobs.run_due().await;
    assert_eq!(receiver.received.all().len(), 1, "relaying again delivers nothing again");
    let db = &app.state.db;
    let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert_eq!(background::purge_webhook_deliveries(db, an_hour_ago).await.unwrap(), 0, "recent ones are kept");
    let later = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    assert_eq!(background::purge_webhook_deliveries(db, later).await.unwrap(), 1, "expired ones are deleted");
    let log = get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(log["items"], json!([]));
    app.stop().await;
}

async fn during_a_rotation_both_secrets_sign_and_after_the_overlap_only_the_new_one(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    let tenant: Uuid = app.create_tenant("hooks-rotate").await["id"].as_str().unwrap().parse().unwrap();
    let token = app.token(Some("hooks-rotate"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    let endpoint = create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let rotated = send(&app, Method::POST, &format!("/api/v1/webhooks/{id}/rotate-secret"), &token, None).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.unwrap();
    let (old, new) = (secret_of(&endpoint), secret_of(&rotated));
    assert_ne!(old.expose(), new.expose());
    assert!(rotated["previous_secret_expires_at"].is_string());
    let read = get_json(&app, &token, &format!("/api/v1/webhooks/{id}")).await;
    assert!(read.get("secret").is_none());

    let jobs = Jobs::new(&app);
    create_todo(&app, &token, "during the overlap").await;
    jobs.run_due().await;
    let (headers, body) = receiver.received.all().remove(0);
    assert!(verifies(&old, &headers, &body, jobs.clock.now()), "the old secret still verifies");
    assert!(verifies(&new, &headers, &body, jobs.clock.now()), "the new secret verifies");

    jobs.clock.advance(time::Duration::hours(25));
    create_todo(&app, &token, "after the overlap").await;
    jobs.run_due().await;
    let (headers, body) = receiver.received.all().remove(1);
    assert!(!verifies(&old, &headers, &body, jobs.clock.now()), "the old secret no longer signs");
    assert!(verifies(&new, &headers, &body, jobs.clock.now()));

    let audit = send(&app, Method::GET, "/api/v1/audit-events", &token, None).await.text().await.unwrap();
    assert!(audit.contains("webhook_endpoint.secret_rotated"));
    let mut stored = audit;
    let mut tx = app.state.db.begin().await.unwrap();
    bind_tenant(&mut tx, tenant).await.unwrap();
    let mut rows: Vec<(String,)> =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT payload FROM jobs").fetch_all(conn).await).unwrap();
    let events: Vec<(String,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT payload FROM outbox_events WHERE tenant_id = $1"
    )
    .bind(tenant)
    .fetch_all(conn)
    .await)
    .unwrap();
    assert!(!events.is_empty());
    rows.extend(events);
    tx.commit().await.unwrap();
    stored.extend(rows.into_iter().map(|(p,)| p));
    for (_, body) in receiver.received.all() {
        stored.push_str(std::str::from_utf8(&body).unwrap());
    }
    for secret in [old.expose(), new.expose()] {
        assert!(!stored.contains(secret.as_str()), "a secret leaked into the audit log, a job or a payload");
    }
    assert!(!stored.contains("whsec_"));
    app.stop().await;
}

async fn a_failed_attempt_is_retried_only_after_its_backoff(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    app.create_tenant("hooks-retry").await;
    let token = app.token(Some("hooks-retry"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    receiver.answer(503);
    create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let jobs = Jobs::new(&app);
    create_todo(&app, &token, "flaky receiver").await;
    assert_eq!(jobs.run_due().await, 1);
    assert_eq!(receiver.received.all().len(), 1);
    // jobs.backoff_base is 10s: the retry is due between 5s and 10s later (jitter), never sooner.
    jobs.clock.advance(time::Duration::seconds(4));
    assert_eq!(jobs.run_due().await, 0, "not retried before its backoff");
    receiver.answer(200);
    jobs.clock.advance(time::Duration::seconds(6));
    assert_eq!(jobs.run_due().await, 1);
    let ids = receiver.ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "a retry keeps the webhook-id");
    app.stop().await;
}

async fn outbox_types(db: &Database, tenant: Uuid) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    bind_tenant(&mut tx, tenant).await.unwrap();
    let rows: Vec<(String,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT event_type FROM outbox_events WHERE tenant_id = $1 ORDER BY id"
    )
    .bind(tenant)
    .fetch_all(conn)
    .await)
    .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter().map(|(t,)| t).collect()
}

async fn an_endpoint_failing_every_attempt_is_disabled_with_an_audit_row_and_an_event(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| {
        allow_loopback(s);
        s.jobs.max_attempts = 2;
        s.webhooks.disable_after_failures = 2;
    })
    .await
    else {
        return;
    };
    let tenant = app.create_tenant("hooks-dead").await;
    let tenant: Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let token = app.token(Some("hooks-dead"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let endpoint =
        create_endpoint(&app, &token, &receiver.url, &["todo.created", "webhook_endpoint.disabled"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let jobs = Jobs::new(&app);
    create_todo(&app, &token, "first").await;
    jobs.run_due().await;
    jobs.clock.advance(time::Duration::seconds(10));
    jobs.run_due().await;
    let read = get_json(&app, &token, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!((read["enabled"].as_bool(), read["consecutive_failures"].as_i64()), (Some(true), Some(1)), "{read}");

    create_todo(&app, &token, "second").await;
    jobs.run_due().await;
    jobs.clock.advance(time::Duration::seconds(10));
    jobs.run_due().await;
    let read = get_json(&app, &token, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(read["enabled"], false, "{read}");
    assert_eq!(read["consecutive_failures"], 2);
    assert!(read["disabled_reason"].as_str().unwrap().contains("2 consecutive deliveries"), "{read}");
    assert!(read["disabled_at"].is_string());

    let audit = get_json(&app, &token, "/api/v1/audit-events").await;
    let disabled = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "webhook_endpoint.disabled");
    let disabled = disabled.expect("the disabling is audited");
    assert_eq!((disabled["actor"].as_str(), disabled["resource_id"].as_str()), (Some("system:webhooks"), Some(id)));
    assert!(outbox_types(&app.state.db, tenant).await.contains(&"webhook_endpoint.disabled".to_owned()));

    let before = receiver.received.all().len();
    create_todo(&app, &token, "while disabled").await;
    jobs.clock.advance(time::Duration::seconds(60));
    jobs.run_due().await;
    assert_eq!(receiver.received.all().len(), before, "a disabled endpoint receives nothing, its own disabling included");

    let failed = get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries?status=failed")).await;
    let failed = failed["items"].as_array().unwrap();
    assert!(failed.len() >= 2, "{failed:?}");
    assert!(failed.iter().all(|d| d["last_status_code"] == 500));

    let path = format!("/api/v1/webhooks/{id}");
    let enabled: Value =
        send(&app, Method::PATCH, &path, &token, Some(json!({"enabled": true}))).await.json().await.unwrap();
    assert_eq!((enabled["enabled"].as_bool(), enabled["consecutive_failures"].as_i64()), (Some(true), Some(0)));
    assert!(enabled["disabled_reason"].is_null() && enabled["disabled_at"].is_null(), "{enabled}");
    app.stop().await;
}

async fn the_delivery_log_lists_attempts_and_a_redelivery_makes_a_new_one(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| {
        allow_loopback(s);
        s.jobs.max_attempts = 2;
    })
    .await
    else {
        return;
    };
    app.create_tenant("hooks-log").await;
    let token = app.token(Some("hooks-log"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let endpoint = create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let jobs = Jobs::new(&app);
    create_todo(&app, &token, "logged").await;
    jobs.run_due().await;
    jobs.clock.advance(time::Duration::seconds(10));
    jobs.run_due().await;
    let log = get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries?status=failed")).await;
    let delivery_id = log["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}");
    let detail = get_json(&app, &token, &path).await;
    let codes: Vec<Value> = detail["attempt_log"].as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, [json!(500), json!(500)]);
    let pending = get_json(&app, &token, &format!("/api/v1/webhooks/{id}/deliveries?status=pending")).await;
    assert_eq!(pending["items"], json!([]));

    receiver.answer(200);
    let redeliver = send(&app, Method::POST, &format!("{path}/redeliver"), &token, None).await;
    assert_eq!(redeliver.status(), StatusCode::ACCEPTED);
    jobs.run_due().await;
    let detail = get_json(&app, &token, &path).await;
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["attempts"], 3);
    assert_eq!(detail["attempt_log"][2]["attempt"], 3);
    assert_eq!(detail["attempt_log"][2]["status_code"], 200);
    let ids = receiver.ids();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == delivery_id), "a redelivery keeps the webhook-id");
    let missing = send(&app, Method::POST, &format!("/api/v1/webhooks/{id}/deliveries/{}/redeliver", Uuid::now_v7()), &token, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn job_attempts(db: &Database) -> Vec<i32> {
    let mut tx = db.begin().await.unwrap();
    let rows: Vec<(i32,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT attempts FROM jobs WHERE kind = 'webhooks.deliver' ORDER BY id"
    )
    .fetch_all(conn)
    .await)
    .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter().map(|(a,)| a).collect()
}

async fn a_tenant_over_its_delivery_rate_is_deferred_without_counting_attempts(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| {
        allow_loopback(s);
        s.webhooks.tenant_rate_limit = 1;
    })
    .await
    else {
        return;
    };
    app.create_tenant("hooks-rate").await;
    let token = app.token(Some("hooks-rate"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let jobs = Jobs::new(&app);
    for n in 0..3 {
        create_todo(&app, &token, &format!("todo {n}")).await;
    }
    jobs.run_due().await;
    assert_eq!(receiver.received.all().len(), 1, "one delivery per second for this tenant");
    let mut windows = 1;
    while receiver.received.all().len() < 3 && windows < 10 {
        jobs.clock.advance(time::Duration::seconds(2));
        jobs.run_due().await;
        windows += 1;
        assert!(receiver.received.all().len() <= windows, "never more than one per window");
    }
    assert_eq!(receiver.received.all().len(), 3, "deferred deliveries are delivered later");
    assert_eq!(job_attempts(&app.state.db).await, [1, 1, 1], "a deferral does not count as an attempt");
    app.stop().await;
}

async fn a_tenant_never_sees_another_tenants_endpoints_or_deliveries(backend: Backend) {
    let Some(app) = spawn_app(backend, allow_loopback).await else { return };
    app.create_tenant("hooks-a").await;
    app.create_tenant("hooks-b").await;
    let a = app.token(Some("hooks-a"), "alice", ADMIN);
    let b = app.token(Some("hooks-b"), "bert", ADMIN);
    let receiver = Receiver::start().await;
    let endpoint = create_endpoint(&app, &a, &receiver.url, &["todo.created"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let jobs = Jobs::new(&app);
    create_todo(&app, &a, "tenant a only").await;
    create_todo(&app, &b, "tenant b has no endpoint").await;
    jobs.run_due().await;
    assert_eq!(receiver.received.all().len(), 1, "tenant b's write goes to no endpoint of tenant a");
    let log = get_json(&app, &a, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    let delivery = log["items"][0]["id"].as_str().unwrap();

    assert_eq!(get_json(&app, &b, "/api/v1/webhooks").await["items"], json!([]));
    for (method, path) in [
        (Method::GET, format!("/api/v1/webhooks/{id}")),
        (Method::PATCH, format!("/api/v1/webhooks/{id}")),
        (Method::DELETE, format!("/api/v1/webhooks/{id}")),
        (Method::POST, format!("/api/v1/webhooks/{id}/rotate-secret")),
        (Method::GET, format!("/api/v1/webhooks/{id}/deliveries")),
        (Method::GET, format!("/api/v1/webhooks/{id}/deliveries/{delivery}")),
        (Method::POST, format!("/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"enabled": false}));
        let response = send(&app, method.clone(), &path, &b, body).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let still = get_json(&app, &a, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(still["enabled"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_database_deliver_each_event_exactly_once() {
    let Some(app) = spawn_app(Backend::Postgres, |s| {
        allow_loopback(s);
        s.jobs.poll_interval = Duration::from_millis(20);
        s.webhooks.tenant_rate_limit = 10_000;
        s.rate_limit.enabled = false;
    })
    .await
    else {
        return;
    };
    app.create_tenant("hooks-replicas").await;
    let token = app.token(Some("hooks-replicas"), "alice", ADMIN);
    let receiver = Receiver::start().await;
    create_endpoint(&app, &token, &receiver.url, &["todo.created"]).await;
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let replicas = [
        Jobs::with_clock(&app, clock.clone(), Arc::new(SystemClock)),
        Jobs::with_clock(&app, clock, Arc::new(SystemClock)),
    ];
    const EVENTS: usize = 30;
    for n in 0..EVENTS {
        create_todo(&app, &token, &format!("replicated {n}")).await;
    }
    // Both relays at once, then both replicas' workers at once.
    let (first, second) =
        tokio::join!(relay::relay_once(&replicas[0].db, &replicas[0].queue), relay::relay_once(&replicas[1].db, &replicas[1].queue));
    assert_eq!(first.unwrap().deliveries + second.unwrap().deliveries, EVENTS as u64, "each event relayed once");
    let (_stop, stopped) = watch::channel(false);
    async fn work(jobs: &Jobs, stopped: watch::Receiver<bool>) {
        while let Some(job) = jobs.queue.claim().await.unwrap() {
            jobs.runner.run(job, stopped.clone()).await;
        }
    }
    tokio::join!(
        work(&replicas[0], stopped.clone()),
        work(&replicas[0], stopped.clone()),
        work(&replicas[1], stopped.clone()),
        work(&replicas[1], stopped.clone())
    );
    let ids = receiver.ids();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), EVENTS, "none missing");
    assert_eq!(ids.len(), EVENTS, "no duplicates");
    app.stop().await;
}
