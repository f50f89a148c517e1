//! The database: one enum over the two backends. Queries are written once in SQL both backends
//! accept (`$1`-style parameters work in SQLite too) and dispatched with [`on_tx!`].

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use palisade_ops::{Metrics, ReadinessCheck, redact};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::{
    AssertSqlSafe, ConnectOptions, PgPool, Postgres, Sqlite, SqlitePool, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

use uuid::Uuid;

use crate::StoreError;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The `[database]` configuration section (`DATABASE_URL` overrides `url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (embedded default) or `postgres://user:password@host/db`.
    #[serde(serialize_with = "redact::url")]
    pub url: SecretString,
    /// Unset: [`POSTGRES_MAX_CONNECTIONS`] on PostgreSQL, [`sqlite_max_connections`] on SQLite.
    pub max_connections: Option<u32>,
    pub min_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// PostgreSQL `statement_timeout` for the server's sessions (0 disables).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Apply migrations at startup. Unset: yes in development, no elsewhere (production migrates
    /// with `palisade migrate` as the owner role, and the server's role may not alter the schema).
    pub auto_migrate: Option<bool>,
    /// Outside development SQLite is refused unless this is set (one process, no row-level security).
    pub allow_sqlite_in_production: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/palisade.db"),
            max_connections: None,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(600),
            statement_timeout: Duration::from_secs(30),
            auto_migrate: None,
            allow_sqlite_in_production: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL pool's size when `database.max_connections` is unset.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// The SQLite pool's size when `database.max_connections` is unset: the CPUs this process may run
/// on, at least four. Every SQLite connection is a thread of its own doing CPU-bound work in
/// process, so connections beyond the CPUs only take turns on them: on one core, ten connections
/// served reads 8–9 % slower than four, with a p99 a quarter higher (docs/performance.md). Four
/// leave reads connections while writers queue for SQLite's one write lock.
pub fn sqlite_max_connections() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cpus).unwrap_or(u32::MAX).max(4)
}

impl DatabaseConfig {
    /// Which backend the URL names.
    pub fn backend(&self) -> Result<Backend, StoreError> {
        backend_of(self.url.expose_secret())
    }

    /// The pool's size: `max_connections`, or the backend's default when it is unset.
    pub fn pool_size(&self, backend: Backend) -> u32 {
        self.max_connections.unwrap_or_else(|| match backend {
            Backend::Postgres => POSTGRES_MAX_CONNECTIONS,
            Backend::Sqlite => sqlite_max_connections(),
        })
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Backend::Sqlite),
        Some("postgres" | "postgresql") => Ok(Backend::Postgres),
        _ => Err(StoreError::InvalidUrl("expected a sqlite:// or postgres:// URL".to_owned())),
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A pooled database connection of either backend.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    max_connections: u32,
    metrics: Arc<Metrics>,
}

/// A transaction of either backend. Tenant-scoped work runs inside one of these.
#[derive(Debug)]
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs the same expression against whichever backend a [`Tx`] holds. Inside, `$conn` is a
/// `&mut` connection of the concrete backend, so `sqlx::query_as::<_, T>(SQL)...fetch_one($conn)`
/// type-checks once per backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => tx.commit().await?,
            Self::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => tx.rollback().await?,
            Self::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

impl Database {
    /// Opens the pool. SQLite files (and their directory) are created when missing.
    /// PostgreSQL connections are opened lazily, so a database that is down at startup makes the
    /// instance unready rather than crash-looping.
    pub async fn connect(config: &DatabaseConfig, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let url = config.url.expose_secret();
        let backend = backend_of(url)?;
        let max_connections = config.pool_size(backend);
        let pool = match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .disable_statement_logging();
                if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_dir(dir)?;
                }
                let pool = SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .max_connections(max_connections)
                    .min_connections(config.min_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .idle_timeout(config.idle_timeout)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Connect)?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let mut options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                    .application_name("palisade")
                    .disable_statement_logging();
                if !config.statement_timeout.is_zero() {
                    let millis = config.statement_timeout.as_millis().to_string();
                    // A session idle inside a transaction (a stuck client, a bug) is ended after
                    // the same bound, so it cannot hold locks and a pool slot indefinitely.
                    options = options.options([
                        ("statement_timeout", millis.as_str()),
                        ("idle_in_transaction_session_timeout", millis.as_str()),
                    ]);
                }
                // sqlx pings every connection it hands out by default: a round trip per request
                // to learn what the first statement learns anyway. A connection found dead fails
                // that one request (503) and is dropped; `idle_timeout` retires idle ones first.
                let pool = PgPoolOptions::new()
                    .test_before_acquire(false)
                    .max_connections(max_connections)
                    .min_connections(config.min_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .idle_timeout(config.idle_timeout)
                    .connect_lazy_with(options);
                Pool::Postgres(pool)
            }
        };
        metrics.db_pool_max_connections.set(i64::from(max_connections));
        Ok(Self { pool, max_connections, metrics })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Begins a transaction for a request that only reads (a safe method). On SQLite it is a
    /// deferred `BEGIN`: in WAL mode readers neither take nor wait for the write lock, so reads
    /// run concurrently with each other and with one writer. Such a transaction must not write
    /// (a deferred transaction that tries to may fail with `SQLITE_BUSY` at once); on PostgreSQL
    /// it is an ordinary transaction.
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
            Pool::Sqlite(pool) => pool.begin().await.map(Tx::Sqlite),
        };
        result.map_err(|error| self.observe(error))
    }

    /// Begins a transaction in which PostgreSQL's row-level security sees `tenant` as
    /// `app.tenant_id` (local to the transaction, so a pooled connection never carries one
    /// request's tenant into the next); `read_only` as for [`Self::begin_read`]. On PostgreSQL the
    /// `BEGIN` and the setting travel as one simple-protocol query, one round trip instead of two
    /// on every tenant-scoped request. That statement is the one SQL text made per request: it
    /// holds nothing but a formatted `Uuid` (36 hex digits and hyphens), never request input.
    /// `SET LOCAL` is `set_config(…, true)` without a query to plan and a row to send back:
    /// PostgreSQL ran `BEGIN; SET LOCAL …` plus `ROLLBACK` about 20 % more often per second than
    /// the same with `SELECT set_config` (pgbench, simple protocol, docs/performance.md).
    /// SQLite has no row-level security and no setting.
    pub async fn begin_for_tenant(&self, tenant: Uuid, read_only: bool) -> Result<Tx, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return if read_only { self.begin_read().await } else { self.begin().await };
        };
        let begin = if read_only { "BEGIN READ ONLY" } else { "BEGIN" };
        let statement = AssertSqlSafe(format!("{begin}; SET LOCAL app.tenant_id = '{tenant}'"));
        pool.begin_with(statement).await.map(Tx::Postgres).map_err(|error| self.observe(error))
    }

    /// Begins a transaction, counting pool exhaustion in `db_pool_acquire_timeouts_total`.
    ///
    /// SQLite transactions begin IMMEDIATE: a deferred one that reads and then writes fails with
    /// SQLITE_BUSY (without waiting) when another connection wrote in between, which concurrent
    /// requests would hit. Taking the write lock up front makes them queue on `busy_timeout`.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
            Pool::Sqlite(pool) => pool.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
        };
        result.map_err(|error| self.observe(error))
    }

    /// Converts a sqlx error, counting acquire timeouts on the way.
    pub fn observe(&self, error: sqlx::Error) -> StoreError {
        let error = StoreError::from(error);
        if matches!(error, StoreError::PoolTimeout) {
            self.metrics.db_pool_acquire_timeouts_total.inc();
        }
        error
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        };
        result.map_err(|error| self.observe(error))
    }

    /// Updates the pool gauges; called before each scrape.
    pub fn record_pool_metrics(&self) {
        let (size, idle) = match &self.pool {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let in_use = i64::from(size).saturating_sub(idle).max(0);
        self.metrics.db_pool_connections.with_label_values(&["idle"]).set(idle);
        self.metrics.db_pool_connections.with_label_values(&["in_use"]).set(in_use);
        self.metrics.db_pool_max_connections.set(i64::from(self.max_connections));
    }

    /// What is unsafe about the role the server connects as: a superuser or a BYPASSRLS role
    /// ignores row-level security, and a table owner could disable it. Empty on SQLite.
    pub async fn role_problems(&self) -> Result<Vec<String>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let (user, superuser, bypass_rls, owned): (String, bool, bool, i64) = sqlx::query_as(
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls, \
                    (SELECT count(*) FROM pg_tables t WHERE t.schemaname = 'public' \
                       AND pg_has_role(current_user, t.tableowner, 'MEMBER')) \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(pool)
        .await
        .map_err(|error| self.observe(error))?;
        let mut problems = Vec::new();
        if superuser {
            problems.push(format!("database role {user:?} is a superuser, which bypasses row-level security"));
        }
        if bypass_rls {
            problems.push(format!("database role {user:?} has BYPASSRLS"));
        }
        if owned > 0 {
            problems.push(format!(
                "database role {user:?} owns {owned} table(s); the server must connect as the non-owner app role"
            ));
        }
        Ok(problems)
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })
}

/// Readiness check: one round trip.
#[derive(Debug)]
pub struct DatabaseCheck(pub Database);

impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_url_scheme() {
        assert_eq!(backend_of("sqlite://data/x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("postgresql://db/x").ok(), Some(Backend::Postgres));
        assert!(backend_of("mysql://db/x").is_err());
    }

    #[test]
    fn an_unset_pool_size_follows_the_backend_and_a_set_one_wins() {
        let unset = DatabaseConfig::default();
        assert_eq!(unset.pool_size(Backend::Postgres), 10);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(unset.pool_size(Backend::Sqlite), u32::try_from(cpus.max(4)).unwrap_or(u32::MAX));
        let set = DatabaseConfig { max_connections: Some(7), ..Default::default() };
        assert_eq!((set.pool_size(Backend::Postgres), set.pool_size(Backend::Sqlite)), (7, 7));
    }

    #[test]
    fn the_url_password_never_reaches_the_printed_config() {
        let config = DatabaseConfig { url: SecretString::from("postgres://app:hunter2@db/p"), ..Default::default() };
        let printed = serde_json::to_string(&config).unwrap_or_default();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:[REDACTED]@db/p"));
    }
}
