//! Data rights (docs/data-rights.md, ADR 0010): tenant exports (GDPR art. 15 and 20), tenant
//! erasure (art. 17: soft delete, purge after `tenancy.erasure_grace`, a tombstone), and a person's
//! own data across tenants.

pub mod archive;
pub mod config;
pub mod export;
pub mod purge;
pub mod subject;

pub use config::ExportsConfig;
