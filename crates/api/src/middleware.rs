//! The middleware stack, in one place so its order can be read and reasoned about.
//!
//! Outermost first (a request passes down this list, the response back up):
//!
//! 1. `SensitiveHeaders` — `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`
//!    and `X-API-Key` are marked sensitive, so whatever prints headers shows `Sensitive` and Sentry
//!    leaves them out.
//! 2. Request id: `request_id::Sanitize` drops a malformed incoming `x-request-id`, tower-http's
//!    `SetRequestIdLayer` keeps a well-formed one or makes a UUIDv7, and `PropagateRequestIdLayer`
//!    echoes it on the response — every later layer, log line and problem body can name the request.
//! 3. `Sentry::layer` (only when `sentry.dsn` is set) — sentry-tower's `SentryLayer` runs the request
//!    under its own Sentry hub and `SentryHttpLayer` attaches the request to its events; inside them
//!    the scope is tagged with the request id, route, tenant and user, and a 5xx that no panic or
//!    error log already reported is reported with the final, normalized status.
//! 4. `ClientIpResolver` — the client's address and scheme (`ResolvedClient`, which the `ClientIp` and
//!    `Https` extractors read) from the TCP peer, or from `X-Forwarded-For` /
//!    `X-Forwarded-Proto` only when that peer is a trusted proxy; before everything that needs the
//!    client's address or scheme (HSTS, the rate limiter, the audit log).
//! 5. `SecurityHeaders` — outside every layer that can answer on its own, so every response
//!    (errors, 404s, 429s, preflights, probes) carries the headers.
//! 6. `TraceLayer` — one span per request (request id, method, route, status, latency; tenant and
//!    user ids are recorded into it once known) and the access log line, as `[log]` configures
//!    them (`AccessLog`: probes left out by default, level and sampling). With OpenTelemetry
//!    exporting, the span continues the caller's W3C `traceparent` and records `trace_id`.
//! 7. `metrics::Track` — sees the final status, including panics and timeouts turned into responses.
//! 8. `AllowedOrigins` (strips stray CORS headers) + `CorsLayer` (when `cors.allowed_origins` is set) — preflights are
//!    answered here: counted, never rate limited, never reaching a handler. Outside the limiter and
//!    `normalize` so that 429s and other errors carry CORS headers and browser code can read them;
//!    a request from an origin not allowed gets no `Access-Control-*` header at all.
//! 9. `Compress` (tower-http's `CompressionLayer`, gzip and br, for requests that ask for either;
//!    bodies of `compression.min_size_bytes` or more) — outside
//!    `normalize`, which must read error bodies uncompressed.
//! 10. `problem::Normalize` — any error response leaves as problem+json with the request id.
//! 11. `HeadLimits` — a request line plus headers over `server.max_header_bytes`,
//!     or more than `server.max_header_count` fields, gets 431 here, inside `normalize` so the
//!     refusal has the shape of every other error (hyper's own, bare refusal is kept for heads
//!     twice as large).
//! 12. `rate_limit::LimitByClientIpLayer` — the `anonymous` policy per client address, before
//!     authentication (which runs in the handlers' extractors) and before any body is read; inside
//!     `normalize` so the 429 carries the request id. `/health`, `/ready` and `/metrics` are never
//!     limited. Leaves a `RateLimitRecord` in the request so the per-user policies the auth code
//!     applies report in the same `RateLimit` headers.
//! 13. `conditional::NotModified` — `If-None-Match` / `If-Modified-Since` on API reads: a 304
//!     without a body when the representation is unchanged, and a weak ETag for JSON reads that
//!     have none of their own; inside the limiter, so a 304 still spends the caller's budget.
//! 14. `CatchPanicLayer` — a panicking handler becomes a 500 problem; the server keeps serving.
//! 15. `TimeoutLayer` — a request running past `server.request_timeout` gets 503.
//! 16. `RequestBodyLimitLayer` — bodies over `server.body_limit_bytes` get 413.
//!
//! All are applied with one `Router::layer`, which wraps each route (and the fallback)
//! individually: that is what lets the metrics and the trace span see the matched route template.
//! They are composed into that one layer first (see [`apply`]), because each `Router::layer` call
//! costs every request a boxed clone per level. Our own layers are [`Hook`]s
//! (`palisade_ops::hook`), which box nothing per request, where `from_fn` boxes the inner service
//! and the future of every layer. The rate limiter, which awaits Redis before the handler, boxes
//! its future only for the requests it limits (not for the probes).

use std::{any::Any, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::Span;

use palisade_edge::{Edge, RateLimiter, rate_limit::LimitByClientIpLayer};

#[cfg(doc)]
use palisade_ops::hook::Hook;
use palisade_ops::{
    AccessLog, Metrics, Problem, ServerConfig, hook::HookLayer, metrics, problem, request_id,
    sensitive_headers::SensitiveHeaders, sentry::Sentry, server::HeadLimits,
};

/// Headers that carry credentials.
static SENSITIVE_HEADERS: [axum::http::HeaderName; 5] = [
    axum::http::header::AUTHORIZATION,
    axum::http::header::PROXY_AUTHORIZATION,
    axum::http::header::COOKIE,
    axum::http::header::SET_COOKIE,
    axum::http::HeaderName::from_static("x-api-key"),
];

/// Applies the stack above to a router whose routes (and fallback) are all in place.
///
/// The layers are composed with `ServiceBuilder` into one layer, applied with a single
/// `Router::layer` (Sentry's, when configured, is one boxed layer inside it). Each `Router::layer`
/// call boxes every route again, and a request clones its route's whole boxed stack at every level
/// it passes (axum's `Route` clones its service per call), so sixteen separate calls cost a
/// quadratic number of boxed clones per request: about 150,000 instructions of a
/// 163,000-instruction `/health` (`bench/instructions.sh`, docs/performance.md).
pub fn apply(
    router: Router,
    metrics: Arc<Metrics>,
    server: &ServerConfig,
    access_log: AccessLog,
    sentry: Option<Sentry>,
    edge: &Edge,
    rate_limiter: RateLimiter,
) -> Router {
    let (span_log, finish_log) = (access_log.clone(), access_log);
    let trace = TraceLayer::new_for_http()
        .make_span_with(move |request: &Request| span_log.span(request))
        .on_request(())
        .on_response(move |response: &Response, latency: Duration, span: &Span| {
            finish_log.finish(response, latency, span);
        })
        .on_failure(());
    let cors = edge.cors.as_ref().map(|cors| {
        ServiceBuilder::new().layer(HookLayer::new(cors.origins.clone())).layer(cors.layer.clone()).into_inner()
    });
    // Layers 4 to 16, outermost first.
    let per_route = ServiceBuilder::new()
        .layer(HookLayer::new(edge.client_ip.clone()))
        .layer(HookLayer::new(edge.security_headers.clone()))
        .layer(trace)
        .layer(HookLayer::new(metrics::Track(metrics)))
        .option_layer(cors)
        .option_layer(edge.compression.layer())
        .layer(HookLayer::new(problem::Normalize))
        .layer(HookLayer::new(HeadLimits::from(server)))
        .layer(LimitByClientIpLayer(rate_limiter))
        .layer(HookLayer::new(crate::routes::conditional::NotModified))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, server.request_timeout))
        // The timeout's own 503 needs a body type with a default; the body limit's has none.
        .map_response(IntoResponse::into_response as fn(Response<limit::ResponseBody<Body>>) -> Response)
        .layer(limit::RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(DefaultBodyLimit::max(server.body_limit_bytes));
    // Layers 1 to 3, then the rest, in one `Router::layer`.
    router.layer(
        ServiceBuilder::new()
            .layer(HookLayer::new(SensitiveHeaders(&SENSITIVE_HEADERS)))
            .layer(HookLayer::new(request_id::Sanitize))
            .layer(SetRequestIdLayer::new(request_id::HEADER.clone(), request_id::MakeRequestUuidV7))
            .layer(PropagateRequestIdLayer::new(request_id::HEADER.clone()))
            .option_layer(sentry.map(|sentry| sentry.layer()))
            .layer(per_route),
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
