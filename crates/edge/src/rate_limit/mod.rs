//! Rate limiting with GCRA (see docs/adr/0004-rate-limiting.md): named policies, per client IP
//! before authentication ([`LimitByClientIpLayer`], policy `anonymous`) and per (tenant, subject)
//! after it ([`RateLimiter::enforce_caller`], called by the tenant extractor, together with a
//! pending anonymous check and a revocation lookup in one Redis round trip), in process or in
//! Redis shared by every replica, with a circuit breaker and a failure mode for when Redis is not
//! there.

mod breaker;
mod config;
mod gcra;
mod http;
mod memory;
mod shared;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::Extensions;
use ipnet::Ipv6Net;
use moka::sync::Cache;
use palisade_ops::Metrics;
use palisade_store::Redis;

use self::{
    breaker::CircuitBreaker,
    memory::MemoryStore,
    shared::{Bucket, MAX_BUCKETS, SharedStore, Unavailable},
};
pub use self::{
    config::{ANONYMOUS, AUTHENTICATED, BackendChoice, FailureMode, Policy, PolicyChange, RateLimitConfig, WRITE},
    gcra::{Outcome, Quota},
    http::{LimitByClientIp, LimitByClientIpLayer, RateLimitRecord, UNLIMITED_PATHS, enforce},
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

/// A lookup the limiter makes for the caller between the anonymous and the per-caller policies,
/// in the same Redis round trip: whether the caller is on a deny list (in practice: whether its
/// token is revoked; the limiter knows only a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing<'a> {
    /// Nothing to look up.
    None,
    /// Already known to be listed (an in-process revocation list): the per-caller policies are
    /// not counted, but an exhausted anonymous budget still answers first.
    Listed,
    /// The fully prefixed Redis key whose existence means "listed".
    Lookup(&'a str),
}

/// What became of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingAnswer {
    /// Not looked up: there was nothing to look up, the anonymous policy refused first, or Redis
    /// was not asked (in-process limiter, limiting disabled, open circuit); the caller looks it
    /// up itself if it still matters.
    NotAsked,
    /// Looked up (or known): whether the caller is listed.
    Answered(bool),
    /// The combined Redis call failed; the caller's own failure mode decides.
    Failed(String),
}

/// The result of [`RateLimiter::enforce_caller`].
#[derive(Debug)]
pub struct CallerCheck {
    /// The refusal (429, or 503 in failure mode `deny`) of the first policy that refused. A
    /// listed caller is never refused here: the deny list answers first.
    pub refusal: Option<palisade_ops::Problem>,
    pub listing: ListingAnswer,
    /// The counter asked for, read in the same Redis call; `None` when Redis did not answer (or
    /// was not asked: an in-process limiter, limiting disabled, an open circuit).
    pub counter: Option<i64>,
}

/// An anonymous refusal remembered in process: until `allow_at` the client is refused up front.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    quota: Quota,
    allow_at: Instant,
    full_at: Instant,
}

/// One policy applied to one bucket, resolved (tenant override included).
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    name: &'a Arc<str>,
    key: &'a str,
    quota: Quota,
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
    /// Clients whose anonymous budget was found exhausted, until their retry-after: their next
    /// requests are refused without asking Redis. Bounded like the in-process store.
    refused: Cache<String, Remembered>,
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
                refused: Cache::builder()
                    .max_capacity(config.memory_max_keys)
                    .time_to_live(config.longest_window().max(Duration::from_secs(1)))
                    .build(),
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
        let (name, quota) = match self.resolve(policy, tenant) {
            Ok(resolved) => resolved,
            Err(decision) => return decision,
        };
        let step = Step { name, key, quota };
        let decision = match &inner.shared {
            None => self.locally(step, false),
            Some(shared) => match shared.check_all(&[Some(step.bucket())], None, None).await {
                Ok(answer) => match answer.outcomes[0] {
                    Some(outcome) => Decision::counted(name.clone(), quota, outcome, false),
                    None => self.failure_mode(step, &Unavailable { retry_in: Duration::from_secs(1), error: None }),
                },
                Err(unavailable) => self.failure_mode(step, &unavailable),
            },
        };
        self.count(&decision);
        decision
    }

    /// The policy's name and quota (the tenant's override when it has one); or, for an unknown
    /// policy or disabled limiting, the decision to take without counting anything.
    fn resolve(&self, policy: &str, tenant: Option<&str>) -> Result<(&Arc<str>, Quota), Decision> {
        let inner = &*self.inner;
        let Some(named) = inner.policies.get(policy) else {
            tracing::error!(policy, "rate limit check against an unknown policy; allowed");
            inner
                .metrics
                .rate_limit_decisions_total
                .with_label_values(&[UNKNOWN_POLICY, decision_label::BYPASSED])
                .inc();
            return Err(Decision::unlimited(UNKNOWN_POLICY.into()));
        };
        if !inner.enabled {
            return Err(Decision::unlimited(named.name.clone()));
        }
        let quota = tenant
            .and_then(|tenant| inner.overrides.get(tenant))
            .and_then(|quotas| quotas.get(policy))
            .copied()
            .unwrap_or(named.quota);
        Ok((&named.name, quota))
    }

    fn locally(&self, step: Step<'_>, bypassed: bool) -> Decision {
        let outcome = self.inner.local.check(step.name, step.key, step.quota);
        Decision::counted(step.name.clone(), step.quota, outcome, bypassed)
    }

    /// The decision `rate_limit.failure_mode` takes when Redis could not decide.
    fn failure_mode(&self, step: Step<'_>, unavailable: &Unavailable) -> Decision {
        match self.inner.failure_mode {
            FailureMode::Fallback => self.locally(step, true),
            FailureMode::Allow => Decision { bypassed: true, ..Decision::unlimited(step.name.clone()) },
            FailureMode::Deny => Decision {
                policy: step.name.clone(),
                verdict: Verdict::Unavailable,
                counted: None,
                retry_after: unavailable.retry_in,
                bypassed: true,
            },
        }
    }

    fn count(&self, decision: &Decision) {
        self.inner.metrics.rate_limit_decisions_total.with_label_values(&[decision.policy(), decision.label()]).inc();
    }

    /// Whether decisions are taken in Redis (shared by every replica).
    pub fn is_shared(&self) -> bool {
        self.inner.enabled && self.inner.shared.is_some()
    }

    /// The per-caller check of an authenticated request, in one Redis round trip when the limiter
    /// is shared: the client's pending `anonymous` check (left in the request's
    /// [`RateLimitRecord`] by [`LimitByClientIpLayer`]), then `listing` (a revocation), then
    /// `authenticated` for `tenant:subject` (with the tenant's overrides), then `write` when
    /// `write`. The first refusal stops everything after it, so a request refused for one reason
    /// spends nothing of the budgets after it; a listed caller spends no per-caller budget.
    /// Every decision is counted and recorded for the response headers. `counter`: a fully
    /// prefixed Redis key whose integer value the same call reads (a tenant's membership epoch).
    pub async fn enforce_caller(
        &self,
        extensions: &Extensions,
        tenant: &str,
        subject: &str,
        write: bool,
        listing: Listing<'_>,
        counter: Option<&str>,
    ) -> CallerCheck {
        let record = extensions.get::<RateLimitRecord>();
        let pending = record.and_then(RateLimitRecord::take_pending);
        let caller_key = format!("{tenant}:{subject}");
        let policies = [(ANONYMOUS, pending.as_deref(), None), (AUTHENTICATED, Some(&*caller_key), Some(tenant))];
        let write_policy = [(WRITE, Some(&*caller_key), Some(tenant))];
        let wanted = policies.iter().chain(write.then_some(&write_policy[0]));
        let mut steps: [Option<Step<'_>>; MAX_BUCKETS] = [None; MAX_BUCKETS];
        let mut count = 0;
        // How many steps are decided before the listing: the anonymous one, when pending.
        let mut gate = 0;
        for &(policy, key, tenant) in wanted {
            let Some(key) = key else { continue };
            match self.resolve(policy, tenant) {
                Ok((name, quota)) => {
                    steps[count] = Some(Step { name, key, quota });
                    count += 1;
                }
                // Unknown or disabled: allowed and reported as such, nothing to count.
                Err(decision) => note(record, decision),
            }
            if policy == ANONYMOUS {
                gate = count;
            }
        }
        let steps = &steps[..count];
        let (refusal, listing, counter) = self.decide_steps(steps, gate, listing, counter, record).await;
        CallerCheck { refusal: refusal.and_then(|decision| decision.problem()), listing, counter }
    }

    /// Decides `steps` in order, stopping at the first refusal, with `listing` looked up after
    /// the first `gate` steps (in the same script when Redis decides). Returns the refusal, if
    /// any, what became of the listing, and the `counter` read when Redis answered.
    async fn decide_steps(
        &self,
        steps: &[Option<Step<'_>>],
        gate: usize,
        listing: Listing<'_>,
        counter: Option<&str>,
        record: Option<&RateLimitRecord>,
    ) -> (Option<Decision>, ListingAnswer, Option<i64>) {
        // A caller known to be listed is only checked against what comes before the listing.
        let steps = if listing == Listing::Listed { &steps[..gate.min(steps.len())] } else { steps };
        let reached = match listing {
            Listing::None => ListingAnswer::NotAsked,
            Listing::Listed => ListingAnswer::Answered(true),
            Listing::Lookup(_) => ListingAnswer::NotAsked,
        };
        let lookup = match listing {
            Listing::Lookup(key) => Some((gate, key)),
            Listing::None | Listing::Listed => None,
        };
        let steps = steps.iter().flatten().copied();
        // Counts and records each decision in order; the first refusal ends the run, and when it
        // came before the listing, the listing was never reached. `counter` is passed through.
        let run = |decisions: &mut dyn Iterator<Item = Decision>, after: ListingAnswer, counter: Option<i64>| {
            for (index, decision) in decisions.enumerate() {
                self.count(&decision);
                note(record, decision.clone());
                if !decision.is_allowed() {
                    let listing = if index < gate { ListingAnswer::NotAsked } else { after };
                    return (Some(decision), listing, counter);
                }
            }
            (None, after, counter)
        };
        match &self.inner.shared {
            Some(shared) if self.inner.enabled => {
                let mut buckets = [None; MAX_BUCKETS];
                for (slot, step) in buckets.iter_mut().zip(steps.clone()) {
                    *slot = Some(step.bucket());
                }
                match shared.check_all(&buckets, lookup, counter).await {
                    Ok(answer) => {
                        let after = match listing {
                            Listing::Lookup(_) => ListingAnswer::Answered(answer.listed),
                            _ => reached,
                        };
                        // A listed caller stopped the script at the listing: only the steps
                        // before it were decided (and allowed, or the script would not have
                        // reached the listing). Outcomes end where the script stopped.
                        let decided = if answer.listed { gate } else { usize::MAX };
                        let mut decisions = steps.zip(answer.outcomes).take(decided).map_while(|(step, outcome)| {
                            outcome.map(|outcome| Decision::counted(step.name.clone(), step.quota, outcome, false))
                        });
                        run(&mut decisions, after, answer.counter)
                    }
                    Err(unavailable) => {
                        let after = match (&listing, &unavailable.error) {
                            (Listing::Lookup(_), Some(error)) => ListingAnswer::Failed(error.clone()),
                            _ => reached,
                        };
                        run(&mut steps.map(|step| self.failure_mode(step, &unavailable)), after, None)
                    }
                }
            }
            _ => run(&mut steps.map(|step| self.locally(step, false)), reached, None),
        }
    }

    /// The client's anonymous refusal remembered in process, still in force: the decision to
    /// answer with, without asking Redis. Counted like any refusal.
    pub fn remembered_refusal(&self, client_key: &str) -> Option<Decision> {
        let remembered = self.inner.refused.get(client_key)?;
        let now = Instant::now();
        if now >= remembered.allow_at {
            self.inner.refused.invalidate(client_key);
            return None;
        }
        let name = self.inner.policies.get(ANONYMOUS)?.name.clone();
        let outcome = Outcome {
            allowed: false,
            remaining: 0,
            retry_after: remembered.allow_at - now,
            reset_after: remembered.full_at.saturating_duration_since(now),
        };
        let decision = Decision::counted(name, remembered.quota, outcome, false);
        self.count(&decision);
        Some(decision)
    }

    /// Remembers an anonymous refusal until its retry-after: GCRA allows nothing before then.
    pub fn remember_refusal(&self, client_key: String, decision: &Decision) {
        if let (Verdict::Limited, Some((quota, outcome))) = (decision.verdict, decision.counted) {
            let now = Instant::now();
            let remembered =
                Remembered { quota, allow_at: now + outcome.retry_after, full_at: now + outcome.reset_after };
            self.inner.refused.insert(client_key, remembered);
        }
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

impl<'a> Step<'a> {
    fn bucket(self) -> Bucket<'a> {
        Bucket { policy: self.name, key: self.key, quota: self.quota }
    }
}

/// Records `decision` for the response headers, when the request has a record.
fn note(record: Option<&RateLimitRecord>, decision: Decision) {
    if let Some(record) = record {
        record.record(decision);
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

    /// A request whose anonymous check was left pending by the middleware.
    fn pending(key: &str) -> Extensions {
        let record = RateLimitRecord::default();
        record.defer_anonymous(key.to_owned());
        let mut extensions = Extensions::new();
        extensions.insert(record);
        extensions
    }

    #[tokio::test]
    async fn the_caller_check_stops_at_an_exhausted_anonymous_budget_then_at_a_listed_caller() {
        let mut config = tiny();
        config.policies.insert(WRITE.into(), Policy { rate: 1, period: Duration::from_secs(60), burst: 1 });
        let (limiter, metrics) = limiter(config);
        // Anonymous burst 2: the third pending check is refused and nothing after it counted. The
        // in-process limiter leaves a Redis lookup to its caller (`NotAsked`).
        for subject in ["u0", "u1"] {
            let check = limiter
                .enforce_caller(&pending("ip"), "acme", subject, false, Listing::Lookup("k"), Some("epoch"))
                .await;
            assert_eq!((check.refusal.is_some(), check.listing), (false, ListingAnswer::NotAsked));
            assert_eq!(check.counter, None, "nor does it read a Redis counter");
        }
        let check = limiter.enforce_caller(&pending("ip"), "acme", "u2", true, Listing::Listed, None).await;
        assert_eq!(check.refusal.map(|p| p.status()), Some(axum::http::StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(check.listing, ListingAnswer::NotAsked, "the listing is not reached");
        // A listed caller is answered as listed and spends no per-caller budget.
        let check = limiter.enforce_caller(&pending("other-ip"), "acme", "u2", true, Listing::Listed, None).await;
        assert_eq!((check.refusal.is_some(), check.listing), (false, ListingAnswer::Answered(true)));
        let check = limiter.enforce_caller(&Extensions::new(), "acme", "u2", true, Listing::None, None).await;
        assert!(check.refusal.is_none(), "u2's authenticated and write budgets are whole");
        // u1 spent its one authenticated request above (burst 1).
        let check = limiter.enforce_caller(&Extensions::new(), "acme", "u1", true, Listing::None, None).await;
        assert!(check.refusal.is_some());
        let text = metrics.render();
        assert!(text.contains(r#"rate_limit_decisions_total{decision="limited",policy="anonymous"} 1"#), "{text}");
        assert!(text.contains(r#"rate_limit_decisions_total{decision="allowed",policy="write"} 1"#), "{text}");
        assert!(text.contains(r#"rate_limit_decisions_total{decision="limited",policy="authenticated"} 1"#), "{text}");
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
