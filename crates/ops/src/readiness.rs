//! Readiness: may this instance receive traffic? Dependencies are checked concurrently, each
//! under its own timeout, and the result is cached briefly so that a storm of probes (many
//! kubelets, load balancers, curious humans) reaches the database at most once per TTL.
//! Once shutdown begins the answer is "no" at once, without asking anyone.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use tokio::{sync::Mutex, time::Instant};

/// The `[readiness]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessConfig {
    /// Each dependency check gives up after this long and counts as failed.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
    /// How long one readiness result is reused.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self { check_timeout: Duration::from_secs(2), cache_ttl: Duration::from_secs(1) }
    }
}

/// What one check found. The public answer names the state, never the error text (which can carry
/// host names); the error goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Ok,
    Unavailable,
    Timeout,
}

/// A dependency readiness depends on.
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// `Err` carries a description for the log.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The combined result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub shutting_down: bool,
    pub checks: BTreeMap<&'static str, CheckOutcome>,
}

impl Report {
    pub fn is_ready(&self) -> bool {
        !self.shutting_down && self.checks.values().all(|c| *c == CheckOutcome::Ok)
    }

    pub fn failing(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|(_, c)| **c != CheckOutcome::Ok).map(|(n, _)| *n).collect()
    }
}

#[derive(Debug)]
pub struct Readiness {
    config: ReadinessConfig,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    shutting_down: AtomicBool,
    cached: Mutex<Option<(Instant, Report)>>,
}

impl Readiness {
    pub fn new(config: ReadinessConfig, checks: Vec<Arc<dyn ReadinessCheck>>) -> Arc<Self> {
        Arc::new(Self { config, checks, shutting_down: AtomicBool::new(false), cached: Mutex::new(None) })
    }

    /// From now on the instance reports not ready, so load balancers stop sending new work.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The current report: cached when fresh; concurrent callers wait for one shared round of checks.
    pub async fn report(&self) -> Report {
        if self.is_shutting_down() {
            return Report { shutting_down: true, checks: BTreeMap::new() };
        }
        let mut cached = self.cached.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < self.config.cache_ttl
        {
            return report.clone();
        }
        let report = self.run_checks().await;
        *cached = Some((Instant::now(), report.clone()));
        report
    }

    async fn run_checks(&self) -> Report {
        let timeout = self.config.check_timeout;
        let outcomes = join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(timeout, check.check()).await {
                Ok(Ok(())) => CheckOutcome::Ok,
                Ok(Err(error)) => {
                    tracing::warn!(check = check.name(), %error, "readiness check failed");
                    CheckOutcome::Unavailable
                }
                Err(_) => {
                    tracing::warn!(check = check.name(), ?timeout, "readiness check timed out");
                    CheckOutcome::Timeout
                }
            };
            (check.name(), outcome)
        }))
        .await;
        Report { shutting_down: false, checks: outcomes.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        delay: Duration,
        fail: bool,
    }

    impl ReadinessCheck for Counting {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                if self.fail { Err("down".into()) } else { Ok(()) }
            })
        }
    }

    fn readiness(check: Arc<Counting>, timeout: Duration) -> Arc<Readiness> {
        let config = ReadinessConfig { check_timeout: timeout, cache_ttl: Duration::from_secs(1) };
        Readiness::new(config, vec![check])
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_storm_runs_the_checks_once_per_ttl() {
        let check = Arc::new(Counting { calls: AtomicUsize::new(0), delay: Duration::ZERO, fail: false });
        let readiness = readiness(check.clone(), Duration::from_secs(1));
        let reports = join_all((0..50).map(|_| readiness.report())).await;
        assert!(reports.iter().all(Report::is_ready));
        assert_eq!(check.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1100)).await;
        readiness.report().await;
        assert_eq!(check.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_dependency_is_reported_as_a_timeout() {
        let check = Arc::new(Counting { calls: AtomicUsize::new(0), delay: Duration::from_secs(5), fail: false });
        let report = readiness(check, Duration::from_millis(200)).report().await;
        assert_eq!(report.checks.get("fake"), Some(&CheckOutcome::Timeout));
        assert_eq!(report.failing(), vec!["fake"]);
    }

    #[tokio::test]
    async fn shutdown_makes_the_instance_unready_without_asking_dependencies() {
        let check = Arc::new(Counting { calls: AtomicUsize::new(0), delay: Duration::ZERO, fail: false });
        let readiness = readiness(check.clone(), Duration::from_secs(1));
        readiness.begin_shutdown();
        assert!(!readiness.report().await.is_ready());
        assert_eq!(check.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failing_dependency_makes_the_instance_unready() {
        let check = Arc::new(Counting { calls: AtomicUsize::new(0), delay: Duration::ZERO, fail: true });
        let report = readiness(check, Duration::from_secs(1)).report().await;
        assert_eq!(report.checks.get("fake"), Some(&CheckOutcome::Unavailable));
        assert!(!report.is_ready());
    }
}
