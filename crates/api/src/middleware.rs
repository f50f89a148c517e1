//! The middleware stack, in one place so its order can be read and reasoned about.
//!
//! Outermost first (a request passes down this list, the response back up):
//!
//! 1. `SetSensitiveHeadersLayer` — `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`
//!    and `X-API-Key` are marked sensitive, so whatever prints headers shows `Sensitive` and Sentry
//!    leaves them out.
//! 2. `request_id::assign` — every later layer, log line and problem body can name the request.
//! 3. `sentry::report` (only when `sentry.dsn` is set) — the request runs under its own Sentry hub
//!    tagged with the request id, route, tenant and user; a 5xx that no panic or error log already
//!    reported is reported with the final, normalized status.
//! 4. `client_ip::resolve` — `ClientIp` and `Https` from the TCP peer, or from `X-Forwarded-For` /
//!    `X-Forwarded-Proto` only when that peer is a trusted proxy; before everything that needs the
//!    client's address or scheme (HSTS, the rate limiter, the audit log).
//! 5. `security_headers::add` — outside every layer that can answer on its own, so every response
//!    (errors, 404s, 429s, preflights, probes) carries the headers.
//! 6. `TraceLayer` — one span per request (request id, method, route, status, latency; tenant and
//!    user ids are recorded into it once known). With OpenTelemetry exporting, the span continues
//!    the caller's W3C `traceparent` and records `trace_id`.
//! 7. `metrics::track` — sees the final status, including panics and timeouts turned into responses.
//! 8. `cors::strip_disallowed` + `CorsLayer` (when `cors.allowed_origins` is set) — preflights are
//!    answered here: counted, never rate limited, never reaching a handler. Outside the limiter and
//!    `normalize` so that 429s and other errors carry CORS headers and browser code can read them;
//!    a request from an origin not allowed gets no `Access-Control-*` header at all.
//! 9. `CompressionLayer` (gzip, br; bodies of `compression.min_size_bytes` or more) — outside
//!    `normalize`, which must read error bodies uncompressed.
//! 10. `problem::normalize` — any error response leaves as problem+json with the request id.
//! 11. `server::limit_request_head` — a request line plus headers over `server.max_header_bytes`,
//!     or more than `server.max_header_count` fields, gets 431 here, inside `normalize` so the
//!     refusal has the shape of every other error (hyper's own, bare refusal is kept for heads
//!     twice as large).
//! 12. `rate_limit::limit_by_client_ip` — the `anonymous` policy per client address, before
//!     authentication (which runs in the handlers' extractors) and before any body is read; inside
//!     `normalize` so the 429 carries the request id. `/health`, `/ready` and `/metrics` are never
//!     limited. Leaves a `RateLimitRecord` in the request so the per-user policies the auth code
//!     applies report in the same `RateLimit` headers.
//! 13. `CatchPanicLayer` — a panicking handler becomes a 500 problem; the server keeps serving.
//! 14. `TimeoutLayer` — a request running past `server.request_timeout` gets 503.
//! 15. `RequestBodyLimitLayer` — bodies over `server.body_limit_bytes` get 413.
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
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, sensitive_headers::SetSensitiveHeadersLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};
use tracing::{Span, field::Empty};

use palisade_edge::{Edge, RateLimiter, client_ip, cors, rate_limit, security_headers};

use palisade_ops::{
    Metrics, Problem, ServerConfig, metrics, problem, request_id,
    request_id::RequestId,
    sentry,
    sentry::Sentry,
    server::{self, HeadLimits},
    telemetry,
};

/// Headers that carry credentials.
const SENSITIVE_HEADERS: [axum::http::HeaderName; 5] = [
    axum::http::header::AUTHORIZATION,
    axum::http::header::PROXY_AUTHORIZATION,
    axum::http::header::COOKIE,
    axum::http::header::SET_COOKIE,
    axum::http::HeaderName::from_static("x-api-key"),
];

/// Applies the stack above to a router whose routes (and fallback) are all in place.
pub fn apply(
    router: Router,
    metrics: Arc<Metrics>,
    server: &ServerConfig,
    sentry: Option<Sentry>,
    edge: &Edge,
    rate_limiter: RateLimiter,
) -> Router {
    let router = router
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, server.request_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(rate_limiter, rate_limit::limit_by_client_ip))
        .layer(from_fn_with_state(HeadLimits::from(server), server::limit_request_head))
        .layer(from_fn(problem::normalize));
    let router = match edge.compression.layer() {
        Some(compression) => router.layer(compression),
        None => router,
    };
    let router = match &edge.cors {
        Some(cors) => {
            router.layer(cors.layer.clone()).layer(from_fn_with_state(cors.origins.clone(), cors::strip_disallowed))
        }
        None => router,
    };
    let router = router
        .layer(from_fn_with_state(metrics, metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(|response: &Response, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
                    telemetry::record_status(span, response.status());
                    tracing::info!("request finished");
                })
                .on_failure(()),
        )
        .layer(from_fn_with_state(edge.security_headers.clone(), security_headers::add))
        .layer(from_fn_with_state(edge.client_ip.clone(), client_ip::resolve));
    let router = match sentry {
        Some(sentry) => router.layer(from_fn_with_state(sentry, sentry::report)),
        None => router,
    };
    router.layer(from_fn(request_id::assign)).layer(SetSensitiveHeadersLayer::new(SENSITIVE_HEADERS))
}

/// The per-request span. Fields left `Empty` are filled in later by the auth and tenancy
/// extractors; ids only, never names, emails or tokens. `trace_id` and the `otel.*` fields are
/// recorded only while OpenTelemetry is exporting.
fn request_span(request: &Request) -> Span {
    let request_id = request.extensions().get::<RequestId>().map(RequestId::as_str).unwrap_or_default();
    let route = request.extensions().get::<MatchedPath>().map_or(metrics::UNMATCHED, MatchedPath::as_str);
    let span = tracing::info_span!(
        telemetry::REQUEST_SPAN,
        request_id,
        method = %request.method(),
        route,
        status = Empty,
        latency_ms = Empty,
        tenant_id = Empty,
        user_id = Empty,
        trace_id = Empty,
        "otel.name" = Empty,
        "otel.kind" = Empty,
    );
    telemetry::continue_trace(&span, request);
    span
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
