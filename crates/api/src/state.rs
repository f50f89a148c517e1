//! The one application state every handler takes through `State`.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{extract::FromRef, http::Extensions};
use palisade_auth::Authenticator;
use palisade_edge::{
    Edge, RateLimiter,
    rate_limit::{self, AUTHENTICATED, WRITE},
};
use palisade_ops::{Metrics, Problem, Readiness};
use palisade_store::{Database, Redis};
use palisade_tenancy::{Tenancy, context::CallerLimits};

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
    /// The anonymous policy's middleware uses it directly.
    pub rate_limiter: RateLimiter,
    /// The same limiter, for the tenant extractor, which applies the per-caller policies once it
    /// knows the tenant and the subject.
    pub caller_limits: Arc<dyn CallerLimits>,
}

/// The per-caller policies (`authenticated`, and `write` for unsafe methods) of the edge's limiter.
#[derive(Debug)]
pub struct EdgeCallerLimits(pub RateLimiter);

impl CallerLimits for EdgeCallerLimits {
    fn enforce<'a>(
        &'a self,
        extensions: &'a Extensions,
        tenant_slug: &'a str,
        subject: &'a str,
        write: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), Problem>> + Send + 'a>> {
        Box::pin(async move {
            rate_limit::enforce(&self.0, extensions, AUTHENTICATED, tenant_slug, subject).await?;
            if write {
                rate_limit::enforce(&self.0, extensions, WRITE, tenant_slug, subject).await?;
            }
            Ok(())
        })
    }
}
