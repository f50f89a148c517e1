//! Redis, optional: shared state (rate limits, token revocations) for every replica.
//! One multiplexed connection per process that reconnects by itself; every command is bounded by
//! a timeout so a slow Redis cannot hold requests hostage.

use std::{sync::Arc, time::Duration};

use ::redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use futures::future::BoxFuture;
use palisade_ops::{Metrics, ReadinessCheck, redact};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The `[redis]` configuration section (`REDIS_URL` overrides `url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:6379/0`; unset means in-process rate limits and revocations.
    #[serde(serialize_with = "redact::optional_url")]
    pub url: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Every command gives up after this long.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_millis(500),
            key_prefix: "palisade".to_owned(),
        }
    }
}

/// A handle to Redis; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    prefix: Arc<str>,
    command_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// A Redis command failed or took longer than the command timeout.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis command timed out")]
    Timeout,
    #[error("redis error: {0}")]
    Command(#[from] ::redis::RedisError),
}

impl Redis {
    /// Sets up the connection without waiting for it: Redis being down at startup makes the
    /// instance unready, and the connection comes up by itself when Redis does.
    pub fn connect(config: &RedisConfig, metrics: Arc<Metrics>) -> Result<Option<Self>, StoreError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let client = Client::open(url.expose_secret()).map_err(StoreError::RedisUrl)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(StoreError::RedisUrl)?;
        metrics.redis_up.set(0);
        Ok(Some(Self {
            connection,
            prefix: config.key_prefix.clone().into(),
            command_timeout: config.command_timeout,
            metrics,
        }))
    }

    /// `prefix:part1:part2…`
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = String::from(&*self.prefix);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Runs one operation under the command timeout, keeping `redis_up` and `redis_errors_total`
    /// current. `operation` is the metric label: a fixed name, never a key.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, ::redis::RedisError>>,
    {
        let result = match tokio::time::timeout(self.command_timeout, f(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RedisFailure::Command(error)),
            Err(_) => Err(RedisFailure::Timeout),
        };
        match &result {
            Ok(_) => self.metrics.redis_up.set(1),
            Err(_) => self.metrics.redis_error(operation),
        }
        result
    }

    /// Increments the integer at `key` (a missing key counts from 0) and returns its new value.
    pub async fn incr(&self, operation: &'static str, key: &str) -> Result<i64, RedisFailure> {
        self.run(operation, |mut connection| async move {
            ::redis::cmd("INCR").arg(key).query_async::<i64>(&mut connection).await
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), RedisFailure> {
        self.run("ping", |mut connection| async move {
            ::redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop)
        })
        .await
    }
}

/// Readiness check: PING.
#[derive(Debug)]
pub struct RedisCheck(pub Redis);

impl ReadinessCheck for RedisCheck {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map_err(|e| e.to_string()) })
    }
}
