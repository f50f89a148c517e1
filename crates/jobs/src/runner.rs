//! Running the queue: workers that claim and run jobs, the schedule that enqueues periodic jobs,
//! the sampler behind the queue gauges, and the drain at shutdown.

use std::{collections::BTreeMap, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use palisade_ops::Metrics;
use palisade_store::Backend;
use tokio::{sync::watch, task::JoinSet};

use crate::{Failed, Job, JobFailure, JobsConfig, Queue};

/// Runs one kind of job. Handlers must be idempotent: a job whose worker died mid-attempt runs
/// again once its lease expires.
pub trait Handler: Send + Sync + 'static {
    fn run(&self, job: Job) -> BoxFuture<'static, Result<(), JobFailure>>;
}

impl<F> Handler for F
where
    F: Fn(Job) -> BoxFuture<'static, Result<(), JobFailure>> + Send + Sync + 'static,
{
    fn run(&self, job: Job) -> BoxFuture<'static, Result<(), JobFailure>> {
        self(job)
    }
}

/// A job enqueued once every `every` over all instances: its key names the period, so replicas
/// enqueueing the same period add one job between them.
#[derive(Debug, Clone)]
struct Schedule {
    kind: &'static str,
    every: Duration,
}

/// The handlers, by job kind, and the periodic jobs.
#[derive(Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Handler>>,
    schedules: Vec<Schedule>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl Registry {
    pub fn handle(mut self, kind: &'static str, handler: impl Handler) -> Self {
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    /// Runs `kind` (whose handler must be registered) once every `every`, with an empty payload.
    pub fn every(mut self, kind: &'static str, every: Duration) -> Self {
        self.schedules.push(Schedule { kind, every });
        self
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }
}

/// The key of a periodic job for the period `now` falls in.
fn period_key(kind: &str, every: Duration, now: time::OffsetDateTime) -> String {
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let period = seconds / every.as_secs().max(1);
    format!("schedule:{kind}:{period}")
}

/// How often the gauges are refreshed from the database, and abandoned last attempts reaped.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);
/// The schedule looks at the clock at least this often.
const SCHEDULE_TICK: Duration = Duration::from_secs(60);
/// Pause after the database refused a claim (down, not migrated yet) before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Runner {
    queue: Queue,
    registry: Registry,
    config: JobsConfig,
    metrics: Arc<Metrics>,
}

/// The running workers; [`RunnerHandle::drain`] stops them.
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Runner {
    pub fn new(queue: Queue, registry: Registry, config: JobsConfig, metrics: Arc<Metrics>) -> Self {
        for kind in registry.kinds() {
            // Exported from the start, so `increase(...)` in the alert rules has a series to work on.
            metrics.jobs_failures_total.with_label_values(&[kind]);
            metrics.jobs_dead_letters_total.with_label_values(&[kind]);
        }
        Self { queue, registry, config, metrics }
    }

    /// Workers on PostgreSQL: `jobs.workers`; on SQLite one (a single writer).
    fn worker_count(&self) -> usize {
        match self.queue.backend() {
            Backend::Postgres => self.config.workers.max(1),
            Backend::Sqlite => 1,
        }
    }

    /// Starts the workers, the schedule and the sampler.
    pub fn start(self) -> RunnerHandle {
        let (stop, stopped) = watch::channel(false);
        let workers = self.worker_count();
        let runner = Arc::new(self);
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(runner.clone().work(stopped.clone()));
        }
        tasks.spawn(runner.clone().schedule(stopped.clone()));
        tasks.spawn(runner.sample(stopped));
        RunnerHandle { stop, tasks }
    }

    async fn work(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let pause = match self.queue.claim().await {
                Ok(Some(job)) => {
                    self.run(job, stop.clone()).await;
                    continue;
                }
                Ok(None) => self.config.poll_interval,
                Err(error) => {
                    tracing::warn!(%error, "cannot claim background jobs; retrying");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Runs one attempt to its end, or, once shutdown has waited `drain_timeout`, releases it.
    pub async fn run(&self, job: Job, mut stop: watch::Receiver<bool>) {
        let attempt = async {
            let Some(handler) = self.registry.handlers.get(job.kind.as_str()) else {
                return Err(JobFailure(format!("no handler for job kind {:?}", job.kind)));
            };
            match tokio::time::timeout(
                self.config.job_timeout,
                AssertUnwindSafe(handler.run(job.clone())).catch_unwind(),
            )
            .await
            {
                Ok(Ok(result)) => result,
                Ok(Err(_panic)) => Err(JobFailure("the handler panicked".to_owned())),
                Err(_elapsed) => Err(JobFailure(format!("timed out after {:?}", self.config.job_timeout))),
            }
        };
        let drained = async {
            let _ = stop.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(self.config.drain_timeout).await;
        };
        let outcome = tokio::select! {
            result = attempt => Some(result),
            () = drained => None,
        };
        let recorded = match outcome {
            Some(Ok(())) => self.queue.complete(&job).await,
            Some(Err(failure)) => self.failed(&job, &failure).await,
            None => {
                tracing::info!(job = %job.id, kind = job.kind, "shutdown deadline reached; job released to the queue");
                self.queue.release(&job).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the job is claimed again: handlers are idempotent.
            tracing::warn!(%error, job = %job.id, kind = job.kind, "cannot record the end of a job attempt");
        }
    }

    async fn failed(&self, job: &Job, failure: &JobFailure) -> Result<(), crate::JobsError> {
        self.metrics.jobs_failures_total.with_label_values(&[job.kind.as_str()]).inc();
        match self.queue.fail(job, &failure.0).await? {
            Failed::RetryAt(at) => {
                tracing::warn!(job = %job.id, kind = job.kind, attempt = job.attempts, error = %failure, retry_at = %at, "job failed; will retry");
            }
            Failed::Dead => {
                self.metrics.jobs_dead_letters_total.with_label_values(&[job.kind.as_str()]).inc();
                tracing::error!(job = %job.id, kind = job.kind, attempts = job.attempts, error = %failure, "job dead-lettered after its last attempt");
            }
            Failed::LeaseLost => {
                tracing::warn!(job = %job.id, kind = job.kind, "job failed after its lease ran out; another worker has it");
            }
        }
        Ok(())
    }

    /// Enqueues the periodic jobs of the current period (a no-op when another instance has).
    pub async fn enqueue_due_schedules(&self) -> Result<(), crate::JobsError> {
        let now = self.queue.now();
        for schedule in &self.registry.schedules {
            let key = period_key(schedule.kind, schedule.every, now);
            if self.queue.enqueue(schedule.kind, &key, &serde_json::json!({})).await? {
                tracing::debug!(kind = schedule.kind, "scheduled job enqueued");
            }
        }
        Ok(())
    }

    async fn schedule(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = self.registry.schedules.iter().map(|s| s.every).min().unwrap_or(SCHEDULE_TICK).min(SCHEDULE_TICK);
        while !*stop.borrow() {
            if let Err(error) = self.enqueue_due_schedules().await {
                tracing::warn!(%error, "cannot enqueue scheduled jobs; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Refreshes the queue gauges and dead-letters abandoned last attempts.
    pub async fn sample_once(&self) -> Result<(), crate::JobsError> {
        for kind in self.queue.reap_abandoned().await? {
            self.metrics.jobs_dead_letters_total.with_label_values(&[kind.as_str()]).inc();
            tracing::error!(kind, "job dead-lettered: its worker stopped during its last attempt");
        }
        let depth = self.queue.depth().await?;
        self.metrics.jobs_queue_depth.set(depth.queued);
        self.metrics.jobs_oldest_age_seconds.set(depth.oldest_due.as_secs_f64());
        self.metrics.jobs_running_overdue.set(depth.running_overdue);
        Ok(())
    }

    async fn sample(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(error) = self.sample_once().await {
                tracing::debug!(%error, "cannot sample the job queue");
            }
            tokio::select! {
                () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

impl RunnerHandle {
    /// Stops claiming; running jobs get `jobs.drain_timeout` to finish, the rest are released.
    /// Call it when shutdown begins, alongside the HTTP drain.
    pub fn begin_drain(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for every worker to stop (after [`RunnerHandle::begin_drain`]).
    pub async fn drained(mut self) {
        self.begin_drain();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periodic_job_has_one_key_per_period() {
        let hour = Duration::from_secs(3600);
        let at = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).expect("time");
        assert_eq!(period_key("cleanup", hour, at(7200)), period_key("cleanup", hour, at(10_799)));
        assert_ne!(period_key("cleanup", hour, at(10_799)), period_key("cleanup", hour, at(10_800)));
        assert_eq!(period_key("cleanup", hour, at(7200)), "schedule:cleanup:2");
    }
}
