//! The `webhooks.deliver` job: one attempt of one delivery. It loads the delivery and its
//! endpoint, defers itself when the tenant is over `webhooks.tenant_rate_limit`, sends the stored
//! body signed with the endpoint's secret(s), and records the attempt. A failed attempt fails the
//! job, so the queue retries it with backoff and jitter; the last failed attempt fails the
//! delivery, and `webhooks.disable_after_failures` failed deliveries in a row disable the
//! endpoint (audited, with a `webhook_endpoint.disabled` event).

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use palisade_jobs::{Job, JobFailure, Queue};
use palisade_ops::Metrics;
use palisade_store::{Database, on_tx};
use palisade_tenancy::{RequestMeta, audit::Change, session::bind_tenant, write};
use palisade_webhooks::{Message, Sender, SigningSecret};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::{WebhooksConfig, WebhooksError, relay::DeliverJob};

/// The actor of the server's own webhook writes in the audit log.
pub const ACTOR: &str = "system:webhooks";

/// The longest response excerpt kept in the delivery log.
const MAX_EXCERPT_CHARS: usize = 1000;

/// Runs `webhooks.deliver` jobs.
#[derive(Debug, Clone)]
pub struct Deliverer {
    db: Database,
    queue: Queue,
    sender: Arc<Sender>,
    config: Arc<WebhooksConfig>,
    metrics: Arc<Metrics>,
}

/// A delivery with its endpoint, secrets included (hence no derived `Debug`).
#[derive(sqlx::FromRow)]
struct Target {
    payload: String,
    status: String,
    attempts: i32,
    endpoint_id: Uuid,
    url: String,
    enabled: bool,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint_id", &self.endpoint_id)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(
        db: Database,
        queue: Queue,
        sender: Arc<Sender>,
        config: Arc<WebhooksConfig>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { db, queue, sender, config, metrics }
    }

    /// The job handler.
    pub fn handler(self) -> impl Fn(Job) -> BoxFuture<'static, Result<(), JobFailure>> {
        move |job| {
            let this = self.clone();
            async move { this.run(job).await }.boxed()
        }
    }

    async fn run(&self, job: Job) -> Result<(), JobFailure> {
        let DeliverJob { tenant_id, delivery_id } = job.payload()?;
        let now = self.queue.now();
        let mut tx = self.db.begin().await.map_err(WebhooksError::from)?;
        bind_tenant(&mut tx, tenant_id).await.map_err(WebhooksError::from)?;
        let target: Option<Target> = on_tx!(&mut tx, |conn| sqlx::query_as(
            "SELECT d.payload, d.status, d.attempts, e.id AS endpoint_id, e.url, e.enabled, e.secret, \
             e.previous_secret, e.previous_secret_expires_at \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.tenant_id = $1 AND d.id = $2"
        )
        .bind(tenant_id)
        .bind(delivery_id)
        .fetch_optional(conn)
        .await)
        .map_err(WebhooksError::from)?;
        // Deleted with its endpoint, or delivered already (a re-run after a lost lease).
        let Some(target) = target.filter(|t| t.status != "succeeded") else {
            tx.commit().await.map_err(WebhooksError::from)?;
            return Ok(());
        };
        if !target.enabled {
            set_status(&mut tx, tenant_id, delivery_id, "failed", now).await?;
            tx.commit().await.map_err(WebhooksError::from)?;
            return Ok(());
        }
        let window_start = now - time::Duration::seconds(1);
        let (recent,): (i64,) = on_tx!(&mut tx, |conn| sqlx::query_as(
            "SELECT count(*) FROM webhook_attempts WHERE tenant_id = $1 AND at > $2"
        )
        .bind(tenant_id)
        .bind(window_start)
        .fetch_one(conn)
        .await)
        .map_err(WebhooksError::from)?;
        tx.commit().await.map_err(WebhooksError::from)?;
        if recent >= i64::from(self.config.tenant_rate_limit) {
            // Over the tenant's rate: try again in the next window, spread over it, attempt uncounted.
            let later = now + time::Duration::seconds(1) + time::Duration::milliseconds(fastrand::i64(0..1000));
            self.queue.defer(&job, later).await.map_err(WebhooksError::from)?;
            self.metrics.webhook_deliveries_total.with_label_values(&["deferred"]).inc();
            return Ok(());
        }
        let attempt = self.send(delivery_id, &target, now).await;
        let last = job.attempts >= job.max_attempts;
        self.record(tenant_id, delivery_id, &target, &attempt, now, last).await?;
        if attempt.succeeded {
            Ok(())
        } else {
            Err(JobFailure(format!("delivery {delivery_id}: {}", attempt.summary())))
        }
    }

    async fn send(&self, delivery_id: Uuid, target: &Target, now: OffsetDateTime) -> Sent {
        let mut secrets = Vec::new();
        if let Ok(secret) = SigningSecret::parse(&target.secret) {
            secrets.push(secret);
        }
        if let (Some(previous), Some(until)) = (&target.previous_secret, target.previous_secret_expires_at)
            && until > now
            && let Ok(secret) = SigningSecret::parse(previous)
        {
            secrets.push(secret);
        }
        let secrets: Vec<&SigningSecret> = secrets.iter().collect();
        let Ok(url) = Url::parse(&target.url) else {
            return Sent::unsent("invalid_url");
        };
        let id = delivery_id.to_string();
        let message = Message { id: &id, timestamp: now.unix_timestamp(), body: target.payload.as_bytes() };
        let attempt = self.sender.deliver(&url, &message, &secrets).await;
        let label = attempt.outcome.label();
        self.metrics.webhook_deliveries_total.with_label_values(&[label]).inc();
        self.metrics.webhook_delivery_duration_seconds.observe(attempt.duration.as_secs_f64());
        Sent {
            succeeded: attempt.outcome.is_success(),
            status: attempt.status,
            outcome: label.to_owned(),
            duration: attempt.duration,
            excerpt: Some(attempt.response_excerpt.chars().take(MAX_EXCERPT_CHARS).collect::<String>())
                .filter(|excerpt| !excerpt.is_empty()),
        }
    }

    /// Records the attempt and its consequences in one transaction.
    async fn record(
        &self,
        tenant_id: Uuid,
        delivery_id: Uuid,
        target: &Target,
        sent: &Sent,
        now: OffsetDateTime,
        last: bool,
    ) -> Result<(), WebhooksError> {
        let mut tx = self.db.begin().await?;
        bind_tenant(&mut tx, tenant_id).await?;
        let attempt = target.attempts + 1;
        on_tx!(&mut tx, |conn| {
            sqlx::query(
            "INSERT INTO webhook_attempts (id, tenant_id, delivery_id, attempt, at, status_code, outcome, duration_ms, \
             response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (delivery_id, attempt) DO NOTHING"
        )
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(delivery_id)
        .bind(attempt)
        .bind(now)
        .bind(sent.status.map(i32::from))
        .bind(&sent.outcome)
        .bind(i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX))
        .bind(sent.excerpt.as_deref())
        .execute(conn)
        .await
        .map(drop)
        })?;
        let status = match (sent.succeeded, last) {
            (true, _) => "succeeded",
            (false, true) => "failed",
            (false, false) => "pending",
        };
        on_tx!(&mut tx, |conn| sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $1, last_status_code = $2, status = $3, updated_at = $4 \
             WHERE tenant_id = $5 AND id = $6"
        )
        .bind(attempt)
        .bind(sent.status.map(i32::from))
        .bind(status)
        .bind(now)
        .bind(tenant_id)
        .bind(delivery_id)
        .execute(conn)
        .await
        .map(drop))?;
        if sent.succeeded {
            on_tx!(&mut tx, |conn| sqlx::query(
                "UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE tenant_id = $1 AND id = $2 \
                 AND consecutive_failures <> 0"
            )
            .bind(tenant_id)
            .bind(target.endpoint_id)
            .execute(conn)
            .await
            .map(drop))?;
        } else if last {
            let threshold = i32::try_from(self.config.disable_after_failures).unwrap_or(i32::MAX);
            let (failures, enabled): (i32, bool) = on_tx!(&mut tx, |conn| sqlx::query_as(
                "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, updated_at = $1 \
                 WHERE tenant_id = $2 AND id = $3 RETURNING consecutive_failures, enabled"
            )
            .bind(now)
            .bind(tenant_id)
            .bind(target.endpoint_id)
            .fetch_one(conn)
            .await)?;
            if enabled && failures >= threshold {
                let reason = format!("{failures} consecutive deliveries failed every attempt");
                on_tx!(&mut tx, |conn| sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $1, disabled_at = $2, \
                     version = version + 1 WHERE tenant_id = $3 AND id = $4"
                )
                .bind(&reason)
                .bind(now)
                .bind(tenant_id)
                .bind(target.endpoint_id)
                .execute(conn)
                .await
                .map(drop))?;
                let id = target.endpoint_id.to_string();
                let change =
                    Change { action: "webhook_endpoint.disabled", resource_type: "webhook_endpoint", resource_id: &id };
                write::commit(tx, tenant_id, ACTOR, change, &RequestMeta::default()).await?;
                self.metrics.webhook_endpoints_disabled_total.inc();
                tracing::warn!(endpoint = %target.endpoint_id, tenant = %tenant_id, %reason, "webhook endpoint disabled");
                return Ok(());
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The end of one attempt, as recorded.
#[derive(Debug)]
struct Sent {
    succeeded: bool,
    status: Option<u16>,
    outcome: String,
    duration: Duration,
    excerpt: Option<String>,
}

impl Sent {
    fn unsent(outcome: &str) -> Self {
        Self { succeeded: false, status: None, outcome: outcome.to_owned(), duration: Duration::ZERO, excerpt: None }
    }

    fn summary(&self) -> String {
        match self.status {
            Some(status) => format!("{} (HTTP {status})", self.outcome),
            None => self.outcome.clone(),
        }
    }
}

async fn set_status(
    tx: &mut palisade_store::Tx,
    tenant_id: Uuid,
    delivery_id: Uuid,
    status: &str,
    now: OffsetDateTime,
) -> Result<(), WebhooksError> {
    on_tx!(tx, |conn| sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4"
    )
    .bind(status)
    .bind(now)
    .bind(tenant_id)
    .bind(delivery_id)
    .execute(conn)
    .await
    .map(drop))?;
    Ok(())
}
