//! The one application state every handler takes through `State`.

use std::sync::Arc;

use axum::extract::FromRef;
use palisade_auth::Authenticator;
use palisade_edge::{Edge, RateLimiter};
use palisade_ops::{Metrics, Readiness};
use palisade_store::{Database, Redis};
use palisade_tenancy::Tenancy;

use crate::Settings;

#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub db: Database,
    pub redis: Option<Redis>,
    pub auth: Arc<Authenticator>,
    pub tenancy: Tenancy,
    /// Security headers, CORS, client IP resolution and compression, validated at startup.
    pub edge: Edge,
    /// Shared with the auth code, which applies the per-user policies once it knows the caller.
    pub rate_limiter: RateLimiter,
}
