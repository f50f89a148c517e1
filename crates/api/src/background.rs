//! The server's background jobs (docs/jobs.md): the handlers and the schedule the job runner of
//! each instance starts with. New kinds register here: the cleanups (export expiry among them),
//! the tenant purge and exports, and the webhook relay (`webhooks.relay`, every
//! `webhooks.relay_interval`) with its deliveries (`webhooks.deliver`).

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use palisade_jobs::{Backoff, Job, JobFailure, JobsConfig, Queue, Registry, Runner, SystemClock};
use palisade_ops::Metrics;
use palisade_store::{Database, Tx, on_tx};
use palisade_webhooks::{Sender, SenderConfig};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Settings,
    data_rights::{
        export::{self, EXPORT_TENANT, PURGE_EXPORTS},
        purge::{self, PURGE_TENANTS},
    },
    idempotency,
    webhooks::{WebhooksConfig, deliver::Deliverer, relay},
};

/// Deletes idempotency keys past their retention, in every tenant.
pub const PURGE_IDEMPOTENCY_KEYS: &str = "cleanup.idempotency_keys";
/// Deletes audit events older than `jobs.audit_retention`.
pub const PURGE_AUDIT_EVENTS: &str = "cleanup.audit_events";
/// Deletes outbox events older than `jobs.outbox_retention`.
pub const PURGE_OUTBOX_EVENTS: &str = "cleanup.outbox_events";
/// Deletes finished and dead jobs older than `jobs.retain_finished`.
pub const PURGE_FINISHED_JOBS: &str = "cleanup.finished_jobs";
/// Deletes webhook deliveries (and their attempts) older than `webhooks.delivery_retention`.
pub const PURGE_WEBHOOK_DELIVERIES: &str = "cleanup.webhook_deliveries";
pub use crate::webhooks::relay::{DELIVER as DELIVER_WEBHOOK, RELAY as RELAY_WEBHOOKS};

/// The queue as configured.
pub fn queue(db: &Database, config: &JobsConfig) -> Queue {
    let backoff = Backoff { base: config.backoff_base, max: config.backoff_max };
    Queue::new(db.clone(), Arc::new(SystemClock), backoff, config.max_attempts, config.job_timeout)
}

/// The webhook sender as configured (`[webhooks]`).
pub fn sender(config: &WebhooksConfig) -> Result<Sender, palisade_webhooks::SenderError> {
    Sender::new(SenderConfig {
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        max_response_bytes: config.max_response_bytes,
        allow: config.allow_networks.clone(),
        user_agent: format!("palisade-webhooks/{}", env!("CARGO_PKG_VERSION")),
    })
}

/// The runner with every handler and the schedule; started by [`crate::Application`].
pub fn runner(
    db: &Database,
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<Runner, palisade_webhooks::SenderError> {
    let queue = queue(db, &settings.jobs);
    let registry = registry(db, &queue, settings, Arc::new(sender(&settings.webhooks)?), metrics.clone());
    Ok(Runner::new(queue, registry, settings.jobs.clone(), metrics))
}

/// Every handler and the schedule, working through `queue` (whose clock tests may set).
pub fn registry(
    db: &Database,
    queue: &Queue,
    settings: &Settings,
    sender: Arc<Sender>,
    metrics: Arc<Metrics>,
) -> Registry {
    let (config, webhooks) = (&settings.jobs, &settings.webhooks);
    let every = config.cleanup_interval;
    let deliverer =
        Deliverer::new(db.clone(), queue.clone(), sender, Arc::new(webhooks.clone()), metrics.clone()).handler();
    Registry::default()
        .handle(PURGE_IDEMPOTENCY_KEYS, with_db(db, |db| async move { purge_idempotency_keys(&db).await.map(drop) }))
        .handle(
            PURGE_AUDIT_EVENTS,
            with_db(db, {
                let retention = config.audit_retention;
                move |db| async move { purge_log(&db, Log::Audit, before(retention)).await.map(drop) }
            }),
        )
        .handle(
            PURGE_OUTBOX_EVENTS,
            with_db(db, {
                let retention = config.outbox_retention;
                move |db| async move { purge_log(&db, Log::Outbox, before(retention)).await.map(drop) }
            }),
        )
        .handle(PURGE_FINISHED_JOBS, {
            let (queue, retain) = (queue.clone(), config.retain_finished);
            move |_job: Job| {
                let queue = queue.clone();
                async move { queue.purge_finished(before(retain)).await.map(drop).map_err(JobFailure::from) }.boxed()
            }
        })
        .handle(
            PURGE_WEBHOOK_DELIVERIES,
            with_db(db, {
                let retention = webhooks.delivery_retention;
                move |db| async move { purge_webhook_deliveries(&db, before(retention)).await.map(drop) }
            }),
        )
        .handle(RELAY_WEBHOOKS, {
            let (db, queue, metrics) = (db.clone(), queue.clone(), metrics.clone());
            move |_job: Job| {
                let (db, queue, metrics) = (db.clone(), queue.clone(), metrics.clone());
                async move {
                    let pass = relay::relay_once(&db, &queue).await?;
                    metrics.webhook_relay_lag_seconds.set(pass.oldest_wait.as_secs_f64());
                    Ok(())
                }
                .boxed()
            }
        })
        .handle(DELIVER_WEBHOOK, deliverer)
        .handle(EXPORT_TENANT, {
            let (db, exports, metrics) = (db.clone(), settings.exports.clone(), metrics.clone());
            move |job: Job| export::run(db.clone(), exports.clone(), metrics.clone(), job).boxed()
        })
        .handle(
            PURGE_EXPORTS,
            with_db(db, |db| async move { export::purge_expired(&db, OffsetDateTime::now_utc()).await.map(drop) }),
        )
        .handle(PURGE_TENANTS, {
            let (db, grace, metrics) = (db.clone(), settings.tenancy.erasure_grace, metrics.clone());
            move |_job: Job| {
                let (db, metrics) = (db.clone(), metrics.clone());
                async move { purge::purge_due(&db, grace, &metrics).await.map(drop).map_err(JobFailure::from) }.boxed()
            }
        })
        .every(PURGE_IDEMPOTENCY_KEYS, every)
        .every(PURGE_EXPORTS, every)
        .every(PURGE_TENANTS, every)
        .every(PURGE_AUDIT_EVENTS, every)
        .every(PURGE_OUTBOX_EVENTS, every)
        .every(PURGE_FINISHED_JOBS, every)
        .every(PURGE_WEBHOOK_DELIVERIES, every)
        .every(RELAY_WEBHOOKS, webhooks.relay_interval)
}

/// A handler that needs only the database.
fn with_db<F, Fut>(db: &Database, work: F) -> impl Fn(Job) -> BoxFuture<'static, Result<(), JobFailure>> + use<F, Fut>
where
    F: Fn(Database) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), palisade_store::StoreError>> + Send + 'static,
{
    let db = db.clone();
    move |_job| work(db.clone()).map(|result| result.map_err(JobFailure::from)).boxed()
}

fn before(age: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() - age
}

/// Deletes expired idempotency keys in every tenant; returns how many.
pub async fn purge_idempotency_keys(db: &Database) -> Result<u64, palisade_store::StoreError> {
    let cutoff = OffsetDateTime::now_utc() - idempotency::RETENTION;
    purge_in_every_tenant(db, "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND created_at < $2", cutoff).await
}

/// Deletes webhook deliveries created before `cutoff`, with their attempts, in every tenant;
/// returns how many deliveries.
pub async fn purge_webhook_deliveries(
    db: &Database,
    cutoff: OffsetDateTime,
) -> Result<u64, palisade_store::StoreError> {
    purge_in_every_tenant(db, "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND created_at < $2", cutoff).await
}

/// Runs `delete` (a statement taking the tenant as `$1` and `cutoff` as `$2`) tenant by tenant,
/// each in its own transaction under its own `app.tenant_id` (row-level security on PostgreSQL
/// shows a transaction one tenant only); returns the rows deleted.
pub(crate) async fn purge_in_every_tenant(
    db: &Database,
    delete: &'static str,
    cutoff: OffsetDateTime,
) -> Result<u64, palisade_store::StoreError> {
    let mut tx = db.begin().await?;
    let tenants: Vec<(Uuid,)> = on_tx!(&mut tx, |conn| sqlx::query_as("SELECT id FROM tenants").fetch_all(conn).await)
        .map_err(|e| db.observe(e))?;
    tx.commit().await?;
    let mut purged = 0;
    for (tenant,) in tenants {
        let mut tx = db.begin().await?;
        bind(&mut tx, tenant).await.map_err(|e| db.observe(e))?;
        purged += on_tx!(&mut tx, |conn| sqlx::query(delete)
            .bind(tenant)
            .bind(cutoff)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db.observe(e))?;
        tx.commit().await?;
    }
    Ok(purged)
}

/// `app.tenant_id` for the rest of the transaction (PostgreSQL; SQLite has no row-level security).
pub(crate) async fn bind(tx: &mut Tx, tenant: Uuid) -> Result<(), sqlx::Error> {
    if let Tx::Postgres(tx) = tx {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant.to_string()).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The append-only, tenant-scoped logs with a retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Audit,
    Outbox,
}

/// Deletes the `log`'s rows created before `cutoff`; returns how many. The server's role may only
/// append to these tables, so on PostgreSQL this goes through the owner's purge function
/// (`palisade_purge_log` in migrations/postgres/0005_outbox.sql).
pub async fn purge_log(db: &Database, log: Log, cutoff: OffsetDateTime) -> Result<u64, palisade_store::StoreError> {
    let (function, delete) = match log {
        Log::Audit => {
            ("SELECT palisade_purge_log('audit_events', $1)", "DELETE FROM audit_events WHERE created_at < $1")
        }
        Log::Outbox => {
            ("SELECT palisade_purge_log('outbox_events', $1)", "DELETE FROM outbox_events WHERE created_at < $1")
        }
    };
    let mut tx = db.begin().await?;
    let purged = match &mut tx {
        Tx::Postgres(conn) => sqlx::query_scalar::<_, i64>(function)
            .bind(cutoff)
            .fetch_one(&mut **conn)
            .await
            .map(|n| u64::try_from(n).unwrap_or(0)),
        Tx::Sqlite(conn) => sqlx::query(delete).bind(cutoff).execute(&mut **conn).await.map(|r| r.rows_affected()),
    }
    .map_err(|e| db.observe(e))?;
    tx.commit().await?;
    Ok(purged)
}
