//! The `[jobs]` configuration section (docs/configuration.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run the worker and the scheduler in this instance. Off, jobs still enqueue (another
    /// instance, or this one later, runs them).
    pub enabled: bool,
    /// Jobs one instance runs at once on PostgreSQL; SQLite always runs one.
    pub workers: usize,
    /// How often an idle worker looks for due jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A job attempt running longer than this fails (and is retried); it is also the lease after
    /// which a job claimed by an instance that died is claimed again.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled at each further attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// At shutdown, running jobs get this long to finish; the rest are released to the queue
    /// (their attempt not counted) for another instance.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Finished and dead-lettered jobs are deleted after this long (their keys can then be reused).
    #[serde(with = "humantime_serde")]
    pub retain_finished: Duration,
    /// How often the cleanup jobs are scheduled (once per period over all instances).
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// Audit events older than this are deleted by the audit retention job.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// Outbox events older than this are deleted, delivered or not (a relay, once there, delivers
    /// long before): the table must not grow without bound.
    #[serde(with = "humantime_serde")]
    pub outbox_retention: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: 2,
            poll_interval: Duration::from_secs(1),
            job_timeout: Duration::from_secs(60),
            max_attempts: 10,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(10),
            retain_finished: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(3600),
            // One year of 365.25 days, which humantime writes as `1year`.
            audit_retention: Duration::from_secs(31_557_600),
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl JobsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.workers == 0 {
            problems.push("jobs.workers must be greater than 0".to_owned());
        }
        if self.max_attempts == 0 {
            problems.push("jobs.max_attempts must be greater than 0".to_owned());
        }
        for (key, value) in [
            ("jobs.poll_interval", self.poll_interval),
            ("jobs.job_timeout", self.job_timeout),
            ("jobs.backoff_base", self.backoff_base),
            ("jobs.cleanup_interval", self.cleanup_interval),
        ] {
            if value.is_zero() {
                problems.push(format!("{key} must be greater than 0"));
            }
        }
        if self.backoff_base > self.backoff_max {
            problems.push("jobs.backoff_base exceeds jobs.backoff_max".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_nonsense_is_named() {
        assert!(JobsConfig::default().problems().is_empty());
        let config = JobsConfig { workers: 0, backoff_base: Duration::from_secs(7200), ..JobsConfig::default() };
        let problems = config.problems();
        assert!(problems.iter().any(|p| p.starts_with("jobs.workers")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("exceeds jobs.backoff_max")), "{problems:?}");
    }
}
