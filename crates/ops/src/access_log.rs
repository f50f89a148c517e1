//! The request span and the access log line every request ends with, as `[log]` configures them:
//! probes left out by default, the line's level chosen, and successful requests sampled (every
//! 5xx is logged). At a few thousand requests a second the line is most of what a cheap request
//! costs, and most of the log bill.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{MatchedPath, Request},
    response::Response,
};
use tracing::{Span, field::Empty};

use crate::{
    metrics::UNMATCHED,
    request_id::RequestId,
    subscriber::REQUEST_SPAN,
    telemetry::{self, LogConfig, RequestLogLevel},
};

/// The operational endpoints: called every few seconds by the kubelet and Prometheus, never rate
/// limited, and not access-logged unless `log.access_log_probes` is set.
pub const PROBE_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Decides, per request, whether there is a span and an access log line. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    level: RequestLogLevel,
    probes: bool,
    sampler: Arc<Sampler>,
}

impl AccessLog {
    pub fn new(config: &LogConfig) -> Self {
        Self {
            level: config.request_level,
            probes: config.access_log_probes,
            sampler: Arc::new(Sampler::new(config.request_sample_rate)),
        }
    }

    /// The per-request span, or none for a probe that is not logged. Fields left `Empty` are
    /// recorded later: status and latency here, tenant and user ids by the extractors once they
    /// know them, the OpenTelemetry ones only while exporting. Ids only, never names, emails or
    /// tokens.
    pub fn span(&self, request: &Request) -> Span {
        if !self.probes && PROBE_PATHS.contains(&request.uri().path()) {
            return Span::none();
        }
        let request_id = RequestId::from_extensions(request.extensions());
        let request_id = request_id.as_ref().map(RequestId::as_str).unwrap_or_default();
        let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str);
        let span = tracing::info_span!(
            REQUEST_SPAN,
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

    /// Records the outcome on the span and writes the access log line when this request gets one.
    pub fn finish(&self, response: &Response, latency: Duration, span: &Span) {
        if span.is_none() {
            return;
        }
        let status = response.status();
        // In one call: the JSON format serializes a span's fields again on every record.
        tracing::record_all!(span, status = status.as_u16(), latency_ms = latency.as_secs_f64() * 1000.0);
        telemetry::record_status(span, status);
        if !(status.is_server_error() || self.sampler.take()) {
            return;
        }
        match self.level {
            RequestLogLevel::Info => tracing::info!(parent: span, "request finished"),
            RequestLogLevel::Debug => tracing::debug!(parent: span, "request finished"),
            RequestLogLevel::Off if status.is_server_error() => tracing::info!(parent: span, "request finished"),
            RequestLogLevel::Off => {}
        }
    }
}

/// Keeps an exact share of the calls: call `n` is kept when `floor((n + 1) · rate)` passes an
/// integer, so 0.25 keeps every fourth and 1.0 every call, without a random number generator.
#[derive(Debug)]
struct Sampler {
    /// The rate in millionths.
    per_million: u64,
    calls: AtomicU64,
}

impl Sampler {
    fn new(rate: f64) -> Self {
        let per_million = (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64;
        Self { per_million, calls: AtomicU64::new(0) }
    }

    fn take(&self) -> bool {
        match self.per_million {
            0 => false,
            1_000_000 => true,
            rate => {
                let n = self.calls.fetch_add(1, Ordering::Relaxed);
                (n + 1) * rate / 1_000_000 > n * rate / 1_000_000
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(rate: f64, calls: usize) -> usize {
        let sampler = Sampler::new(rate);
        (0..calls).filter(|_| sampler.take()).count()
    }

    #[test]
    fn the_sampler_keeps_an_exact_share() {
        assert_eq!(kept(1.0, 1000), 1000);
        assert_eq!(kept(0.0, 1000), 0);
        assert_eq!(kept(0.25, 1000), 250);
        assert_eq!(kept(0.001, 10_000), 10);
    }

    #[test]
    fn probes_get_no_span_unless_configured() {
        let request = |path: &str| Request::builder().uri(path).body(axum::body::Body::empty()).unwrap_or_default();
        let quiet = AccessLog::new(&LogConfig::default());
        // `Span::none()` has no metadata; a span the macro made (even one no subscriber records)
        // has the request span's.
        assert!(quiet.span(&request("/health")).metadata().is_none());
        assert!(quiet.span(&request("/api/v1/todos")).metadata().is_some_and(|m| m.name() == REQUEST_SPAN));
        let chatty = AccessLog::new(&LogConfig { access_log_probes: true, ..LogConfig::default() });
        assert!(chatty.span(&request("/health")).metadata().is_some_and(|m| m.name() == REQUEST_SPAN));
    }
}
