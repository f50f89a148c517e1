//! The Redis store: one atomic Lua script per request, so every replica draws on one budget and a
//! request costs one round trip whatever it is checked against (its buckets, a deny-list key
//! such as a revoked token's, and a counter the caller reads on the way, such as a tenant's
//! membership epoch). Bounded by its own short timeout and a circuit breaker: a slow or
//! absent Redis costs a request at most `redis_timeout`, and once the breaker opens, nothing at all.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use palisade_ops::Metrics;
use palisade_store::Redis;
use redis::Script;

use super::{
    breaker::{CircuitBreaker, Permit, Transition},
    gcra::{Outcome, Quota},
};

/// The `operation` label of Redis errors from the rate limiter.
const OPERATION: &str = "rate_limit";

/// The script: the GCRA function, then the driver that applies it to each bucket in turn.
const SCRIPT: &str = concat!(include_str!("gcra.lua"), include_str!("check.lua"));

/// Most buckets one request is checked against (anonymous, authenticated, write).
pub const MAX_BUCKETS: usize = 3;

#[derive(Debug)]
pub struct SharedStore {
    redis: Redis,
    script: Script,
    timeout: Duration,
    breaker: CircuitBreaker,
    metrics: Arc<Metrics>,
}

/// One bucket to decide: the policy name, the bucket id and the quota.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pub policy: &'a str,
    pub key: &'a str,
    pub quota: Quota,
}

/// What the script answered: the outcome of every bucket it decided, in order (it stops at the
/// first refusal or at a listed key), whether the deny-list key exists, and the counter read.
#[derive(Debug, Default)]
pub struct Answer {
    pub outcomes: [Option<Outcome>; MAX_BUCKETS],
    pub listed: bool,
    /// The value of the counter asked for (0 when the key does not exist); `None` when none was.
    pub counter: Option<i64>,
}

/// Redis could not decide; `retry_in` is a hint for clients refused because of it. `error` is
/// `None` when Redis was not asked at all (the circuit is open).
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub retry_in: Duration,
    pub error: Option<String>,
}

impl SharedStore {
    pub fn new(redis: Redis, timeout: Duration, breaker: CircuitBreaker, metrics: Arc<Metrics>) -> Self {
        Self { redis, script: Script::new(SCRIPT), timeout, breaker, metrics }
    }

    /// One bucket alone.
    #[cfg(test)]
    pub async fn check(&self, policy: &str, key: &str, quota: Quota) -> Result<Outcome, Unavailable> {
        let answer = self.check_all(&[Some(Bucket { policy, key, quota })], None, None).await?;
        answer.outcomes[0].ok_or(Unavailable { retry_in: Duration::from_secs(1), error: Some("no outcome".into()) })
    }

    /// Decides `buckets` (the `Some` ones) in order, in one script (one EVALSHA). `lookup`: a
    /// (fully prefixed) key whose existence refuses the request, looked up after the first `.0`
    /// buckets were allowed. `counter`: a (fully prefixed) key whose integer value is read in the
    /// same call. Takes a fixed array's slots rather than a `Vec`: no allocation.
    pub async fn check_all(
        &self,
        buckets: &[Option<Bucket<'_>>],
        lookup: Option<(usize, &str)>,
        counter: Option<&str>,
    ) -> Result<Answer, Unavailable> {
        if let Permit::Rejected(left) = self.breaker.permit(Instant::now()) {
            return Err(Unavailable { retry_in: left.max(Duration::from_secs(1)), error: None });
        }
        let buckets = buckets.iter().flatten().take(MAX_BUCKETS);
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets.clone() {
            invocation.key(self.redis.key(&["ratelimit", bucket.policy, bucket.key]));
        }
        let gate = match lookup {
            Some((gate, key)) => {
                invocation.key(key);
                i64::try_from(gate).unwrap_or(-1)
            }
            None => -1,
        };
        if let Some(key) = counter {
            invocation.key(key);
        }
        invocation.arg(buckets.clone().count()).arg(gate);
        for bucket in buckets.clone() {
            invocation.arg(bucket.quota.interval_us()).arg(bucket.quota.burst());
        }
        let call = self.redis.run(OPERATION, |mut connection| async move {
            // EVALSHA, falling back to loading the script when Redis does not know it yet.
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        });
        let failure = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(values)) => {
                if self.breaker.success() == Some(Transition::Closed) {
                    tracing::info!("rate limiter: Redis answers again; shared limits resume");
                }
                let micros = |v: i64| u64::try_from(v).unwrap_or(0);
                let mut answer = Answer {
                    listed: values.first() == Some(&1),
                    counter: values.get(1).copied().filter(|value| *value >= 0),
                    ..Answer::default()
                };
                for ((slot, bucket), triple) in
                    answer.outcomes.iter_mut().zip(buckets).zip(values.get(2..).unwrap_or_default().chunks_exact(3))
                {
                    *slot = Some(bucket.quota.outcome(triple[0] == 1, micros(triple[1]), micros(triple[2])));
                }
                return Ok(answer);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => {
                // `Redis::run` counts its own failures; this timeout fired before its own did.
                self.metrics.redis_error(OPERATION);
                format!("no answer within {:?}", self.timeout)
            }
        };
        let opened = self.breaker.failure(Instant::now()) == Some(Transition::Opened);
        if opened {
            tracing::warn!(error = %failure, "rate limiter: Redis unavailable; circuit open, using the failure mode");
        } else {
            tracing::debug!(error = %failure, "rate limiter: Redis call failed");
        }
        Err(Unavailable { retry_in: Duration::from_secs(1), error: Some(failure) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::memory::MemoryStore;
    use palisade_ops::metrics::BuildInfo;
    use palisade_store::RedisConfig;

    fn metrics() -> Arc<Metrics> {
        Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics")
    }

    fn store(url: &str, prefix: &str, metrics: Arc<Metrics>) -> SharedStore {
        let config = RedisConfig { url: Some(url.into()), key_prefix: prefix.to_owned(), ..Default::default() };
        let redis = Redis::connect(&config, metrics.clone()).expect("redis url").expect("redis configured");
        SharedStore::new(redis, Duration::from_millis(200), CircuitBreaker::new(2, Duration::from_secs(60)), metrics)
    }

    /// The test Redis, or `None` (outside CI) when none is configured: then the test does not run.
    fn redis_url(test: &str) -> Option<String> {
        match std::env::var("PALISADE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => panic!("PALISADE_TEST_REDIS_URL must be set in CI"),
            _ => {
                eprintln!("NOTICE: PALISADE_TEST_REDIS_URL is not set; the Redis {test} test did not run");
                None
            }
        }
    }

    #[tokio::test]
    async fn the_lua_script_decides_exactly_like_the_in_process_algorithm() {
        let Some(url) = redis_url("GCRA") else { return };
        let prefix = format!("palisade-edge-test-{}", std::process::id());
        let shared = store(&url, &prefix, metrics());
        let memory = MemoryStore::new(100, Duration::from_secs(10));
        let policy: Arc<str> = "parity".into();
        let quota = Quota::new(10, Duration::from_secs(1), 5).expect("quota");
        for n in 0..8 {
            let key = format!("key-{}", std::process::id());
            let remote = shared.check(&policy, &key, quota).await.expect("redis answers");
            let local = memory.check(&policy, &key, quota);
            assert_eq!((remote.allowed, remote.remaining), (local.allowed, local.remaining), "request {n}");
            let skew = remote.retry_after.abs_diff(local.retry_after) + remote.reset_after.abs_diff(local.reset_after);
            assert!(skew < Duration::from_millis(50), "request {n}: {remote:?} vs {local:?}");
        }
    }

    #[tokio::test]
    async fn the_script_reads_the_counter_it_is_given_with_or_without_a_lookup_and_buckets() {
        let Some(url) = redis_url("counter") else { return };
        let prefix = format!("palisade-edge-counter-{}", std::process::id());
        let metrics = metrics();
        let shared = store(&url, &prefix, metrics.clone());
        let counter = format!("{prefix}:epoch");
        let quota = Quota::new(10, Duration::from_secs(1), 5).expect("quota");
        let bucket = [Some(Bucket { policy: "counter", key: "k", quota })];
        let unlisted = format!("{prefix}:nobody");
        let answer = shared.check_all(&bucket, None, None).await.expect("redis answers");
        assert_eq!(answer.counter, None, "no counter asked for");
        assert_eq!(shared.check_all(&bucket, None, Some(&counter)).await.expect("answer").counter, Some(0));
        let config = RedisConfig { url: Some(url.as_str().into()), key_prefix: prefix.clone(), ..Default::default() };
        let redis = Redis::connect(&config, metrics).expect("redis url").expect("redis configured");
        for _ in 0..3 {
            redis.incr("test", &counter).await.expect("INCR");
        }
        for (buckets, lookup) in [(&bucket[..], None), (&bucket[..], Some((0, unlisted.as_str()))), (&[][..], None)] {
            let answer = shared.check_all(buckets, lookup, Some(&counter)).await.expect("redis answers");
            assert_eq!(answer.counter, Some(3), "{lookup:?}, {} buckets", buckets.len());
            assert!(!answer.listed);
            assert_eq!(answer.outcomes[0].is_some(), !buckets.is_empty(), "the bucket is still decided");
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_and_then_is_not_asked_at_all() {
        let metrics = metrics();
        // Port 1 refuses connections.
        let shared = store("redis://127.0.0.1:1", "unreachable", metrics.clone());
        let quota = Quota::new(10, Duration::from_secs(1), 5).expect("quota");
        let policy: Arc<str> = "anonymous".into();
        for _ in 0..2 {
            let started = Instant::now();
            assert!(shared.check(&policy, "k", quota).await.is_err());
            assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        }
        let started = Instant::now();
        for _ in 0..100 {
            assert!(shared.check(&policy, "k", quota).await.is_err());
        }
        assert!(started.elapsed() < Duration::from_millis(50), "the open circuit still waited on Redis");
        assert!(metrics.render().contains(r#"redis_errors_total{operation="rate_limit"} 2"#), "{}", metrics.render());
    }
}
