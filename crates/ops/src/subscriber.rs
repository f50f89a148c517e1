//! What the parts of the global `tracing` subscriber share: the request span's name, the boxed
//! layer type, and the identity of the running service.
//!
//! [`crate::telemetry`] composes the subscriber and [`crate::sentry`] contributes layers to it; both
//! depend on this module and neither on the other's internals, so the dependency runs one way
//! (telemetry → sentry → subscriber).

use tracing_subscriber::{Layer, Registry};

/// The name of the per-request span. The Sentry layer looks for it to tag events with the ids
/// recorded into it.
pub const REQUEST_SPAN: &str = "request";

/// A layer of the global subscriber, boxed so the parts can be chosen at runtime.
pub(crate) type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// What the running service is, for resource attributes and Sentry's release and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    /// `development`, `staging`, `production`.
    pub environment: String,
}

impl ServiceInfo {
    /// Sentry's release identifier, `name@version`.
    pub fn release(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}
