//! Connections to the outside stores: the database (SQLite for the embedded default, PostgreSQL in
//! production) and, optionally, Redis. Owns migrations and the health of both.

pub mod database;
pub mod error;
pub mod page;
pub mod redis;

pub use database::{Backend, Database, DatabaseConfig, POSTGRES_MAX_CONNECTIONS, Tx, sqlite_max_connections};
pub use error::StoreError;
pub use page::{Page, PageError, PageRequest};
pub use redis::{Redis, RedisConfig};
