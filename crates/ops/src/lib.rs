//! Operational plumbing shared by every palisade crate: the problem+json error shape, request ids,
//! Prometheus metrics, readiness, logging, tracing and error reporting, and the HTTP server with
//! graceful shutdown.
//!
//! Nothing here knows about tenants, tokens or tables; the `api` crate assembles these parts.

pub mod access_log;
pub mod client_ip;
pub mod hook;
pub mod metrics;
pub mod problem;
pub mod readiness;
pub mod redact;
pub mod request_id;
pub mod sensitive_headers;
pub mod sentry;
pub mod server;
pub mod subscriber;
pub mod telemetry;

pub use access_log::{AccessLog, PROBE_PATHS};
pub use client_ip::ClientIp;
pub use metrics::Metrics;
pub use problem::Problem;
pub use readiness::{CheckOutcome, Readiness, ReadinessCheck, ReadinessConfig};
pub use request_id::RequestId;
pub use server::{ServerConfig, serve, shutdown_signal};
