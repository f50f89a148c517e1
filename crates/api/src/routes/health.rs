//! Probes and metrics. None of these are rate limited or authenticated; `/health` touches no
//! dependency so a slow database can never get a healthy pod killed.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use palisade_ops::{Problem, metrics};
use serde_json::json;

use crate::AppState;

/// Liveness: the process is up and serving. The body never changes, so it is not serialized
/// per request: probes come every few seconds from every kubelet and load balancer.
pub async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], r#"{"status":"ok"}"#)
}

/// Readiness: dependencies reachable and not shutting down.
pub async fn ready(State(state): State<AppState>) -> Response {
    let report = state.readiness.report().await;
    if report.is_ready() {
        return Json(json!({ "status": "ready", "checks": report.checks })).into_response();
    }
    let detail = if report.shutting_down {
        "The instance is shutting down.".to_owned()
    } else {
        format!("Not ready: {} unavailable.", report.failing().join(", "))
    };
    Problem::unavailable(detail)
        .with_extension("checks", serde_json::to_value(&report.checks).unwrap_or_default())
        .into_response()
}

/// Prometheus scrape endpoint.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.db.record_pool_metrics();
    metrics::exposition(&state.metrics)
}
