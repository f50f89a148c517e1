//! Rate limiting with GCRA (see docs/adr/0004-rate-limiting.md): named policies, per client IP
//! before authentication ([`limit_by_client_ip`], policy `anonymous`) and per (tenant, subject)
//! after it ([`RateLimiter::check_tenant`] / [`enforce`], called by the auth code), in process or
//! in Redis shared by every replica, with a circuit breaker and a failure mode for when Redis is
//! not there.

mod breaker;
mod config;
mod gcra;
mod http;
mod memory;
mod shared;

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use ipnet::Ipv6Net;
use palisade_ops::Metrics;
use palisade_store::Redis;

use self::{breaker::CircuitBreaker, memory::MemoryStore, shared::SharedStore};
pub use self::{
    config::{ANONYMOUS, AUTHENTICATED, BackendChoice, FailureMode, Policy, PolicyChange, RateLimitConfig, WRITE},
    gcra::{Outcome, Quota},
    http::{RateLimitRecord, UNLIMITED_PATHS, enforce, limit_by_client_ip},
};

/// The `decision` label values of `rate_limit_decisions_total`.
pub mod decision_label {
    pub const ALLOWED: &str = "allowed";
    pub const LIMITED: &str = "limited";
    /// Redis could not decide and the failure mode did (whatever it answered).
    pub const BYPASSED: &str = "bypassed";
}

/// The `policy` label for a name no policy has (a programming error; keeps labels bounded).
const UNKNOWN_POLICY: &str = "unknown";

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit: 429.
    Limited,
    /// Redis could not decide and the failure mode is `deny`: 503.
    Unavailable,
}

/// One rate-limit decision: the verdict and what the response headers report about it.
#[derive(Debug, Clone)]
pub struct Decision {
    policy: Arc<str>,
    verdict: Verdict,
    /// The quota and outcome a limiter actually computed; `None` when nothing was counted
    /// (limiting disabled, failure mode `allow` or `deny`, unknown policy).
    counted: Option<(Quota, Outcome)>,
    retry_after: Duration,
    bypassed: bool,
}

impl Decision {
    fn unlimited(policy: Arc<str>) -> Self {
        Self { policy, verdict: Verdict::Allowed, counted: None, retry_after: Duration::ZERO, bypassed: false }
    }

    fn counted(policy: Arc<str>, quota: Quota, outcome: Outcome, bypassed: bool) -> Self {
        let verdict = if outcome.allowed { Verdict::Allowed } else { Verdict::Limited };
        Self { policy, verdict, counted: Some((quota, outcome)), retry_after: outcome.retry_after, bypassed }
    }

    pub fn policy(&self) -> &str {
        &self.policy
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }

    /// Whether Redis was bypassed and the failure mode decided.
    pub fn was_bypassed(&self) -> bool {
        self.bypassed
    }

    /// Requests left right now, when a limiter counted this one.
    pub fn remaining(&self) -> Option<u32> {
        self.counted.map(|(_, outcome)| outcome.remaining)
    }

    /// How long the client should wait, for a refused request.
    pub fn retry_after(&self) -> Option<Duration> {
        (!self.is_allowed()).then_some(self.retry_after)
    }

    fn label(&self) -> &'static str {
        match (self.bypassed, self.verdict) {
            (true, _) => decision_label::BYPASSED,
            (false, Verdict::Allowed) => decision_label::ALLOWED,
            (false, _) => decision_label::LIMITED,
        }
    }
}

#[derive(Debug)]
struct NamedPolicy {
    name: Arc<str>,
    quota: Quota,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    policies: HashMap<String, NamedPolicy>,
    /// tenant → policy name → quota.
    overrides: HashMap<String, HashMap<String, Quota>>,
    local: MemoryStore,
    shared: Option<SharedStore>,
    failure_mode: FailureMode,
    ipv6_prefix_len: u8,
    metrics: Arc<Metrics>,
}

/// The rate limiter; cheap to clone (state is shared). Put in the application state so the auth
/// code can take it with `State<RateLimiter>`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl RateLimiter {
    /// Builds the limiter; `redis` is used when the backend is `auto` or `redis`.
    pub fn new(config: &RateLimitConfig, redis: Option<Redis>, metrics: Arc<Metrics>) -> Result<Self, Vec<String>> {
        let problems = config.problems(redis.is_some(), false);
        if !problems.is_empty() {
            return Err(problems);
        }
        let policies = config
            .policies
            .iter()
            .filter_map(|(name, policy)| {
                Some((name.clone(), NamedPolicy { name: name.as_str().into(), quota: policy.quota()? }))
            })
            .collect();
        let overrides = config
            .tenant_overrides
            .iter()
            .map(|(tenant, changes)| {
                let quotas = changes
                    .iter()
                    .filter_map(|(name, change)| Some((name.clone(), config.policies.get(name)?.with(change).quota()?)))
                    .collect();
                (tenant.clone(), quotas)
            })
            .collect();
        let redis = match config.backend {
            BackendChoice::Memory => None,
            BackendChoice::Auto | BackendChoice::Redis => redis,
        };
        let shared = redis.map(|redis| {
            let breaker = CircuitBreaker::new(config.breaker_failures, config.breaker_cooldown);
            SharedStore::new(redis, config.redis_timeout, breaker, metrics.clone())
        });
        // Every series exists from the start, at 0, so rates and alerts work before the first refusal.
        for name in config.policies.keys() {
            for decision in [decision_label::ALLOWED, decision_label::LIMITED, decision_label::BYPASSED] {
                metrics.rate_limit_decisions_total.with_label_values(&[name.as_str(), decision]);
            }
        }
        if !config.enabled {
            tracing::warn!("rate limiting is disabled (rate_limit.enabled=false): no client is limited");
        }
        tracing::info!(
            enabled = config.enabled,
            backend = if shared.is_some() { "redis" } else { "memory" },
            failure_mode = ?config.failure_mode,
            "rate limiting configured"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                policies,
                overrides,
                local: MemoryStore::new(config.memory_max_keys, config.longest_window()),
                shared,
                failure_mode: config.failure_mode,
                ipv6_prefix_len: config.ipv6_prefix_len,
                metrics,
            }),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Whether `name` is a configured policy.
    pub fn has_policy(&self, name: &str) -> bool {
        self.inner.policies.contains_key(name)
    }

    /// Checks (and counts) one request against `policy` for `key` (an opaque bucket id such as a
    /// client address).
    pub async fn check(&self, policy: &str, key: &str) -> Decision {
        self.check_with(policy, key, None).await
    }

    /// Checks one authenticated request: bucket `tenant:subject`, with the tenant's override of
    /// `policy` when `[rate_limit.tenant_overrides.<tenant>]` has one.
    pub async fn check_tenant(&self, policy: &str, tenant: &str, subject: &str) -> Decision {
        self.check_with(policy, &format!("{tenant}:{subject}"), Some(tenant)).await
    }

    async fn check_with(&self, policy: &str, key: &str, tenant: Option<&str>) -> Decision {
        let inner = &*self.inner;
        let Some(named) = inner.policies.get(policy) else {
            tracing::error!(policy, "rate limit check against an unknown policy; allowed");
            inner
                .metrics
                .rate_limit_decisions_total
                .with_label_values(&[UNKNOWN_POLICY, decision_label::BYPASSED])
                .inc();
            return Decision::unlimited(UNKNOWN_POLICY.into());
        };
        if !inner.enabled {
            return Decision::unlimited(named.name.clone());
        }
        let quota = tenant
            .and_then(|tenant| inner.overrides.get(tenant))
            .and_then(|quotas| quotas.get(policy))
            .copied()
            .unwrap_or(named.quota);
        let decision = match &inner.shared {
            None => Decision::counted(named.name.clone(), quota, inner.local.check(&named.name, key, quota), false),
            Some(shared) => match shared.check(&named.name, key, quota).await {
                Ok(outcome) => Decision::counted(named.name.clone(), quota, outcome, false),
                Err(unavailable) => match inner.failure_mode {
                    FailureMode::Fallback => {
                        Decision::counted(named.name.clone(), quota, inner.local.check(&named.name, key, quota), true)
                    }
                    FailureMode::Allow => Decision { bypassed: true, ..Decision::unlimited(named.name.clone()) },
                    FailureMode::Deny => Decision {
                        policy: named.name.clone(),
                        verdict: Verdict::Unavailable,
                        counted: None,
                        retry_after: unavailable.retry_in,
                        bypassed: true,
                    },
                },
            },
        };
        inner.metrics.rate_limit_decisions_total.with_label_values(&[decision.policy(), decision.label()]).inc();
        decision
    }

    /// The bucket id of a client address: the address itself, or for IPv6 its network of
    /// `ipv6_prefix_len` bits.
    pub fn client_key(&self, ip: IpAddr) -> String {
        match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => Ipv6Net::new(v6, self.inner.ipv6_prefix_len)
                .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_ops::metrics::BuildInfo;

    fn metrics() -> Arc<Metrics> {
        Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics")
    }

    fn limiter(config: RateLimitConfig) -> (RateLimiter, Arc<Metrics>) {
        let metrics = metrics();
        (RateLimiter::new(&config, None, metrics.clone()).expect("valid"), metrics)
    }

    fn tiny() -> RateLimitConfig {
        let mut config = RateLimitConfig::default();
        config.policies.insert(ANONYMOUS.into(), Policy { rate: 1, period: Duration::from_secs(60), burst: 2 });
        config.policies.insert(AUTHENTICATED.into(), Policy { rate: 1, period: Duration::from_secs(60), burst: 1 });
        config
    }

    #[tokio::test]
    async fn the_burst_is_allowed_then_limited_and_counted() {
        let (limiter, metrics) = limiter(tiny());
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            verdicts.push(limiter.check(ANONYMOUS, "1.2.3.4").await.verdict());
        }
        assert_eq!(verdicts, [Verdict::Allowed, Verdict::Allowed, Verdict::Limited]);
        let text = metrics.render();
        assert!(text.contains(r#"rate_limit_decisions_total{decision="allowed",policy="anonymous"} 2"#), "{text}");
        assert!(text.contains(r#"rate_limit_decisions_total{decision="limited",policy="anonymous"} 1"#), "{text}");
        assert!(text.contains(r#"rate_limit_decisions_total{decision="bypassed",policy="write"} 0"#), "{text}");
    }

    #[tokio::test]
    async fn tenants_have_their_own_buckets_and_overrides() {
        let mut config = tiny();
        config
            .tenant_overrides
            .entry("acme".into())
            .or_default()
            .insert(AUTHENTICATED.into(), PolicyChange { burst: Some(3), ..Default::default() });
        let (limiter, _) = limiter(config);
        let mut acme = Vec::new();
        for _ in 0..4 {
            acme.push(limiter.check_tenant(AUTHENTICATED, "acme", "u1").await.is_allowed());
        }
        assert_eq!(acme, [true, true, true, false]);
        assert!(limiter.check_tenant(AUTHENTICATED, "globex", "u1").await.is_allowed());
        assert!(!limiter.check_tenant(AUTHENTICATED, "globex", "u1").await.is_allowed());
        assert!(limiter.check_tenant(AUTHENTICATED, "globex", "u2").await.is_allowed());
    }

    #[tokio::test]
    async fn an_unknown_policy_is_allowed_under_a_bounded_label() {
        let (limiter, metrics) = limiter(tiny());
        let decision = limiter.check("no-such-policy", "k").await;
        assert!(decision.is_allowed());
        assert!(metrics.render().contains(r#"rate_limit_decisions_total{decision="bypassed",policy="unknown"} 1"#));
    }

    #[tokio::test]
    async fn disabled_limiting_allows_everything_without_headers() {
        let (limiter, _) = limiter(RateLimitConfig { enabled: false, ..tiny() });
        for _ in 0..10 {
            let decision = limiter.check(ANONYMOUS, "k").await;
            assert!(decision.is_allowed() && decision.remaining().is_none());
        }
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_network() {
        let (limiter, _) = limiter(RateLimitConfig::default());
        let a = limiter.client_key("2001:db8:1:2:aaaa::1".parse().expect("ip"));
        let b = limiter.client_key("2001:db8:1:2:bbbb::9".parse().expect("ip"));
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(limiter.client_key("::ffff:10.1.2.3".parse().expect("ip")), "10.1.2.3");
    }
}
