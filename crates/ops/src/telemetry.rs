//! Telemetry: logs, traces and error reports from one `tracing` subscriber.
//!
//! [`init`] installs the subscriber once per process and composes, each with its own filter:
//!
//! - the log output: pretty for people in development, JSON lines for machines elsewhere; `RUST_LOG`
//!   or `log.filter` choose what is printed. Every line inside a request carries the request span
//!   (`request_id`, `method`, `route`, `status`, `latency_ms`, `tenant_id`, `user_id`, and `trace_id`
//!   when OpenTelemetry is on);
//! - OpenTelemetry (feature `otel`), only when an OTLP endpoint is configured: the request span and
//!   its children are exported over OTLP/HTTP, continuing the caller's W3C trace;
//! - Sentry (feature `sentry`), only when a DSN is configured: log lines become breadcrumbs, errors
//!   outside requests become events, and the request span's tenant and user ids become tags (see
//!   [`crate::sentry`] for the client and the per-request hub).
//!
//! With neither endpoint nor DSN set, nothing but the log layer exists: no exporter, no propagator,
//! no background thread.

#[cfg(feature = "otel")]
mod otel;

use std::{io::IsTerminal, time::Duration};

use serde::{Deserialize, Serialize, Serializer};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

pub use crate::subscriber::ServiceInfo;
use crate::{redact, subscriber::BoxedLayer};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The level of the per-request access log line ("request finished").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RequestLogLevel {
    Info,
    Debug,
    /// No access log line at all (errors the server logs itself are still logged).
    Off,
}

/// The `[log]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` or `json`; unset means pretty in development and JSON elsewhere.
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
    /// The level of the access log line every request ends with.
    pub request_level: RequestLogLevel,
    /// Share of requests answered below 500 that get an access log line, 0.0–1.0; every 5xx is
    /// logged whatever this says. At thousands of requests a second one line each is most of the
    /// cost of a cheap request and most of the log bill.
    pub request_sample_rate: f64,
    /// Whether `/health`, `/ready` and `/metrics` get a request span and an access log line. Off:
    /// the kubelet and Prometheus call them every few seconds, and their metrics are counted anyway.
    pub access_log_probes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: None,
            filter: "info".to_owned(),
            request_level: RequestLogLevel::Info,
            request_sample_rate: 1.0,
            access_log_probes: false,
        }
    }
}

impl LogConfig {
    /// Every problem with this section.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.request_sample_rate) {
            problems.push("log.request_sample_rate must be between 0.0 and 1.0".to_owned());
        }
        problems
    }
}

/// The `[telemetry]` configuration section (OpenTelemetry tracing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`), e.g.
    /// `http://otel-collector:4318`; spans are posted to `{endpoint}/v1/traces`. Unset or empty:
    /// OpenTelemetry stays off entirely.
    #[serde(serialize_with = "optional_endpoint")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0.0–1.0. A caller's decision (the `traceparent` sampled flag)
    /// is always followed, so a trace is never recorded in one service and dropped in the next.
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Bound on each export request; a slow collector delays nothing but the export thread.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            service_name: "palisade".to_owned(),
            export_timeout: Duration::from_secs(5),
        }
    }
}

impl TelemetryConfig {
    /// The endpoint, when one is set (an empty value means unset, as the OpenTelemetry spec says).
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().map(str::trim).filter(|endpoint| !endpoint.is_empty())
    }

    /// Every problem with this section.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            problems.push("telemetry.sampling_ratio must be between 0.0 and 1.0".to_owned());
        }
        if self.service_name.trim().is_empty() {
            problems.push("telemetry.service_name must not be empty".to_owned());
        }
        if self.export_timeout.is_zero() {
            problems.push("telemetry.export_timeout must be greater than 0".to_owned());
        }
        if let Some(endpoint) = self.endpoint() {
            let valid = endpoint
                .parse::<http::Uri>()
                .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some());
            if !valid {
                problems.push(format!(
                    "telemetry.otlp_endpoint ({}) must be an http:// or https:// URL such as http://otel-collector:4318",
                    redact::redact_url(endpoint)
                ));
            }
            if !cfg!(feature = "otel") {
                problems.push(
                    "telemetry.otlp_endpoint is set but this build has no OpenTelemetry support (cargo feature `otel`)"
                        .to_owned(),
                );
            }
        }
        problems
    }
}

/// An endpoint can carry credentials in its userinfo; print it without them.
fn optional_endpoint<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(endpoint) => serializer.serialize_str(&redact::redact_url(endpoint)),
        None => serializer.serialize_none(),
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone, Copy)]
pub struct TelemetryOptions<'a> {
    pub log: &'a LogConfig,
    /// The format when `log.format` is unset (pretty in development, JSON elsewhere).
    pub default_format: LogFormat,
    pub telemetry: &'a TelemetryConfig,
    pub service: &'a ServiceInfo,
    /// Whether a Sentry DSN is configured: adds the layers feeding Sentry from `tracing`.
    pub sentry: bool,
}

/// Keeps the exporters alive; dropping it (or [`TelemetryGuard::shutdown`]) exports the spans
/// still buffered, within the export timeout, so the last requests before a shutdown are not lost.
#[must_use = "dropping the guard shuts telemetry down"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporters now.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.tracer.take() {
            otel::shutdown(&provider);
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the global subscriber. A second call (tests starting several servers) changes
/// nothing and returns an inert guard.
pub fn init(options: &TelemetryOptions<'_>) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&options.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let output: BoxedLayer = match options.log.format.unwrap_or(options.default_format) {
        // json-subscriber writes the same lines as tracing-subscriber's JSON format, but keeps a
        // span's fields as values: tracing-subscriber re-parses a span's JSON each time a field
        // is recorded on it and each time a line embeds it, which was most of an access log line.
        LogFormat::Json => json_subscriber::fmt::layer()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    #[cfg_attr(not(any(feature = "otel", feature = "sentry")), allow(unused_mut))]
    let mut layers = vec![output];
    let mut guard = TelemetryGuard::default();

    #[cfg(feature = "otel")]
    let otel_problem = match otel::pipeline(options.telemetry, options.service) {
        Ok(Some((layer, provider))) => {
            layers.push(layer);
            guard.tracer = Some(provider);
            None
        }
        Ok(None) => None,
        Err(problem) => Some(problem),
    };
    #[cfg(feature = "sentry")]
    if options.sentry {
        layers.extend(crate::sentry::tracing_layers());
    }

    if tracing_subscriber::registry().with(layers).try_init().is_err() {
        tracing::debug!("a global subscriber is already installed");
        // Not installed, so nothing would feed the exporter: stop it rather than leave a thread.
        guard.stop();
        return guard;
    }
    #[cfg(feature = "otel")]
    {
        if let Some(provider) = &guard.tracer {
            otel::activate(provider);
            tracing::info!(
                sampling_ratio = options.telemetry.sampling_ratio,
                service = %options.telemetry.service_name,
                "exporting traces over OTLP/HTTP"
            );
        }
        if let Some(problem) = otel_problem {
            tracing::warn!(%problem, "OpenTelemetry export is off");
        }
    }
    guard
}

/// Makes `span` (the request span, not yet entered) continue the caller's trace from the W3C
/// `traceparent`/`tracestate` headers of `request`, names it `METHOD /route` for trace viewers,
/// and records its `trace_id` so log lines can be joined to the trace. Does nothing unless
/// OpenTelemetry is exporting.
pub fn continue_trace<B>(span: &tracing::Span, request: &http::Request<B>) {
    #[cfg(feature = "otel")]
    otel::continue_trace(span, request);
    #[cfg(not(feature = "otel"))]
    let _ = (span, request);
}

/// Records the response status on the request span's OpenTelemetry attributes (a 5xx marks the
/// span as failed). Does nothing unless OpenTelemetry is exporting.
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    #[cfg(feature = "otel")]
    otel::record_status(span, status);
    #[cfg(not(feature = "otel"))]
    let _ = (span, status);
}

/// Adds the W3C trace context of the current span (`traceparent`, and `tracestate` when there is
/// one) to the headers of an outgoing request, so the callee's spans join this trace. Does nothing
/// unless OpenTelemetry is exporting.
pub fn inject_trace_context(headers: &mut http::HeaderMap) {
    #[cfg(feature = "otel")]
    otel::inject_trace_context(headers);
    #[cfg(not(feature = "otel"))]
    let _ = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_endpoint_means_off() {
        let config = TelemetryConfig { otlp_endpoint: Some("  ".to_owned()), ..Default::default() };
        assert_eq!(config.endpoint(), None);
        assert!(config.problems().is_empty());
    }

    #[test]
    fn a_bad_endpoint_or_ratio_is_a_problem_and_credentials_are_not_printed() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("collector:4318".to_owned()),
            sampling_ratio: 1.5,
            ..Default::default()
        };
        assert_eq!(config.problems().len(), 2, "{:?}", config.problems());
        let config =
            TelemetryConfig { otlp_endpoint: Some("ftp://u:hunter2@collector".to_owned()), ..Default::default() };
        let problems = config.problems().join("\n");
        assert!(problems.contains("otlp_endpoint") && !problems.contains("hunter2"), "{problems}");
    }
}
