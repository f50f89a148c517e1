//! OpenTelemetry: the OTLP/HTTP span exporter, W3C trace context in and out.
//!
//! The exporter runs on the SDK's batch thread with a blocking HTTP client, so exporting never
//! competes with request handling on the runtime and works the same before, during and after it.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::MatchedPath;
use opentelemetry::{
    KeyValue, global,
    trace::{Status, TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, filter::LevelFilter};

use super::TelemetryConfig;
use crate::{
    metrics::UNMATCHED,
    redact,
    subscriber::{BoxedLayer, ServiceInfo},
};

/// The path OTLP/HTTP receivers take traces on, appended to the base endpoint as the spec says.
const TRACES_PATH: &str = "/v1/traces";

/// Set once the exporter's layer is part of the global subscriber; until then every function here
/// returns at once, so a process without an endpoint does no OpenTelemetry work at all.
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The tracing layer and the provider behind it, when an endpoint is configured.
pub(super) fn pipeline(
    config: &TelemetryConfig,
    service: &ServiceInfo,
) -> Result<Option<(BoxedLayer, SdkTracerProvider)>, String> {
    let Some(endpoint) = config.endpoint() else {
        return Ok(None);
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(config.export_timeout)
        .build()
        .map_err(|error| error.to_string().replace(endpoint, &redact::redact_url(endpoint)))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", service.version.clone()),
            KeyValue::new("deployment.environment.name", service.environment.clone()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    // INFO and up: the request span and what handlers open inside it, not every dependency's
    // debug spans (those are for the log output, when RUST_LOG asks for them).
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO).boxed();
    Ok(Some((layer, provider)))
}

fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) { base.to_owned() } else { format!("{base}{TRACES_PATH}") }
}

pub(super) fn activate(provider: &SdkTracerProvider) {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    ACTIVE.store(true, Ordering::Release);
}

pub(super) fn shutdown(provider: &SdkTracerProvider) {
    ACTIVE.store(false, Ordering::Release);
    if let Err(error) = provider.shutdown() {
        tracing::warn!(%error, "flushing spans at shutdown failed");
    }
}

pub(super) fn continue_trace<B>(span: &tracing::Span, request: &http::Request<B>) {
    if !active() || span.is_disabled() {
        return;
    }
    let method = request.method().as_str();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str);
    span.record("otel.name", format!("{method} {route}").as_str());
    span.record("otel.kind", "server");
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(request.headers())));
    // Fails only when the span has already started, which a span fresh from `make_span` has not.
    let _ = span.set_parent(parent);
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

pub(super) fn record_status(span: &tracing::Span, status: http::StatusCode) {
    if !active() || span.is_disabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
}

pub(super) fn inject_trace_context(headers: &mut http::HeaderMap) {
    if !active() {
        return;
    }
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut HeaderInjector(headers)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{LogConfig, LogFormat, TelemetryOptions, init, inject_trace_context};

    /// The only test here that installs the global subscriber: everything about OpenTelemetry
    /// being off and then on happens in this one, in order.
    #[test]
    fn outgoing_requests_carry_the_current_trace_once_an_exporter_is_configured() {
        let span = tracing::info_span!("outgoing");
        let mut headers = http::HeaderMap::new();
        span.in_scope(|| inject_trace_context(&mut headers));
        assert!(headers.is_empty(), "nothing is injected while OpenTelemetry is off");

        // Port 9 (discard): nothing listens, and the test never waits for an export.
        let telemetry = TelemetryConfig { otlp_endpoint: Some("http://127.0.0.1:9".to_owned()), ..Default::default() };
        let service = ServiceInfo { name: "palisade".into(), version: "0".into(), environment: "test".into() };
        let guard = init(&TelemetryOptions {
            log: &LogConfig { filter: "off".to_owned(), ..Default::default() },
            default_format: LogFormat::Pretty,
            telemetry: &telemetry,
            service: &service,
            sentry: false,
        });
        let span = tracing::info_span!("outgoing");
        span.in_scope(|| inject_trace_context(&mut headers));
        let trace_id = span.context().span().span_context().trace_id();
        let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent:?}");
        drop(span);
        drop(guard);
    }

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
