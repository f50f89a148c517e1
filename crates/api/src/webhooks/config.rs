//! The `[webhooks]` configuration section (docs/configuration.md, docs/webhooks.md).

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Networks that endpoints may resolve to although they are not public (loopback, private,
    /// link-local…), and where plain `http` is accepted outside development. Empty by default in
    /// every environment: a developer receiving webhooks on their own machine adds `127.0.0.0/8`.
    pub allow_networks: Vec<IpNet>,
    /// Longest wait for the TCP and TLS connection to an endpoint.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the whole request, response included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The response body is read up to this many bytes (the rest is ignored); the delivery log keeps
    /// an excerpt of it.
    pub max_response_bytes: usize,
    /// Consecutive deliveries that failed all their attempts before the endpoint is disabled.
    pub disable_after_failures: u32,
    /// After a secret rotation, the previous secret keeps signing, alongside the new one, this long.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
    /// Delivery attempts per second per tenant, over all replicas; past it attempts are deferred.
    pub tenant_rate_limit: u32,
    /// How often the relay turns outbox events into deliveries (a scheduled job, at least 1s).
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// Deliveries (and their attempts) older than this are deleted by `cleanup.webhook_deliveries`.
    #[serde(with = "humantime_serde")]
    pub delivery_retention: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_networks: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: 4096,
            disable_after_failures: 5,
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            tenant_rate_limit: 50,
            relay_interval: Duration::from_secs(1),
            delivery_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl WebhooksConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.disable_after_failures == 0 {
            problems.push("webhooks.disable_after_failures must be greater than 0".to_owned());
        }
        if self.tenant_rate_limit == 0 {
            problems.push("webhooks.tenant_rate_limit must be greater than 0".to_owned());
        }
        if self.relay_interval < Duration::from_secs(1) {
            problems.push("webhooks.relay_interval must be at least 1s".to_owned());
        }
        for (key, value) in [
            ("webhooks.connect_timeout", self.connect_timeout),
            ("webhooks.request_timeout", self.request_timeout),
            ("webhooks.delivery_retention", self.delivery_retention),
        ] {
            if value.is_zero() {
                problems.push(format!("{key} must be greater than 0"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_nonsense_is_named() {
        assert!(WebhooksConfig::default().problems().is_empty());
        let config = WebhooksConfig { relay_interval: Duration::from_millis(10), ..WebhooksConfig::default() };
        assert_eq!(config.problems(), ["webhooks.relay_interval must be at least 1s"]);
    }
}
