//! The foundation: probes, metrics, problem+json errors, request ids, panics, and recovery of
//! readiness when a dependency goes away and comes back.

use std::time::Duration;

use crate::support::{Backend, proxy::Proxy, spawn_app, spawn_app_with};
use axum::{
    Router,
    routing::{get, post},
};
use palisade_api::{AppState, extract::ValidatedJson};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    health_answers_ok_without_touching_dependencies,
    ready_names_each_dependency_it_checked,
    every_error_is_problem_json_carrying_the_request_id,
    a_well_formed_request_id_is_kept_and_a_malformed_one_replaced,
    metrics_are_exported_with_route_templates_and_bounded_labels,
    a_panicking_handler_becomes_a_500_problem_and_the_server_keeps_serving,
    json_bodies_are_checked_for_type_syntax_shape_size_and_validity,
    redis_going_away_makes_the_instance_unready_until_it_returns,
);

async fn health_answers_ok_without_touching_dependencies(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let response = app.get("/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.json::<Value>().await.unwrap(), serde_json::json!({"status": "ok"}));
    app.stop().await;
}

async fn ready_names_each_dependency_it_checked(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let response = app.get("/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    match backend {
        Backend::Sqlite => assert!(body["checks"].get("redis").is_none(), "{body}"),
        Backend::Postgres => assert_eq!(body["checks"]["redis"], "ok"),
    }
    app.stop().await;
}

async fn every_error_is_problem_json_carrying_the_request_id(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    for (method, path, status) in [
        (reqwest::Method::GET, "/no/such/path", StatusCode::NOT_FOUND),
        (reqwest::Method::DELETE, "/health", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let response = app.client.request(method, app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status.as_u16());
        assert_eq!(body["request_id"], request_id.as_str());
        for member in ["type", "title", "detail"] {
            assert!(body[member].is_string(), "{member} missing in {body}");
        }
    }
    app.stop().await;
}

async fn a_well_formed_request_id_is_kept_and_a_malformed_one_replaced(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let kept = app.client.get(app.url("/nope")).header("x-request-id", "trace-123.abc").send().await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-123.abc");
    assert_eq!(kept.json::<Value>().await.unwrap()["request_id"], "trace-123.abc");
    let replaced =
        app.client.get(app.url("/health")).header("x-request-id", "<script>alert(1)</script>").send().await.unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "expected a generated uuid, got {id}");
    app.stop().await;
}

async fn metrics_are_exported_with_route_templates_and_bounded_labels(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.get("/health").await;
    for n in 0..50 {
        app.get(&format!("/random/{n}/{}", uuid::Uuid::new_v4())).await;
    }
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for name in palisade_ops::metrics::CONTRACT {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} not exported");
    }
    assert!(text.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 50"#), "{text}");
    assert!(!text.contains("/random/"), "a raw path leaked into a label");
    let pool = match backend {
        Backend::Postgres => palisade_store::POSTGRES_MAX_CONNECTIONS,
        Backend::Sqlite => palisade_store::sqlite_max_connections(),
    };
    assert!(text.contains(&format!("db_pool_max_connections {pool}")), "{text}");
    app.stop().await;
}

async fn panic_handler() -> &'static str {
    panic!("boom in a handler")
}

async fn a_panicking_handler_becomes_a_500_problem_and_the_server_keeps_serving(backend: Backend) {
    let extra: Router<AppState> = Router::new().route("/test/panic", get(panic_handler));
    let Some(app) = spawn_app_with(backend, extra, |_| {}).await else { return };
    let response = app.get("/test/panic").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert!(!body["detail"].as_str().unwrap().contains("boom"), "panic message leaked: {body}");
    assert!(body["request_id"].is_string());
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    app.stop().await;
}

#[derive(serde::Deserialize, validator::Validate)]
struct Echo {
    #[validate(length(min = 1, max = 10, message = "must be 1 to 10 characters"))]
    title: String,
}

async fn echo(ValidatedJson(echo): ValidatedJson<Echo>) -> String {
    echo.title
}

async fn json_bodies_are_checked_for_type_syntax_shape_size_and_validity(backend: Backend) {
    let extra: Router<AppState> = Router::new().route("/test/echo", post(echo));
    let Some(app) = spawn_app_with(backend, extra, |s| s.server.body_limit_bytes = 1024).await else { return };
    let send = |content_type: &'static str, body: String| {
        app.client.post(app.url("/test/echo")).header("content-type", content_type).body(body).send()
    };
    let ok = send("application/json", r#"{"title":"hi"}"#.into()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let cases = [
        ("text/plain", r#"{"title":"hi"}"#.to_owned(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("application/json", r#"{"title":"#.to_owned(), StatusCode::BAD_REQUEST),
        ("application/json", r#"{"name":"hi"}"#.to_owned(), StatusCode::UNPROCESSABLE_ENTITY),
        ("application/json", r#"{"title":"far too long a title"}"#.to_owned(), StatusCode::UNPROCESSABLE_ENTITY),
        ("application/json", format!(r#"{{"title":"{}"}}"#, "x".repeat(4096)), StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (content_type, body, status) in cases {
        let response = send(content_type, body).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
        assert!(problem["request_id"].is_string());
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert!(problem["errors"][0]["field"].is_string(), "no field errors: {problem}");
        }
    }
    let invalid: Value = send("application/json", r#"{"title":""}"#.into()).await.unwrap().json().await.unwrap();
    assert_eq!(invalid["errors"][0]["field"], "title");
    assert_eq!(invalid["errors"][0]["message"], "must be 1 to 10 characters");
    app.stop().await;
}

/// Polls /ready until it answers `status` (readiness results are cached for up to a second).
async fn wait_for_ready_status(app: &crate::support::TestApp, status: StatusCode) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.get("/ready").await;
        if response.status() == status {
            return response.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "/ready never answered {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn redis_going_away_makes_the_instance_unready_until_it_returns(backend: Backend) {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let proxy = Proxy::start(crate::support::proxy::host_port(&redis_url)).await;
    let proxied = crate::support::proxy::through(&redis_url, &proxy);
    let Some(app) = spawn_app(backend, |s| {
        s.redis.url = Some(proxied.into());
        s.redis.key_prefix = crate::support::unique_name("palisade-test");
        s.readiness.check_timeout = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    wait_for_ready_status(&app, StatusCode::OK).await;
    proxy.cut().await;
    let body = wait_for_ready_status(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_ne!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(body["detail"].as_str().unwrap().contains("redis"));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("redis_up 0"), "redis_up should be 0 while Redis is away");
    proxy.restore();
    wait_for_ready_status(&app, StatusCode::OK).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("redis_up 1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_makes_the_instance_unready_until_it_returns() {
    let Some(database) = crate::support::TestDatabase::create(Backend::Postgres).await else { return };
    let proxy = Proxy::start(crate::support::proxy::host_port(&database.url)).await;
    let mut settings = crate::support::settings_for(Backend::Postgres, &database).expect("settings");
    settings.database.url = crate::support::proxy::through(&database.url, &proxy).into();
    settings.readiness.check_timeout = Duration::from_millis(500);
    settings.database.acquire_timeout = Duration::from_millis(500);
    let app = crate::support::start(settings, Router::new(), Backend::Postgres, database).await;
    wait_for_ready_status(&app, StatusCode::OK).await;
    proxy.cut().await;
    let body = wait_for_ready_status(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_ne!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(app.get("/health").await.status(), StatusCode::OK, "liveness must not depend on the database");
    proxy.restore();
    wait_for_ready_status(&app, StatusCode::OK).await;
    app.stop().await;
}
