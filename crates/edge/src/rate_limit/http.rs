//! Rate limits over HTTP: the IETF headers (draft-ietf-httpapi-ratelimit-headers), the 429
//! problem, the pre-authentication middleware and the post-authentication helper.
//!
//! Headers, one list item per policy that applied to the request:
//!
//! ```text
//! RateLimit-Policy: "anonymous";q=200;w=2
//! RateLimit: "anonymous";r=57;t=2
//! ```
//!
//! `q` is the burst and `w` the seconds an empty bucket takes to refill completely (so `q/w` is
//! the sustained rate); `r` is the requests left now and `t` the seconds until the bucket is full
//! again, rounded up.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::Request,
    http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::{
    TryFutureExt,
    future::{BoxFuture, Either, MapOk},
};
use palisade_ops::Problem;
use tower::{Layer, Service, ServiceExt};

use super::{ANONYMOUS, Decision, RateLimiter, Verdict};
use crate::client_ip::client_ip_of;

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Probes and metrics are never limited: a throttled kubelet or Prometheus would take a healthy
/// pod out of service or blind its monitoring.
pub const UNLIMITED_PATHS: &[&str] = &palisade_ops::PROBE_PATHS;

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    /// The `RateLimit-Policy` and `RateLimit` list items for this decision (when a limiter counted it).
    fn header_items(&self) -> Option<(String, String)> {
        let (quota, outcome) = self.counted?;
        let name = self.policy();
        Some((
            format!("\"{name}\";q={};w={}", quota.burst(), ceil_secs(quota.window()).max(1)),
            format!("\"{name}\";r={};t={}", outcome.remaining, ceil_secs(outcome.reset_after)),
        ))
    }

    /// Appends this decision's `RateLimit-Policy` and `RateLimit` items to `headers`.
    pub fn append_headers(&self, headers: &mut HeaderMap) {
        if let Some((policy, limit)) = self.header_items()
            && let (Ok(policy), Ok(limit)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&limit))
        {
            headers.append(RATELIMIT_POLICY.clone(), policy);
            headers.append(RATELIMIT.clone(), limit);
        }
    }

    /// The refusal: 429 (or 503 when Redis could not decide and the failure mode is `deny`)
    /// problem+json with `Retry-After` (whole seconds, at least 1) and the rate-limit headers.
    /// `None` for an allowed request.
    pub fn problem(&self) -> Option<Problem> {
        let retry_after = ceil_secs(self.retry_after()?).max(1);
        let problem = match self.verdict() {
            Verdict::Allowed => return None,
            Verdict::Limited => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!("The `{}` rate limit is exhausted; retry in {retry_after} s.", self.policy()),
            ),
            Verdict::Unavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate-limiter-unavailable",
                "Service unavailable",
                format!("Rate limiting is temporarily unavailable; retry in {retry_after} s."),
            ),
        };
        let mut headers = HeaderMap::new();
        self.append_headers(&mut headers);
        let problem = headers.into_iter().fold(
            problem
                .with_extension("policy", self.policy().into())
                .with_extension("retry_after", retry_after.into())
                .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after)),
            |problem, (name, value)| match name {
                Some(name) => problem.with_header(name, value),
                None => problem,
            },
        );
        Some(problem)
    }
}

/// The decisions taken for one request, in its extensions, so that every policy that applied
/// (the anonymous one here, the per-caller ones in the tenant extractor) reports on the response;
/// and the anonymous check left pending for an authenticated request, so that it can be made in
/// the same Redis round trip as the per-caller ones (see [`RateLimiter::enforce_caller`]).
/// One allocation per request: the decisions live in a fixed array.
#[derive(Debug, Clone, Default)]
pub struct RateLimitRecord(Arc<Mutex<Entries>>);

/// Policies one request reports at most; anonymous, authenticated and write are three.
const RECORDED: usize = 4;

#[derive(Debug, Default)]
struct Entries {
    /// The client key of an anonymous check not made yet.
    pending: Option<String>,
    decisions: [Option<Decision>; RECORDED],
}

impl RateLimitRecord {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a decision, replacing an earlier one of the same policy.
    pub fn record(&self, decision: Decision) {
        let mut entries = self.lock();
        let slots = &mut entries.decisions;
        let slot = match slots.iter().position(|d| d.as_ref().is_some_and(|d| d.policy() == decision.policy())) {
            Some(index) => index,
            None => match slots.iter().position(Option::is_none) {
                Some(index) => index,
                // More policies than a request ever has: the oldest report gives way.
                None => {
                    slots.rotate_left(1);
                    RECORDED - 1
                }
            },
        };
        slots[slot] = Some(decision);
    }

    /// Leaves the `anonymous` check of `client_key` pending, for whoever makes the next Redis call.
    pub fn defer_anonymous(&self, client_key: String) {
        self.lock().pending = Some(client_key);
    }

    /// Takes the pending anonymous check (its client key), if any: the taker makes it.
    pub fn take_pending(&self) -> Option<String> {
        self.lock().pending.take()
    }

    /// Replaces any rate-limit headers on `headers` with those of every recorded decision.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.remove(&RATELIMIT_POLICY);
        headers.remove(&RATELIMIT);
        for decision in self.lock().decisions.iter().flatten() {
            decision.append_headers(headers);
        }
    }
}

/// The layer of [`limit_by_client_ip`]. Probes, and every request while limiting is off, pass
/// straight to the inner service: only a request that is limited pays for a boxed future.
#[derive(Debug, Clone)]
pub struct LimitByClientIpLayer(pub RateLimiter);

impl<S> Layer<S> for LimitByClientIpLayer {
    type Service = LimitByClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitByClientIp { limiter: self.0.clone(), inner }
    }
}

/// The service [`LimitByClientIpLayer`] makes.
#[derive(Debug, Clone)]
pub struct LimitByClientIp<S> {
    limiter: RateLimiter,
    inner: S,
}

type IntoResponseFn<R> = fn(R) -> Response;

impl<S> Service<Request> for LimitByClientIp<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<MapOk<S::Future, IntoResponseFn<S::Response>>, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !self.limiter.is_enabled() || UNLIMITED_PATHS.contains(&request.uri().path()) {
            return Either::Left(self.inner.call(request).map_ok(IntoResponse::into_response as IntoResponseFn<_>));
        }
        // The ready service goes into the future; this one keeps a fresh clone for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let limiter = self.limiter.clone();
        Either::Right(Box::pin(async move { Ok(limit_by_client_ip(limiter, request, ready).await) }))
    }
}

/// Middleware: the `anonymous` policy per client address, on every route except
/// [`UNLIMITED_PATHS`]. Needs the client IP resolved first (see `client_ip::resolve`).
///
/// A request without credentials is checked at once. A request with an `Authorization` header
/// leaves its check pending in the [`RateLimitRecord`]: the tenant extractor makes it in the same
/// Redis round trip as the revocation lookup and the per-caller policies. When nothing took it
/// (authentication failed, a route without tenant, a route that does not authenticate), it is
/// made here after the response, and a refusal is remembered in process until its retry-after,
/// so the client's next requests are refused up front: a flood of junk tokens ends in 429s.
async fn limit_by_client_ip<S>(limiter: RateLimiter, mut request: Request, inner: S) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    let key = client_ip_of(request.extensions()).map_or_else(|| "unknown".to_owned(), |ip| limiter.client_key(ip));
    if let Some(refused) = limiter.remembered_refusal(&key)
        && let Some(problem) = refused.problem()
    {
        return problem.into_response();
    }
    let record = RateLimitRecord::default();
    if request.headers().contains_key(header::AUTHORIZATION) {
        record.defer_anonymous(key);
    } else {
        let decision = limiter.check(ANONYMOUS, &key).await;
        if let Some(problem) = decision.problem() {
            limiter.remember_refusal(key, &decision);
            return problem.into_response();
        }
        record.record(decision);
    }
    request.extensions_mut().insert(record.clone());
    let Ok(response) = inner.oneshot(request).await;
    let mut response = response.into_response();
    if let Some(key) = record.take_pending() {
        let decision = limiter.check(ANONYMOUS, &key).await;
        limiter.remember_refusal(key, &decision);
        record.record(decision);
    }
    record.write_headers(response.headers_mut());
    response
}

/// For the auth code, once tenant and subject are known: checks `policy` for them, records the
/// decision so its headers go out with the response, and returns the 429 problem when refused.
pub async fn enforce(
    limiter: &RateLimiter,
    extensions: &Extensions,
    policy: &str,
    tenant: &str,
    subject: &str,
) -> Result<Decision, Problem> {
    let decision = limiter.check_tenant(policy, tenant, subject).await;
    if let Some(record) = extensions.get::<RateLimitRecord>() {
        record.record(decision.clone());
    }
    match decision.problem() {
        Some(problem) => Err(problem),
        None => Ok(decision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::{Policy, RateLimitConfig};
    use palisade_ops::{Metrics, metrics::BuildInfo};

    async fn limiter(rate: u32, period: Duration, burst: u32) -> RateLimiter {
        let mut config = RateLimitConfig::default();
        config.policies.insert(ANONYMOUS.into(), Policy { rate, period, burst });
        let metrics = Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics");
        RateLimiter::new(&config, None, metrics).expect("valid")
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }

    #[tokio::test]
    async fn headers_follow_the_ietf_draft() {
        let limiter = limiter(100, Duration::from_secs(1), 200).await;
        let decision = limiter.check(ANONYMOUS, "k").await;
        let mut headers = HeaderMap::new();
        decision.append_headers(&mut headers);
        assert_eq!(headers["ratelimit-policy"], r#""anonymous";q=200;w=2"#);
        assert_eq!(headers["ratelimit"], r#""anonymous";r=199;t=1"#);
        assert!(decision.problem().is_none());
    }

    #[tokio::test]
    async fn a_refusal_is_a_429_with_retry_after_in_whole_seconds() {
        let limiter = limiter(1, Duration::from_secs(10), 1).await;
        assert!(limiter.check(ANONYMOUS, "k").await.is_allowed());
        let refused = limiter.check(ANONYMOUS, "k").await;
        let response = refused.problem().expect("refused").into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap_or_default().parse().unwrap_or(0);
        assert!((9..=10).contains(&retry), "{retry}");
        assert_eq!(response.headers()["ratelimit-policy"], r#""anonymous";q=1;w=10"#);
        assert!(response.headers()["ratelimit"].to_str().unwrap_or_default().starts_with(r#""anonymous";r=0;t="#));
    }

    #[tokio::test]
    async fn a_record_reports_every_policy_once() {
        let limiter = limiter(1, Duration::from_secs(10), 5).await;
        let record = RateLimitRecord::default();
        record.record(limiter.check(ANONYMOUS, "k").await);
        record.record(limiter.check(ANONYMOUS, "k").await);
        record.record(limiter.check_tenant("authenticated", "acme", "u1").await);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static("stale"));
        record.write_headers(&mut headers);
        let values: Vec<_> = headers.get_all("ratelimit").iter().map(|v| v.to_str().unwrap_or_default()).collect();
        assert_eq!(values, [r#""anonymous";r=3;t=20"#, r#""authenticated";r=99;t=1"#]);
    }
}
