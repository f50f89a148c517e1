//! The one application state every handler takes through `State`.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{extract::FromRef, http::Extensions};
use palisade_auth::{Authenticator, RevocationAnswer, Unrevoked};
use palisade_edge::{
    Edge, RateLimiter,
    rate_limit::{Listing, ListingAnswer},
};
use palisade_ops::{Metrics, Problem, Readiness};
use palisade_store::{Database, Redis};
use palisade_tenancy::{Enforced, Tenancy, context::CallerLimits};

use crate::Settings;

/// The application state. axum clones it for every request (several times, once per router
/// level), so it is one `Arc`: a clone is one reference count, not one per part. Handlers reach
/// the parts through `Deref` (`state.db`), extractors through `FromRef` (`State<Database>`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What the application state holds.
#[derive(Debug)]
pub struct Parts {
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

/// `FromRef` for each part, as `#[derive(FromRef)]` would write it for a plain struct.
macro_rules! parts_from_ref {
    ($($field:ident: $type:ty),* $(,)?) => {
        $(
            impl FromRef<AppState> for $type {
                fn from_ref(state: &AppState) -> Self {
                    state.0.$field.clone()
                }
            }
        )*
    };
}

parts_from_ref! {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    db: Database,
    redis: Option<Redis>,
    auth: Arc<Authenticator>,
    tenancy: Tenancy,
    edge: Edge,
    rate_limiter: RateLimiter,
    caller_limits: Arc<dyn CallerLimits>,
}

/// The per-caller policies (`authenticated`, and `write` for unsafe methods) of the edge's limiter
/// and the authenticator's revocation check, in one Redis round trip when both live in Redis.
#[derive(Debug)]
pub struct EdgeCallerLimits {
    pub limiter: RateLimiter,
    pub auth: Arc<Authenticator>,
}

impl CallerLimits for EdgeCallerLimits {
    fn enforce<'a>(
        &'a self,
        extensions: &'a Extensions,
        tenant_slug: &'a str,
        epoch_key: Option<&'a str>,
        write: bool,
        caller: Unrevoked,
    ) -> Pin<Box<dyn Future<Output = Result<Enforced, Problem>> + Send + 'a>> {
        Box::pin(async move {
            let listing = match caller.redis_key() {
                _ if caller.known_revoked() => Listing::Listed,
                Some(key) if self.limiter.is_shared() => Listing::Lookup(key),
                // In-process limits and a revocation list in Redis: the anonymous check, then the
                // lookup (its own round trip, the only one), then the per-caller policies.
                Some(_) => {
                    let subject = &caller.claims().subject;
                    let check = self
                        .limiter
                        .enforce_caller(extensions, tenant_slug, subject, false, Listing::Listed, None)
                        .await;
                    refuse(check.refusal)?;
                    let auth = self.auth.finish(caller, RevocationAnswer::NotAsked).await?;
                    let check =
                        self.limiter.enforce_caller(extensions, tenant_slug, &auth.subject, write, Listing::None, None);
                    refuse(check.await.refusal)?;
                    return Ok(Enforced { auth, epoch: None });
                }
                None => Listing::None,
            };
            // The membership epoch rides along: read in the same script, or not at all.
            let subject = &caller.claims().subject;
            let check = self.limiter.enforce_caller(extensions, tenant_slug, subject, write, listing, epoch_key).await;
            let answer = match check.listing {
                ListingAnswer::NotAsked => RevocationAnswer::NotAsked,
                ListingAnswer::Answered(revoked) => RevocationAnswer::Revoked(revoked),
                ListingAnswer::Failed(error) => RevocationAnswer::Failed(error),
            };
            // A refusal is from a policy decided before the lookup or after it said "not revoked".
            refuse(check.refusal)?;
            Ok(Enforced { auth: self.auth.finish(caller, answer).await?, epoch: check.counter })
        })
    }
}

fn refuse(refusal: Option<Problem>) -> Result<(), Problem> {
    refusal.map_or(Ok(()), Err)
}
