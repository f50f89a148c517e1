//! The job table: enqueue by key, claim, and the three ends of an attempt (done, failed, released).
//! Every statement is one SQL text both backends accept; only the claim differs, by PostgreSQL's
//! `FOR UPDATE SKIP LOCKED` (SQLite's `BEGIN IMMEDIATE` already serialises claims).

use std::{sync::Arc, time::Duration};

use palisade_store::{Backend, Database, Tx, on_tx};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Backoff, Clock, JobsError};

/// A claimed job, as its handler sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub key: String,
    /// JSON text, as enqueued.
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempts: i32,
    pub max_attempts: i32,
}

impl Job {
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Queued again, due at this time.
    RetryAt(OffsetDateTime),
    /// That was the last attempt: the job is dead-lettered.
    Dead,
    /// The job was no longer this worker's (its lease ran out and another worker took it).
    LeaseLost,
}

/// How an attempt ends, for [`Queue::finish`].
#[derive(Debug, Clone, Copy)]
enum End<'a> {
    Done,
    Dead(&'a str),
    Retry(&'a str, OffsetDateTime),
    Release,
    Defer(OffsetDateTime),
}

/// The shared queue's numbers, for the gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Depth {
    pub queued: i64,
    /// How long the job waiting longest has been due (zero when none is due).
    pub oldest_due: Duration,
    /// Jobs marked running whose lease has run out: a worker that is stuck or vanished. The next
    /// claim takes them over (or the reaper dead-letters a last attempt), so a lasting non-zero
    /// value means nothing is claiming.
    pub running_overdue: i64,
}

const CLAIM_WHERE: &str = "(status = 'queued' AND run_at <= $3) \
     OR (status = 'running' AND locked_until < $3 AND attempts < max_attempts)";

/// The longest `last_error` kept: enough to diagnose, bounded so a huge error body cannot bloat rows.
const MAX_ERROR_CHARS: usize = 2000;

#[derive(Debug, Clone)]
pub struct Queue {
    db: Database,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    max_attempts: u32,
    /// How long a claim holds a job before another worker may take it over.
    lease: Duration,
    /// This worker pool's name in `locked_by` (unique per process).
    owner: String,
}

impl Queue {
    pub fn new(db: Database, clock: Arc<dyn Clock>, backoff: Backoff, max_attempts: u32, lease: Duration) -> Self {
        Self { db, clock, backoff, max_attempts, lease, owner: Uuid::now_v7().to_string() }
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Enqueues a job in its own transaction. See [`Queue::enqueue_in`].
    pub async fn enqueue(&self, kind: &str, key: &str, payload: &impl Serialize) -> Result<bool, JobsError> {
        let mut tx = self.db.begin().await?;
        let added = self.enqueue_in(&mut tx, kind, key, payload, self.now()).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Enqueues a job inside the caller's transaction, so it exists exactly when the caller's
    /// write does, due at `run_at`. A job with the same `key` (queued, running, done or dead) makes
    /// this a no-op: returns whether the job was added.
    pub async fn enqueue_in(
        &self,
        tx: &mut Tx,
        kind: &str,
        key: &str,
        payload: &impl Serialize,
        run_at: OffsetDateTime,
    ) -> Result<bool, JobsError> {
        let payload = serde_json::to_string(payload)?;
        let now = self.now();
        let max_attempts = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        let added = on_tx!(tx, |conn| {
            sqlx::query(
            "INSERT INTO jobs (id, kind, key, payload, status, attempts, max_attempts, run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7) ON CONFLICT (key) DO NOTHING"
        )
        .bind(Uuid::now_v7())
        .bind(kind)
        .bind(key)
        .bind(&payload)
        .bind(max_attempts)
        .bind(run_at)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        })
        .map_err(|e| self.db.observe(e))?;
        Ok(added == 1)
    }

    /// Takes the job due longest (or one whose worker's lease ran out), marking it running under
    /// this worker's lease and counting the attempt.
    pub async fn claim(&self) -> Result<Option<Job>, JobsError> {
        let now = self.now();
        let lease_end = now + self.lease;
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2, \
             updated_at = $3 \
             WHERE id = (SELECT id FROM jobs WHERE {CLAIM_WHERE} ORDER BY run_at LIMIT 1{lock}) \
             RETURNING id, kind, key, payload, attempts, max_attempts"
        );
        let mut tx = self.db.begin().await?;
        let job: Option<Job> = on_tx!(&mut tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&self.owner)
            .bind(lease_end)
            .bind(now)
            .fetch_optional(conn)
            .await)
        .map_err(|e| self.db.observe(e))?;
        tx.commit().await?;
        Ok(job)
    }

    /// The attempt succeeded.
    pub async fn complete(&self, job: &Job) -> Result<(), JobsError> {
        self.finish(job, End::Done).await.map(drop)
    }

    /// The attempt failed: retry after the backoff, or dead-letter after the last attempt.
    pub async fn fail(&self, job: &Job, error: &str) -> Result<Failed, JobsError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        if i64::from(job.attempts) >= i64::from(job.max_attempts) {
            let held = self.finish(job, End::Dead(&error)).await?;
            return Ok(if held { Failed::Dead } else { Failed::LeaseLost });
        }
        let attempt = u32::try_from(job.attempts).unwrap_or(1);
        let retry_at = self.now() + self.backoff.delay(attempt, fastrand::f64());
        let held = self.finish(job, End::Retry(&error, retry_at)).await?;
        Ok(if held { Failed::RetryAt(retry_at) } else { Failed::LeaseLost })
    }

    /// Gives the job back without counting the attempt (shutdown ran out of time for it).
    pub async fn release(&self, job: &Job) -> Result<(), JobsError> {
        self.finish(job, End::Release).await.map(drop)
    }

    /// Gives the job back due at `run_at`, without counting the attempt: the handler chose not to
    /// run it yet (a rate limit said "later"), which is neither a failure nor progress. The handler
    /// then returns `Ok`: the runner's [`Queue::complete`] finds the job no longer held and leaves
    /// it queued. Returns false when the job was no longer this worker's.
    pub async fn defer(&self, job: &Job, run_at: OffsetDateTime) -> Result<bool, JobsError> {
        self.finish(job, End::Defer(run_at)).await
    }

    /// Ends this worker's hold on `job`. Returns false when the job is no longer held by this
    /// worker (its lease ran out and another worker took it over).
    async fn finish(&self, job: &Job, end: End<'_>) -> Result<bool, JobsError> {
        let set = match end {
            End::Done => "status = 'done', last_error = NULL",
            End::Dead(_) => "status = 'dead', last_error = $4",
            End::Retry(..) => "status = 'queued', last_error = $4, run_at = $5",
            End::Release => "status = 'queued', attempts = attempts - 1",
            End::Defer(_) => "status = 'queued', attempts = attempts - 1, run_at = $4",
        };
        let sql = format!(
            "UPDATE jobs SET {set}, locked_by = NULL, locked_until = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'running' AND locked_by = $3"
        );
        let mut tx = self.db.begin().await?;
        let updated = on_tx!(&mut tx, |conn| {
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(self.now()).bind(job.id).bind(&self.owner);
            match end {
                End::Dead(error) => query = query.bind(error),
                End::Retry(error, at) => query = query.bind(error).bind(at),
                End::Defer(at) => query = query.bind(at),
                End::Done | End::Release => {}
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })
        .map_err(|e| self.db.observe(e))?;
        tx.commit().await?;
        Ok(updated == 1)
    }

    /// Dead-letters jobs whose last attempt's worker vanished (its lease ran out); returns their kinds.
    pub async fn reap_abandoned(&self) -> Result<Vec<String>, JobsError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let kinds: Vec<(String,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
            "UPDATE jobs SET status = 'dead', locked_by = NULL, locked_until = NULL, updated_at = $1, \
             last_error = 'the worker running its last attempt stopped without finishing it' \
             WHERE status = 'running' AND locked_until < $1 AND attempts >= max_attempts RETURNING kind"
        )
        .bind(now)
        .fetch_all(conn)
        .await)
        .map_err(|e| self.db.observe(e))?;
        tx.commit().await?;
        Ok(kinds.into_iter().map(|(kind,)| kind).collect())
    }

    /// Queue depth and the wait of the job due longest.
    pub async fn depth(&self) -> Result<Depth, JobsError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let (queued, oldest, running_overdue): (i64, Option<OffsetDateTime>, i64) =
            on_tx!(&mut tx, |conn| sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'queued'), \
             min(CASE WHEN status = 'queued' AND run_at <= $1 THEN run_at END), \
             count(*) FILTER (WHERE status = 'running' AND locked_until < $1) \
             FROM jobs WHERE status IN ('queued', 'running')"
            )
            .bind(now)
            .fetch_one(conn)
            .await)
            .map_err(|e| self.db.observe(e))?;
        tx.commit().await?;
        let oldest_due = oldest.map_or(Duration::ZERO, |at| (now - at).try_into().unwrap_or(Duration::ZERO));
        Ok(Depth { queued, oldest_due, running_overdue })
    }

    /// Deletes finished and dead jobs last touched before `before`; returns how many.
    pub async fn purge_finished(&self, before: OffsetDateTime) -> Result<u64, JobsError> {
        let mut tx = self.db.begin().await?;
        let purged = on_tx!(&mut tx, |conn| sqlx::query(
            "DELETE FROM jobs WHERE status IN ('done', 'dead') AND updated_at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db.observe(e))?;
        tx.commit().await?;
        Ok(purged)
    }
}
