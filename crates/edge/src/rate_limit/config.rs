//! The `[rate_limit]` configuration section.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

use super::gcra::Quota;

/// The policy applied per client IP before authentication.
pub const ANONYMOUS: &str = "anonymous";
/// The policy for authenticated requests, per (tenant, subject).
pub const AUTHENTICATED: &str = "authenticated";
/// The policy for state-changing authenticated requests, per (tenant, subject).
pub const WRITE: &str = "write";

/// Where buckets live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Redis when `redis.url` is set, else in-process.
    #[default]
    Auto,
    Memory,
    Redis,
}

/// What to do when Redis cannot decide (slow, down, circuit open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Decide with this instance's own in-process buckets (each replica then has a full budget).
    #[default]
    Fallback,
    /// Let every request through.
    Allow,
    /// Refuse every request with 503.
    Deny,
}

/// A named policy: `rate` requests per `period` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub rate: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    pub burst: u32,
}

impl Policy {
    pub const fn per_second(rate: u32, burst: u32) -> Self {
        Self { rate, period: Duration::from_secs(1), burst }
    }

    pub fn quota(&self) -> Option<Quota> {
        Quota::new(self.rate, self.period, self.burst)
    }

    /// This policy with the fields `change` sets replaced.
    pub fn with(&self, change: &PolicyChange) -> Self {
        Self {
            rate: change.rate.unwrap_or(self.rate),
            period: change.period.unwrap_or(self.period),
            burst: change.burst.unwrap_or(self.burst),
        }
    }
}

/// Some fields of a policy, as config gives them: a policy section or a tenant override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off: no request is limited and no rate-limit header is sent.
    pub enabled: bool,
    /// `auto`, `memory` or `redis`.
    pub backend: BackendChoice,
    /// `fallback`, `allow` or `deny`.
    pub failure_mode: FailureMode,
    /// A Redis decision taking longer than this counts as a failure (kept well under the
    /// general `redis.command_timeout`: this one is paid by every request).
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Consecutive Redis failures that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit skips Redis before one request probes it again.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Most buckets the in-process store keeps (per instance).
    pub memory_max_keys: u64,
    /// IPv6 clients are limited per network of this prefix length: one host usually owns a /64.
    pub ipv6_prefix_len: u8,
    /// Named policies. The built-in `anonymous`, `authenticated` and `write` are always present;
    /// a section sets only the fields it names.
    #[serde(deserialize_with = "merge_with_builtin")]
    pub policies: BTreeMap<String, Policy>,
    /// `[rate_limit.tenant_overrides.<tenant>.<policy>]`: fields that differ for one tenant.
    pub tenant_overrides: BTreeMap<String, BTreeMap<String, PolicyChange>>,
}

fn builtin_policies() -> BTreeMap<String, Policy> {
    BTreeMap::from([
        (ANONYMOUS.to_owned(), Policy::per_second(100, 200)),
        (AUTHENTICATED.to_owned(), Policy::per_second(50, 100)),
        (WRITE.to_owned(), Policy::per_second(10, 20)),
    ])
}

fn merge_with_builtin<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Policy>, D::Error> {
    let changes = BTreeMap::<String, PolicyChange>::deserialize(deserializer)?;
    let mut policies = builtin_policies();
    for (name, change) in changes {
        let policy = match policies.get(&name) {
            Some(existing) => existing.with(&change),
            None => {
                let rate = change.rate.ok_or_else(|| {
                    serde::de::Error::custom(format!("rate_limit.policies.{name} is new and needs `rate`"))
                })?;
                Policy {
                    rate,
                    period: change.period.unwrap_or(Duration::from_secs(1)),
                    burst: change.burst.unwrap_or(rate),
                }
            }
        };
        policies.insert(name, policy);
    }
    Ok(policies)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: BackendChoice::Auto,
            failure_mode: FailureMode::Fallback,
            redis_timeout: Duration::from_millis(50),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
            memory_max_keys: 100_000,
            ipv6_prefix_len: 64,
            policies: builtin_policies(),
            tenant_overrides: BTreeMap::new(),
        }
    }
}

/// Policy names go into metric labels and headers: short and plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl RateLimitConfig {
    /// Every inconsistent value; outside development also in-process buckets (each replica
    /// would grant the whole budget).
    pub fn problems(&self, redis_configured: bool, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, policy) in &self.policies {
            if !valid_name(name) {
                problems.push(format!("rate_limit.policies.{name}: a policy name is 1-32 of [a-z0-9_-]"));
            }
            if policy.quota().is_none() {
                problems.push(format!(
                    "rate_limit.policies.{name}: rate, burst and period must be greater than 0 (and period/rate \
                     at least 1µs)"
                ));
            }
        }
        for (tenant, changes) in &self.tenant_overrides {
            for (name, change) in changes {
                match self.policies.get(name) {
                    None => problems.push(format!("rate_limit.tenant_overrides.{tenant}.{name}: no policy `{name}`")),
                    Some(policy) if policy.with(change).quota().is_none() => problems.push(format!(
                        "rate_limit.tenant_overrides.{tenant}.{name}: rate, burst and period must be greater than 0"
                    )),
                    Some(_) => {}
                }
            }
        }
        if self.redis_timeout.is_zero() {
            problems.push("rate_limit.redis_timeout must be greater than 0".to_owned());
        }
        if self.breaker_failures == 0 {
            problems.push("rate_limit.breaker_failures must be at least 1".to_owned());
        }
        if self.memory_max_keys == 0 {
            problems.push("rate_limit.memory_max_keys must be at least 1".to_owned());
        }
        if !(32..=128).contains(&self.ipv6_prefix_len) {
            problems.push("rate_limit.ipv6_prefix_len must be between 32 and 128".to_owned());
        }
        if self.backend == BackendChoice::Redis && !redis_configured {
            problems.push("rate_limit.backend is `redis` but redis.url is not set".to_owned());
        }
        if production && self.enabled && self.backend == BackendChoice::Memory {
            problems.push(
                "rate_limit.backend is `memory` outside development: every replica would grant the full budget \
                 (use `auto` with REDIS_URL set)"
                    .to_owned(),
            );
        }
        problems
    }

    /// The longest time any bucket takes to refill: how long an idle in-process bucket is kept.
    pub fn longest_window(&self) -> Duration {
        let base = self.policies.values().filter_map(Policy::quota);
        let overridden = self.tenant_overrides.values().flat_map(|changes| {
            changes.iter().filter_map(|(name, change)| self.policies.get(name).and_then(|p| p.with(change).quota()))
        });
        base.chain(overridden).map(|q| q.window()).max().unwrap_or(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_anonymous_policy_refuses_a_burst_of_a_thousand() {
        let config = RateLimitConfig::default();
        let anonymous = config.policies[ANONYMOUS];
        assert!(anonymous.burst < 1000 && anonymous.rate < 1000 - anonymous.burst);
        assert!(config.problems(false, false).is_empty());
    }

    #[test]
    fn a_policy_section_changes_only_what_it_names_and_builtins_stay() {
        let toml = r#"
            [policies.anonymous]
            rate = 5
            [policies.export]
            rate = 2
            period = "1m"
        "#;
        let config: RateLimitConfig = toml::from_str(toml).expect("parses");
        assert_eq!(config.policies[ANONYMOUS], Policy::per_second(5, 200));
        assert_eq!(config.policies["export"], Policy { rate: 2, period: Duration::from_secs(60), burst: 2 });
        assert!(config.policies.contains_key(WRITE));
    }

    #[test]
    fn a_new_policy_without_a_rate_is_an_error() {
        let result: Result<RateLimitConfig, _> = toml::from_str("[policies.export]\nburst = 3\n");
        assert!(result.is_err());
    }

    #[test]
    fn overrides_of_unknown_policies_and_zero_values_are_problems() {
        let toml = r#"
            [policies.write]
            burst = 0
            [tenant_overrides.acme.nope]
            rate = 1
            [tenant_overrides.acme.authenticated]
            rate = 0
        "#;
        let config: RateLimitConfig = toml::from_str(toml).expect("parses");
        assert_eq!(config.problems(true, false).len(), 3, "{:?}", config.problems(true, false));
    }

    #[test]
    fn in_process_buckets_and_a_missing_redis_are_problems_where_they_matter() {
        let memory = RateLimitConfig { backend: BackendChoice::Memory, ..Default::default() };
        assert!(memory.problems(true, false).is_empty());
        assert_eq!(memory.problems(true, true).len(), 1);
        let redis = RateLimitConfig { backend: BackendChoice::Redis, ..Default::default() };
        assert_eq!(redis.problems(false, false).len(), 1);
    }
}
