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
            other => Self::Query(other),
        }
    }
}
