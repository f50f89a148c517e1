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
            other => Self::Query(other),
        }
    }
}
