use http::{HeaderValue, header::RETRY_AFTER};
use palisade_ops::Problem;
use thiserror::Error;

/// Everything that can go wrong reaching or using a store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database url is not valid: {0}")]
    InvalidUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("timed out waiting for a database connection")]
    PoolTimeout,
    /// SQLite's single writer stayed busy past `busy_timeout`: overload, not a bug.
    #[error("the database is busy")]
    Busy,
    /// The connection broke or the server is going away (restart, failover,
    /// `pg_terminate_backend`): transient, and the pool replaces the connection, so the client
    /// is told to retry rather than shown a 500.
    #[error("database connection lost: {0}")]
    ConnectionLost(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("redis url is not valid: {0}")]
    RedisUrl(#[source] ::redis::RedisError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => Self::PoolTimeout,
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes (low byte).
            sqlx::Error::Database(ref db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
            {
                Self::Busy
            }
            error if is_connection_level(&error) => Self::ConnectionLost(error),
            other => Self::Query(other),
        }
    }
}

impl StoreError {
    /// Whether retrying later can succeed: the database is unreachable, restarting or overloaded,
    /// as opposed to refusing the work itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::PoolTimeout | Self::Busy | Self::ConnectionLost(_) => true,
            Self::Connect(error)
            | Self::Migrate(
                sqlx::migrate::MigrateError::Execute(error) | sqlx::migrate::MigrateError::ExecuteMigration(error, _),
            ) => is_connection_level(error),
            _ => false,
        }
    }
}

/// The one mapping of a storage failure to problem+json, whichever crate's error carries it: an
/// overloaded or unreachable database is a 503 the client may retry; anything else is a generic
/// 500, logged here in full.
impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::PoolTimeout | StoreError::Busy => {
                tracing::warn!("database pool exhausted");
                Problem::unavailable("The database is busy; retry shortly.").with_header(RETRY_AFTER, retry_after())
            }
            StoreError::ConnectionLost(error) => {
                tracing::warn!(%error, "database connection lost");
                Problem::unavailable("The database is unreachable; retry shortly.")
                    .with_header(RETRY_AFTER, retry_after())
            }
            error => {
                tracing::error!(%error, "storage failure");
                Problem::internal()
            }
        }
    }
}

/// Seconds a client should wait before retrying after a transient database failure: the pool
/// replaces a broken connection on the next acquire, so a short pause is enough.
fn retry_after() -> HeaderValue {
    HeaderValue::from_static("1")
}

fn is_connection_level(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                && db.code().is_some_and(|code| is_connection_sqlstate(&code))
        }
        _ => false,
    }
}

/// SQLSTATE class 08 (connection exception) and the operator-intervention codes that end a
/// session: 57P01 admin_shutdown (`pg_terminate_backend`, a fast shutdown), 57P02 crash_shutdown,
/// 57P03 cannot_connect_now (starting up or in recovery), 57P05 idle_session_timeout.
fn is_connection_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_failures_are_classified_as_lost_connections() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(StoreError::from(io), StoreError::ConnectionLost(_)));
        assert!(matches!(StoreError::from(sqlx::Error::PoolClosed), StoreError::ConnectionLost(_)));
        assert!(matches!(StoreError::from(sqlx::Error::Protocol("eof".into())), StoreError::ConnectionLost(_)));
        assert!(matches!(StoreError::from(sqlx::Error::RowNotFound), StoreError::Query(_)));
    }

    #[test]
    fn session_ending_sqlstates_are_connection_failures_and_others_are_not() {
        for code in ["08000", "08006", "57P01", "57P02", "57P03"] {
            assert!(is_connection_sqlstate(code), "{code}");
        }
        for code in ["23505", "57014", "42P01", "22P02"] {
            assert!(!is_connection_sqlstate(code), "{code}");
        }
    }
}
