//! The queue against real databases: a SQLite file, and a fresh PostgreSQL database migrated by its
//! owner and used through the non-owner application role (so the grants are tested too). Every
//! test runs on both backends; in CI (`CI` set) a missing PostgreSQL fails instead of skipping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::FutureExt;
use palisade_jobs::{
    Backoff, Clock, Failed, Job, JobFailure, JobsConfig, ManualClock, Queue, Registry, Runner, SystemClock,
};
use palisade_ops::{Metrics, metrics::BuildInfo};
use palisade_store::{Database, DatabaseConfig};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    )*};
}

/// A migrated database of its own; `None` only outside CI when PostgreSQL is not configured.
struct TestDb {
    db: Database,
    url: String,
    metrics: Arc<Metrics>,
    _dir: Option<tempfile::TempDir>,
}

fn metrics() -> Arc<Metrics> {
    Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics")
}

async fn connect(url: &str, metrics: &Arc<Metrics>) -> Database {
    let config = DatabaseConfig { url: SecretString::from(url.to_owned()), ..Default::default() };
    Database::connect(&config, metrics.clone()).await.expect("connect")
}

async fn test_db(backend: Backend) -> Option<TestDb> {
    let metrics = metrics();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
            let db = connect(&url, &metrics).await;
            db.migrate().await.expect("migrate");
            Some(TestDb { db, url, metrics, _dir: Some(dir) })
        }
        Backend::Postgres => {
            let Ok(admin) = std::env::var("PALISADE_TEST_DATABASE_URL") else {
                assert!(std::env::var_os("CI").is_none(), "PALISADE_TEST_DATABASE_URL must be set in CI");
                eprintln!("NOTICE: PALISADE_TEST_DATABASE_URL is not set; the PostgreSQL variant did not run");
                return None;
            };
            let name = format!("palisade_jobs_{}", uuid::Uuid::now_v7().simple());
            let mut conn = PgConnection::connect(&admin).await.expect("connect as admin");
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create");
            let mut url = url::Url::parse(&admin).expect("admin url");
            url.set_path(&format!("/{name}"));
            let owner = connect(url.as_str(), &metrics).await;
            owner.migrate().await.expect("migrate");
            let mut owner_conn = PgConnection::connect(url.as_str()).await.expect("connect owner");
            sqlx::raw_sql(
                "DO $$ BEGIN CREATE ROLE palisade_test_app LOGIN IN ROLE palisade_app; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
            )
            .execute(&mut owner_conn)
            .await
            .expect("app role");
            owner.close().await;
            url.set_username("palisade_test_app").expect("user");
            url.set_password(None).expect("password");
            Some(TestDb { db: connect(url.as_str(), &metrics).await, url: url.to_string(), metrics, _dir: None })
        }
    }
}

const BACKOFF: Backoff = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(3600) };

fn start_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time")
}

fn queue_at(db: &Database, clock: &ManualClock, max_attempts: u32) -> Queue {
    Queue::new(db.clone(), Arc::new(clock.clone()), BACKOFF, max_attempts, Duration::from_secs(60))
}

async fn status_of(db: &Database, key: &str) -> (String, i32) {
    let mut tx = db.begin().await.expect("begin");
    let row: (String, i32) =
        palisade_store::on_tx!(&mut tx, |conn| sqlx::query_as("SELECT status, attempts FROM jobs WHERE key = $1")
            .bind(key)
            .fetch_one(conn)
            .await)
        .expect("job row");
    tx.commit().await.expect("commit");
    row
}

on_both_backends!(
    a_key_enqueues_one_job_however_often_it_is_enqueued,
    a_failing_job_backs_off_with_jitter_and_is_dead_lettered_after_its_last_attempt,
    a_job_whose_worker_vanished_is_claimed_again_when_its_lease_runs_out,
    the_runner_counts_failures_and_dead_letters_and_reports_the_queue,
    a_job_still_running_at_the_drain_deadline_is_released_without_counting_the_attempt,
    a_job_that_finishes_within_the_drain_deadline_is_done,
    replicas_scheduling_the_same_period_enqueue_one_job,
    a_deferred_job_runs_again_when_due_without_its_attempt_counted,
);

async fn a_deferred_job_runs_again_when_due_without_its_attempt_counted(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let clock = ManualClock::new(start_time());
    let queue = queue_at(&t.db, &clock, 1);
    queue.enqueue("demo", "deferred", &serde_json::json!({})).await.expect("enqueue");
    for _ in 0..3 {
        let job = queue.claim().await.expect("claim").expect("due");
        assert_eq!(job.attempts, 1, "a deferral does not use up the only attempt");
        assert!(queue.defer(&job, clock.now() + time::Duration::seconds(5)).await.expect("defer"));
        queue.complete(&job).await.expect("complete after defer is a no-op");
        assert_eq!(status_of(&t.db, "deferred").await, ("queued".to_owned(), 0));
        assert_eq!(queue.claim().await.expect("claim"), None, "not due before the deferral ends");
        clock.advance(time::Duration::seconds(5));
    }
    let job = queue.claim().await.expect("claim").expect("due");
    queue.complete(&job).await.expect("complete");
    assert_eq!(status_of(&t.db, "deferred").await, ("done".to_owned(), 1));
}

async fn a_key_enqueues_one_job_however_often_it_is_enqueued(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let clock = ManualClock::new(start_time());
    let queue = queue_at(&t.db, &clock, 3);
    assert!(queue.enqueue("demo", "k1", &serde_json::json!({"n": 1})).await.expect("enqueue"));
    assert!(!queue.enqueue("demo", "k1", &serde_json::json!({"n": 2})).await.expect("enqueue again"));
    let job = queue.claim().await.expect("claim").expect("a job");
    assert_eq!((job.key.as_str(), job.attempts), ("k1", 1));
    assert_eq!(job.payload::<serde_json::Value>().expect("json"), serde_json::json!({"n": 1}));
    queue.complete(&job).await.expect("complete");
    assert!(!queue.enqueue("demo", "k1", &serde_json::json!({})).await.expect("after done"), "a done key stays used");
    assert_eq!(queue.claim().await.expect("claim"), None);
}

async fn a_failing_job_backs_off_with_jitter_and_is_dead_lettered_after_its_last_attempt(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let clock = ManualClock::new(start_time());
    let queue = queue_at(&t.db, &clock, 3);
    queue.enqueue("demo", "failing", &serde_json::json!({})).await.expect("enqueue");
    for (attempt, ceiling) in [(1, 10), (2, 20)] {
        let job = queue.claim().await.expect("claim").expect("due");
        assert_eq!(job.attempts, attempt);
        let Failed::RetryAt(at) = queue.fail(&job, "receiver said 500").await.expect("fail") else {
            panic!("attempt {attempt} of 3 must be retried");
        };
        let delay = at - clock.now();
        assert!(
            delay >= time::Duration::seconds(ceiling / 2) && delay <= time::Duration::seconds(ceiling),
            "attempt {attempt}: retry in {delay}, expected {}s..={ceiling}s",
            ceiling / 2
        );
        assert_eq!(queue.claim().await.expect("claim"), None, "not due before its backoff");
        clock.advance(time::Duration::seconds(ceiling));
    }
    let job = queue.claim().await.expect("claim").expect("due");
    assert_eq!(job.attempts, 3);
    assert_eq!(queue.fail(&job, "still 500").await.expect("fail"), Failed::Dead);
    clock.advance(time::Duration::days(1));
    assert_eq!(queue.claim().await.expect("claim"), None, "a dead job never runs again");
    assert_eq!(status_of(&t.db, "failing").await, ("dead".to_owned(), 3));
}

async fn a_job_whose_worker_vanished_is_claimed_again_when_its_lease_runs_out(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let clock = ManualClock::new(start_time());
    let (first, second) = (queue_at(&t.db, &clock, 3), queue_at(&t.db, &clock, 3));
    first.enqueue("demo", "leased", &serde_json::json!({})).await.expect("enqueue");
    let job = first.claim().await.expect("claim").expect("due");
    assert_eq!(second.claim().await.expect("claim"), None, "held under the first worker's lease");
    clock.advance(time::Duration::seconds(61));
    let again = second.claim().await.expect("claim").expect("lease ran out");
    assert_eq!((again.id, again.attempts), (job.id, 2));
    assert_eq!(first.fail(&job, "late").await.expect("fail"), Failed::LeaseLost, "the first worker lost it");
    second.complete(&again).await.expect("complete");
    assert_eq!(status_of(&t.db, "leased").await.0, "done");
}

fn config() -> JobsConfig {
    JobsConfig {
        max_attempts: 2,
        drain_timeout: Duration::from_millis(200),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        ..JobsConfig::default()
    }
}

fn failing(job: Job) -> futures::future::BoxFuture<'static, Result<(), JobFailure>> {
    async move { Err(JobFailure(format!("{} always fails", job.kind))) }.boxed()
}

async fn the_runner_counts_failures_and_dead_letters_and_reports_the_queue(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let fast = Backoff { base: Duration::from_millis(1), max: Duration::from_millis(1) };
    let queue = Queue::new(t.db.clone(), Arc::new(SystemClock), fast, 2, Duration::from_secs(60));
    let runner = Runner::new(queue.clone(), Registry::default().handle("broken", failing), config(), t.metrics.clone());
    queue.enqueue("broken", "b1", &serde_json::json!({})).await.expect("enqueue");
    runner.sample_once().await.expect("sample");
    assert_eq!(t.metrics.jobs_queue_depth.get(), 1);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let job = queue.claim().await.expect("claim").expect("job");
    runner.run(job, stopped.clone()).await;
    assert_eq!(t.metrics.jobs_failures_total.with_label_values(&["broken"]).get(), 1);
    assert_eq!(t.metrics.jobs_dead_letters_total.with_label_values(&["broken"]).get(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let job = queue.claim().await.expect("claim").expect("retry due after 1ms");
    runner.run(job, stopped).await;
    assert_eq!(t.metrics.jobs_failures_total.with_label_values(&["broken"]).get(), 2);
    assert_eq!(t.metrics.jobs_dead_letters_total.with_label_values(&["broken"]).get(), 1);
    queue.enqueue("broken", "waiting", &serde_json::json!({})).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    runner.sample_once().await.expect("sample");
    assert_eq!(t.metrics.jobs_queue_depth.get(), 1, "the dead job left the queue");
    assert!(t.metrics.jobs_oldest_age_seconds.get() >= 1.0, "the waiting job has waited over a second");
}

fn sleeping(millis: u64) -> impl Fn(Job) -> futures::future::BoxFuture<'static, Result<(), JobFailure>> {
    move |_job| {
        async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(())
        }
        .boxed()
    }
}

async fn drain_with(backend: Backend, handler_millis: u64) -> Option<(String, i32)> {
    let t = test_db(backend).await?;
    let queue = Queue::new(t.db.clone(), Arc::new(SystemClock), BACKOFF, 3, Duration::from_secs(60));
    queue.enqueue("slow", "s1", &serde_json::json!({})).await.expect("enqueue");
    let registry = Registry::default().handle("slow", sleeping(handler_millis));
    let handle =
        Runner::new(queue, registry, JobsConfig { poll_interval: Duration::from_millis(20), ..config() }, t.metrics)
            .start();
    // Wait until a worker holds the job, then shut down.
    for _ in 0..200 {
        if status_of(&t.db, "s1").await.0 == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), handle.drained()).await.expect("drained within its deadline");
    Some(status_of(&t.db, "s1").await)
}

async fn a_job_still_running_at_the_drain_deadline_is_released_without_counting_the_attempt(backend: Backend) {
    let Some(status) = drain_with(backend, 60_000).await else { return };
    assert_eq!(status, ("queued".to_owned(), 0));
}

async fn a_job_that_finishes_within_the_drain_deadline_is_done(backend: Backend) {
    let Some(status) = drain_with(backend, 50).await else { return };
    assert_eq!(status, ("done".to_owned(), 1));
}

async fn replicas_scheduling_the_same_period_enqueue_one_job(backend: Backend) {
    let Some(t) = test_db(backend).await else { return };
    let clock = ManualClock::new(start_time());
    let replica = || {
        let registry = Registry::default().handle("cleanup", sleeping(0)).every("cleanup", Duration::from_secs(3600));
        Runner::new(queue_at(&t.db, &clock, 3), registry, config(), t.metrics.clone())
    };
    let (a, b) = (replica(), replica());
    a.enqueue_due_schedules().await.expect("schedule a");
    b.enqueue_due_schedules().await.expect("schedule b");
    let queue = queue_at(&t.db, &clock, 3);
    assert!(queue.claim().await.expect("claim").is_some());
    assert_eq!(queue.claim().await.expect("claim"), None, "one job for the period between both replicas");
    clock.advance(time::Duration::hours(1));
    b.enqueue_due_schedules().await.expect("next period");
    assert!(queue.claim().await.expect("claim").is_some(), "the next period has its own job");
}

/// Two replicas, several workers each, on one PostgreSQL queue: every job is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_on_several_replicas_claim_each_postgres_job_exactly_once() {
    let Some(t) = test_db(Backend::Postgres).await else { return };
    let producer = Queue::new(t.db.clone(), Arc::new(SystemClock), BACKOFF, 3, Duration::from_secs(60));
    for n in 0..60 {
        producer.enqueue("demo", &format!("job-{n}"), &serde_json::json!({ "n": n })).await.expect("enqueue");
    }
    let mut workers = tokio::task::JoinSet::new();
    for replica in 0..2 {
        let db = connect(&t.url, &t.metrics).await;
        for _ in 0..4 {
            let queue = Queue::new(db.clone(), Arc::new(SystemClock), BACKOFF, 3, Duration::from_secs(60));
            workers.spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = queue.claim().await.expect("claim") {
                    queue.complete(&job).await.expect("complete");
                    claimed.push((replica, job.key));
                }
                claimed
            });
        }
    }
    let mut all = Vec::new();
    while let Some(claimed) = workers.join_next().await {
        all.extend(claimed.expect("worker"));
    }
    let keys: BTreeSet<&String> = all.iter().map(|(_, key)| key).collect();
    assert_eq!(all.len(), 60, "claimed {} times for 60 jobs", all.len());
    assert_eq!(keys.len(), 60, "a job was claimed twice");
    assert!(all.iter().any(|(r, _)| *r == 0) && all.iter().any(|(r, _)| *r == 1), "both replicas worked");
}
