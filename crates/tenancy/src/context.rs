//! The `TenantContext` extractor: authenticated caller, resolved tenant, provisioned user, and
//! an open tenant-scoped session, in one value a handler takes.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::request::Parts,
};
use palisade_auth::{AuthContext, Authenticator, scopes};
use palisade_edge::{RateLimiter, client_ip, rate_limit};
use palisade_ops::{Problem, RequestId};

use crate::{
    TenancyConfig, TenancyError, TenantSession,
    audit::{self, Change},
    resolve::{self, Candidates},
    tenants::{Tenant, TenantDirectory},
    users::{self, User, UserRole},
};

/// Tenancy's share of the application state.
#[derive(Debug, Clone)]
pub struct Tenancy {
    pub config: Arc<TenancyConfig>,
    pub directory: TenantDirectory,
}

/// Who asked and from where, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl RequestMeta {
    /// The client address is the edge's (which believes `X-Forwarded-For` only from trusted
    /// proxies), falling back to the TCP peer.
    pub fn from_parts(parts: &Parts) -> Self {
        Self {
            request_id: RequestId::from_extensions(&parts.extensions).map(|r| r.as_str().to_owned()),
            client_ip: client_ip::client_ip_of(&parts.extensions),
        }
    }
}

/// Everything a tenant-scoped handler needs. Its `session` is a transaction with the tenant
/// bound; commit it to keep writes (dropping it rolls back).
#[derive(Debug)]
pub struct TenantContext {
    pub tenant: Arc<Tenant>,
    pub auth: AuthContext,
    pub user: User,
    pub session: TenantSession,
    pub meta: RequestMeta,
}

impl TenantContext {
    pub fn tenant_id(&self) -> uuid::Uuid {
        self.tenant.id
    }

    /// Tenant admins hold the `tenant:admin` scope or the `admin` role in the tenant.
    pub fn require_tenant_admin(&self) -> Result<(), Problem> {
        if self.user.role == UserRole::Admin {
            return Ok(());
        }
        self.auth.require_scope(scopes::TENANT_ADMIN).map_err(Problem::from)
    }

    /// Appends an audit event for a change made in this session, acting as the caller.
    pub async fn audit(&mut self, change: Change<'_>) -> Result<(), TenancyError> {
        audit::record(self.session.tx().await?, self.tenant.id, &self.auth.subject, change, &self.meta).await
    }
}

impl<S> FromRequestParts<S> for TenantContext
where
    S: Send + Sync,
    Tenancy: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
    RateLimiter: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthContext::from_request_parts(parts, state).await.map_err(Problem::from)?;
        if auth.subject.chars().count() > 255 {
            return Err(TenancyError::SubjectTooLong.into());
        }
        let tenancy = Tenancy::from_ref(state);
        let header = parts.headers.get("x-tenant-id").map(|v| resolve::parse_header(v.as_bytes())).transpose()?;
        let subdomain = tenancy.config.base_domain.as_deref().and_then(|base| {
            let host = parts.headers.get(axum::http::header::HOST)?.to_str().ok()?;
            resolve::subdomain(host, base)
        });
        let candidates = Candidates { claim: auth.tenant.clone(), header, subdomain };
        let platform_admin = auth.has_scope(scopes::PLATFORM_ADMIN);
        let tenant = resolve::resolve(&tenancy.config, &candidates, &tenancy.directory, platform_admin).await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant.id));
        // Per (tenant, subject) budgets, keyed by slug because tenant overrides are.
        let limiter = RateLimiter::from_ref(state);
        rate_limit::enforce(&limiter, &parts.extensions, rate_limit::AUTHENTICATED, &tenant.slug, &auth.subject)
            .await?;
        if !parts.method.is_safe() {
            rate_limit::enforce(&limiter, &parts.extensions, rate_limit::WRITE, &tenant.slug, &auth.subject).await?;
        }
        let meta = RequestMeta::from_parts(parts);
        let db = tenancy.directory.db();
        // The user is looked up (and provisioned on first sight) in a short transaction of its
        // own: provisioning must survive a read-only request, and the handler's session must not
        // be open while its body is still arriving.
        let mut setup = TenantSession::begin(db, tenant.id).await?;
        let (user, created) = users::provision(setup.tx().await?, tenant.id, &auth.subject).await?;
        if created {
            let change =
                Change { action: "user.provisioned", resource_type: "user", resource_id: &user.id.to_string() };
            audit::record(setup.tx().await?, tenant.id, &auth.subject, change, &meta).await?;
        }
        setup.commit().await?;
        let session = TenantSession::lazy(db.clone(), tenant.id);
        Ok(Self { tenant, auth, user, session, meta })
    }
}
