//! Bearer token authentication for palisade, an OAuth 2.0 resource server.
//!
//! In production, access tokens come from an OpenID Connect provider and are verified with the
//! keys it publishes (JWKS). In development, `palisade token` mints HS256 tokens with a local
//! secret so nothing needs to be installed. Either way a request ends up with an [`AuthContext`]
//! (subject, tenant, scopes) or a problem+json refusal that says why, and every refusal is counted
//! in `auth_failures_total{reason}`.
//!
//! Revoked token ids live in Redis when configured (so every replica refuses them) or in process.

pub mod api_key;
mod authenticator;
mod config;
mod context;
mod dev;
mod error;
mod extract;
mod http;
mod jwks;
mod revocation;
mod token;
mod verified;

pub use api_key::{ApiKeyLookup, KeyUse, StoredKey};
pub use authenticator::{Authenticator, RevocationAnswer, TenantIds, Unrevoked};
pub use config::{AuthConfig, RevocationFailureMode};
pub use context::{AuthContext, scopes};
pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DEV_SECRET, DevTokenRequest, mint_dev_token};
pub use error::{AuthError, Challenge, FailureReason, REALM, challenge};
