//! The Prometheus metrics of docs/observability.md ("Metrics"). Names and labels are a contract with the alert rules and
//! dashboards in observability/; label values are always from a small fixed set (never a raw path,
//! tenant, user or address).
//!
//! Each server instance owns its registry, so tests that run several servers in one process see
//! their own numbers.

use std::{sync::Arc, time::Instant};

use crate::hook::{After, Hook};

use axum::{
    extract::{MatchedPath, Request},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Every metric name the contract in docs/observability.md fixes; alert rules and dashboards
/// depend on each.
pub const CONTRACT: [&str; 28] = [
    "http_requests_total",
    "http_request_duration_seconds",
    "http_requests_in_flight",
    "db_pool_connections",
    "db_pool_max_connections",
    "db_pool_acquire_timeouts_total",
    "redis_up",
    "redis_errors_total",
    "rate_limit_decisions_total",
    "auth_failures_total",
    "build_info",
    "http_connections_open",
    "http_connections_refused_total",
    "jobs_queue_depth",
    "jobs_oldest_age_seconds",
    "jobs_failures_total",
    "jobs_dead_letters_total",
    "api_key_authentications_total",
    "webhook_deliveries_total",
    "webhook_delivery_duration_seconds",
    "webhook_endpoints_disabled_total",
    "webhook_relay_lag_seconds",
    "jobs_running_overdue",
    "tenant_exports_total",
    "tenant_export_bytes",
    "tenant_export_duration_seconds",
    "tenant_purges_total",
    "tenants_pending_purge",
];

/// The `outcome` labels of `api_key_authentications_total`, all exported from the start.
pub const API_KEY_OUTCOMES: [&str; 7] =
    ["success", "malformed", "unknown", "revoked", "expired", "wrong_tenant", "unavailable"];

/// Process metrics of the running server (Linux only: read from /proc). Dashboards chart CPU and
/// memory from them; they follow the Prometheus client conventions, so the names are fixed too.
pub const PROCESS: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub http_requests_in_flight: IntGauge,
    pub db_pool_connections: IntGaugeVec,
    pub db_pool_max_connections: IntGauge,
    pub db_pool_acquire_timeouts_total: IntCounter,
    pub redis_up: IntGauge,
    pub redis_errors_total: IntCounterVec,
    pub rate_limit_decisions_total: IntCounterVec,
    pub auth_failures_total: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub http_connections_open: IntGauge,
    pub http_connections_refused_total: IntCounter,
    /// Background jobs (docs/jobs.md): the gauges describe the shared queue, so every instance
    /// reports the same value.
    pub jobs_queue_depth: IntGauge,
    pub jobs_oldest_age_seconds: Gauge,
    pub jobs_failures_total: IntCounterVec,
    pub jobs_dead_letters_total: IntCounterVec,
    /// Requests that presented an API key, by outcome (success, malformed, unknown, revoked,
    /// expired, wrong_tenant, unavailable).
    pub api_key_authentications_total: IntCounterVec,
    /// Webhooks (docs/webhooks.md): attempts by outcome, `deferred` for rate-limit deferrals.
    pub webhook_deliveries_total: IntCounterVec,
    pub webhook_delivery_duration_seconds: Histogram,
    pub webhook_endpoints_disabled_total: IntCounter,
    /// Set by the relay pass this instance ran last.
    pub webhook_relay_lag_seconds: Gauge,
    pub jobs_running_overdue: IntGauge,
    /// Data rights (docs/data-rights.md).
    pub tenant_exports_total: IntCounterVec,
    pub tenant_export_bytes: Histogram,
    pub tenant_export_duration_seconds: Histogram,
    pub tenant_purges_total: IntCounter,
    pub tenants_pending_purge: IntGauge,
}

/// Build identity for `build_info`.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_sha: &'static str,
}

impl Metrics {
    /// Registers every metric. Registration can only fail on a duplicate or malformed name, which
    /// would be a programming error caught by the first test run, so it is reported, not handled.
    pub fn new(build: BuildInfo) -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let metrics = Self {
            http_requests_total: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests served, by method, route template and status."),
                &["method", "route", "status"],
            )?,
            http_request_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from request received to response headers sent, by method and route template.",
                ),
                &["method", "route"],
            )?,
            http_requests_in_flight: IntGauge::new("http_requests_in_flight", "HTTP requests being served now.")?,
            db_pool_connections: IntGaugeVec::new(
                Opts::new("db_pool_connections", "Database pool connections by state (idle, in_use)."),
                &["state"],
            )?,
            db_pool_max_connections: IntGauge::new("db_pool_max_connections", "Configured maximum pool size.")?,
            db_pool_acquire_timeouts_total: IntCounter::new(
                "db_pool_acquire_timeouts_total",
                "Times a request gave up waiting for a database connection.",
            )?,
            redis_up: IntGauge::new("redis_up", "1 when the last Redis round trip succeeded, 0 when it failed.")?,
            redis_errors_total: IntCounterVec::new(
                Opts::new("redis_errors_total", "Failed Redis operations, by operation."),
                &["operation"],
            )?,
            rate_limit_decisions_total: IntCounterVec::new(
                Opts::new(
                    "rate_limit_decisions_total",
                    "Rate limit decisions by policy and decision (allowed, limited, bypassed).",
                ),
                &["policy", "decision"],
            )?,
            auth_failures_total: IntCounterVec::new(
                Opts::new("auth_failures_total", "Refused authentication attempts, by reason."),
                &["reason"],
            )?,
            build_info: IntGaugeVec::new(
                Opts::new("build_info", "Always 1; labels carry the running build."),
                &["version", "git_sha"],
            )?,
            http_connections_open: IntGauge::new(
                "http_connections_open",
                "Client connections open now (idle ones included), against server.max_connections.",
            )?,
            http_connections_refused_total: IntCounter::new(
                "http_connections_refused_total",
                "Client connections refused because server.max_connections were already open.",
            )?,
            jobs_queue_depth: IntGauge::new(
                "jobs_queue_depth",
                "Background jobs waiting to run (due now or scheduled for a retry), over all instances.",
            )?,
            jobs_oldest_age_seconds: Gauge::new(
                "jobs_oldest_age_seconds",
                "How long the longest-waiting due job has been due; 0 when none is waiting.",
            )?,
            jobs_failures_total: IntCounterVec::new(
                Opts::new("jobs_failures_total", "Failed background job attempts, by job kind."),
                &["kind"],
            )?,
            jobs_dead_letters_total: IntCounterVec::new(
                Opts::new(
                    "jobs_dead_letters_total",
                    "Background jobs given up after their last attempt (dead-lettered), by job kind.",
                ),
                &["kind"],
            )?,
            api_key_authentications_total: IntCounterVec::new(
                Opts::new("api_key_authentications_total", "Requests that presented an API key, by outcome."),
                &["outcome"],
            )?,
            webhook_deliveries_total: IntCounterVec::new(
                Opts::new(
                    "webhook_deliveries_total",
                    "Webhook delivery attempts by outcome (delivered, rejected, refused, timed_out, connect_failed, other; deferred for \
                     attempts postponed by the tenant rate limit).",
                ),
                &["outcome"],
            )?,
            webhook_delivery_duration_seconds: Histogram::with_opts(HistogramOpts::new(
                "webhook_delivery_duration_seconds",
                "Time from sending a webhook request to the end of its response (or its failure).",
            ))?,
            webhook_endpoints_disabled_total: IntCounter::new(
                "webhook_endpoints_disabled_total",
                "Webhook endpoints disabled by the server after repeated failed deliveries.",
            )?,
            webhook_relay_lag_seconds: Gauge::new(
                "webhook_relay_lag_seconds",
                "How long the oldest outbox event relayed by this instance's last relay pass had waited; 0 when \
                 that pass found none.",
            )?,
            jobs_running_overdue: IntGauge::new(
                "jobs_running_overdue",
                "Background jobs marked running whose lease has run out (a stuck or vanished worker), over all instances.",
            )?,
            tenant_exports_total: IntCounterVec::new(
                Opts::new(
                    "tenant_exports_total",
                    "Tenant export jobs finished, by outcome (completed, failed, skipped).",
                ),
                &["outcome"],
            )?,
            tenant_export_bytes: Histogram::with_opts(
                HistogramOpts::new("tenant_export_bytes", "Size of completed tenant export archives, in bytes.")
                    .buckets(prometheus::exponential_buckets(1024.0, 4.0, 12)?),
            )?,
            tenant_export_duration_seconds: Histogram::with_opts(
                HistogramOpts::new("tenant_export_duration_seconds", "Time to build and store a tenant export.")
                    .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]),
            )?,
            tenant_purges_total: IntCounter::new(
                "tenant_purges_total",
                "Deleted tenants purged after their erasure grace.",
            )?,
            tenants_pending_purge: IntGauge::new(
                "tenants_pending_purge",
                "Tenants deleted and not yet purged (sampled by each tenant.purge run), over all instances.",
            )?,
            registry,
        };
        metrics.register_all()?;
        for outcome in ["delivered", "deferred"] {
            metrics.webhook_deliveries_total.with_label_values(&[outcome]);
        }
        metrics.build_info.with_label_values(&[build.version, build.git_sha]).set(1);
        for state in ["idle", "in_use"] {
            metrics.db_pool_connections.with_label_values(&[state]).set(0);
        }
        // Exported from the start so the alert rules' `increase(redis_errors_total[…])` has a
        // series to work on, also where Redis is not configured (and nothing is ever counted).
        metrics.redis_errors_total.with_label_values(&["ping"]);
        for outcome in API_KEY_OUTCOMES {
            metrics.api_key_authentications_total.with_label_values(&[outcome]);
        }
        for outcome in ["completed", "failed", "skipped"] {
            metrics.tenant_exports_total.with_label_values(&[outcome]);
        }
        Ok(Arc::new(metrics))
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.http_requests_total.clone()))?;
        r.register(Box::new(self.http_request_duration_seconds.clone()))?;
        r.register(Box::new(self.http_requests_in_flight.clone()))?;
        r.register(Box::new(self.db_pool_connections.clone()))?;
        r.register(Box::new(self.db_pool_max_connections.clone()))?;
        r.register(Box::new(self.db_pool_acquire_timeouts_total.clone()))?;
        r.register(Box::new(self.redis_up.clone()))?;
        r.register(Box::new(self.redis_errors_total.clone()))?;
        r.register(Box::new(self.rate_limit_decisions_total.clone()))?;
        r.register(Box::new(self.auth_failures_total.clone()))?;
        r.register(Box::new(self.build_info.clone()))?;
        r.register(Box::new(self.http_connections_open.clone()))?;
        r.register(Box::new(self.http_connections_refused_total.clone()))?;
        r.register(Box::new(self.jobs_queue_depth.clone()))?;
        r.register(Box::new(self.jobs_oldest_age_seconds.clone()))?;
        r.register(Box::new(self.jobs_failures_total.clone()))?;
        r.register(Box::new(self.jobs_dead_letters_total.clone()))?;
        r.register(Box::new(self.api_key_authentications_total.clone()))?;
        r.register(Box::new(self.webhook_deliveries_total.clone()))?;
        r.register(Box::new(self.webhook_delivery_duration_seconds.clone()))?;
        r.register(Box::new(self.webhook_endpoints_disabled_total.clone()))?;
        r.register(Box::new(self.webhook_relay_lag_seconds.clone()))?;
        r.register(Box::new(self.jobs_running_overdue.clone()))?;
        r.register(Box::new(self.tenant_exports_total.clone()))?;
        r.register(Box::new(self.tenant_export_bytes.clone()))?;
        r.register(Box::new(self.tenant_export_duration_seconds.clone()))?;
        r.register(Box::new(self.tenant_purges_total.clone()))?;
        r.register(Box::new(self.tenants_pending_purge.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(())
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Counts a failed Redis operation and marks Redis down.
    pub fn redis_error(&self, operation: &str) {
        self.redis_errors_total.with_label_values(&[operation]).inc();
        self.redis_up.set(0);
    }
}

/// `GET /metrics`.
pub fn exposition(metrics: &Metrics) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
        .into_response()
}

/// Keeps the in-flight gauge right even when the request future is dropped mid-way.
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl InFlight {
    fn start(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware recording the HTTP metrics (a [`Hook`]). Must be applied with `Router::layer`
/// so it runs after routing and sees the matched route template.
#[derive(Debug, Clone)]
pub struct Track(pub Arc<Metrics>);

impl Hook for Track {
    type Carry = (InFlight, Instant, &'static str, Option<MatchedPath>);

    fn before(&self, request: &mut Request) -> Result<Self::Carry, Response> {
        let in_flight = InFlight::start(&self.0.http_requests_in_flight);
        // A clone of the matched template is a reference count, not a copy of the string.
        let matched = request.extensions().get::<MatchedPath>().cloned();
        Ok((in_flight, Instant::now(), method_label(request.method()), matched))
    }

    fn after(&self, (_in_flight, started, method, matched): Self::Carry, response: Response) -> After {
        let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let metrics = &self.0;
        metrics
            .http_request_duration_seconds
            .with_label_values(&[method, route])
            .observe(started.elapsed().as_secs_f64());
        metrics.http_requests_total.with_label_values(&[method, route, response.status().as_str()]).inc();
        After::Done(response)
    }
}

/// Methods outside the standard set are folded into one label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_is_exported_with_help_and_type() {
        let metrics = Metrics::new(BuildInfo { version: "1.2.3", git_sha: "abc" }).expect("registry");
        metrics.http_requests_total.with_label_values(&["GET", "/health", "200"]).inc();
        metrics.http_request_duration_seconds.with_label_values(&["GET", "/health"]).observe(0.1);
        metrics.redis_errors_total.with_label_values(&["ping"]).inc();
        metrics.rate_limit_decisions_total.with_label_values(&["anonymous", "allowed"]).inc();
        metrics.auth_failures_total.with_label_values(&["expired"]).inc();
        metrics.jobs_failures_total.with_label_values(&["cleanup.audit_events"]).inc();
        metrics.jobs_dead_letters_total.with_label_values(&["cleanup.audit_events"]).inc();
        let text = metrics.render();
        for name in CONTRACT {
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
        }
        assert!(text.contains(r#"build_info{git_sha="abc",version="1.2.3"} 1"#));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_cpu_memory_fds_and_threads_are_exported() {
        let metrics = Metrics::new(BuildInfo { version: "1.2.3", git_sha: "abc" }).expect("registry");
        let text = metrics.render();
        for name in PROCESS {
            let sample = text
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no sample for {name}"));
            let value: f64 = sample.trim().parse().expect("a number");
            // A test process may not have used a full clock tick of CPU yet; the others are never 0.
            let floor_ok = if name == "process_cpu_seconds_total" { value >= 0.0 } else { value > 0.0 };
            assert!(floor_ok, "{name} is {value}");
        }
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let method = Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(method_label(&method), "OTHER");
    }
}
