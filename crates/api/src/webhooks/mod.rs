//! Webhooks (docs/webhooks.md, ADR 0009): what turns committed writes into signed HTTP deliveries.
//! The HTTP surface for endpoints is the resource `crate::resources::webhooks`; here are its
//! queries ([`store`]), the known event types ([`events`]), the relay from the outbox to
//! deliveries ([`relay`]), the delivery job ([`deliver`]) and the `[webhooks]` settings
//! ([`config`]). Signing, the SSRF policy and the HTTP sender are the `palisade-webhooks` crate.

pub mod config;
pub mod deliver;
pub mod events;
pub mod relay;
pub mod store;

pub use config::WebhooksConfig;

use palisade_jobs::JobsError;
use palisade_store::StoreError;
use palisade_tenancy::TenancyError;

/// Why the relay or a delivery could not do its work. Never carries a secret or an endpoint URL
/// (a URL may hold a token): it ends up in job rows and logs.
#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

impl From<sqlx::Error> for WebhooksError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::from(error))
    }
}
