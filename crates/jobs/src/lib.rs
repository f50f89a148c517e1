//! Durable background jobs on the application's own database (docs/jobs.md; why not a job crate:
//! docs/adr/0007-events-out-outbox-and-job-queue.md).
//!
//! A job is a row: enqueued idempotently by key (in the caller's transaction when it must exist
//! exactly when a write does), claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! any number of replicas work one queue; one worker on SQLite), retried with exponential backoff
//! and jitter, dead-lettered after its last attempt. [`Runner`] runs the workers, the schedule of
//! periodic jobs and the metrics, and drains at shutdown.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
pub mod queue;
pub mod runner;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::JobsConfig;
pub use error::{JobFailure, JobsError};
pub use queue::{Depth, Failed, Job, Queue};
pub use runner::{Handler, Registry, Runner, RunnerHandle};
