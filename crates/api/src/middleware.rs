//! The middleware stack, in one place so its order can be read and reasoned about.
//!
//! Outermost first (a request passes down this list, the response back up):
//!
//! 1. `request_id::assign` — every later layer, log line and problem body can name the request.
//! 2. `TraceLayer` — one span per request (request id, method, route, status, latency; tenant and
//!    user ids are recorded into it once known).
//! 3. `metrics::track` — sees the final status, including panics and timeouts turned into responses.
//! 4. `problem::normalize` — any error response leaves as problem+json with the request id.
//! 5. `CatchPanicLayer` — a panicking handler becomes a 500 problem; the server keeps serving.
//! 6. `TimeoutLayer` — a request running past `server.request_timeout` gets 503.
//! 7. `RequestBodyLimitLayer` — bodies over `server.body_limit_bytes` get 413.
//!
//! All are applied with `Router::layer`, which wraps each route (and the fallback) individually:
//! that is what lets the metrics and the trace span see the matched route template.

use std::{any::Any, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::StatusCode,
    middleware::{from_fn, from_fn_with_state},
    response::{IntoResponse, Response},
};
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, timeout::TimeoutLayer, trace::TraceLayer,
};
use tracing::{Span, field::Empty};

use palisade_ops::{Metrics, Problem, ServerConfig, metrics, problem, request_id, request_id::RequestId};

/// Applies the stack above to a router whose routes (and fallback) are all in place.
pub fn apply(router: Router, metrics: Arc<Metrics>, server: &ServerConfig) -> Router {
    router
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, server.request_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(problem::normalize))
        .layer(from_fn_with_state(metrics, metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(|response: &Response, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
                    tracing::info!("request finished");
                })
                .on_failure(()),
        )
        .layer(from_fn(request_id::assign))
}

/// The per-request span. Fields left `Empty` are filled in later by the auth and tenancy
/// extractors; ids only, never names, emails or tokens.
fn request_span(request: &Request) -> Span {
    let request_id = request.extensions().get::<RequestId>().map(RequestId::as_str).unwrap_or_default();
    let route = request.extensions().get::<MatchedPath>().map_or(metrics::UNMATCHED, MatchedPath::as_str);
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        route,
        status = Empty,
        latency_ms = Empty,
        tenant_id = Empty,
        user_id = Empty,
    )
}

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %message, "handler panicked");
    Problem::internal().into_response()
}
