//! The `TenantContext` extractor: authenticated caller, resolved tenant, provisioned user, and
//! an open tenant-scoped session, in one value a handler takes.

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{Extensions, request::Parts},
};
use palisade_auth::{AuthContext, AuthError, Authenticator, Unrevoked, scopes};
use palisade_ops::{Problem, RequestId, client_ip};
use palisade_store::Database;

use crate::{
    TenancyConfig, TenancyError, TenantSession, api_keys,
    audit::Change,
    membership::Memberships,
    resolve::{self, Candidates},
    session::Access,
    tenants::{Tenant, TenantDirectory},
    users::{self, User, UserRole},
};

/// The per-caller rate limits and the revocation check, made together once the tenant and the
/// subject are known (one Redis round trip, see docs/adr/0004-rate-limiting.md). Tenancy knows
/// who the caller is; the limits themselves (policies, buckets, headers, the 429) are the edge's
/// and the revocation list the authenticator's, and the api crate connects them, so tenancy does
/// not depend on the edge.
pub trait CallerLimits: Send + Sync + std::fmt::Debug {
    /// Counts one request of `caller` in the tenant `tenant_slug` (a write when `write`) after
    /// the client's pending anonymous check, checks that the caller's token is not revoked,
    /// records the decisions for the response headers in `extensions`, and returns the
    /// authenticated caller or the refusal (429, 401 revoked, 503). When `epoch_key` is given
    /// and the same Redis call could read it, the tenant's membership epoch comes back with it.
    fn enforce<'a>(
        &'a self,
        extensions: &'a Extensions,
        tenant_slug: &'a str,
        epoch_key: Option<&'a str>,
        write: bool,
        caller: Unrevoked,
    ) -> Pin<Box<dyn Future<Output = Result<Enforced, Problem>> + Send + 'a>>;
}

/// What [`CallerLimits::enforce`] let through.
#[derive(Debug)]
pub struct Enforced {
    pub auth: AuthContext,
    /// The tenant's membership epoch ([`Memberships`]), when it was read.
    pub epoch: Option<i64>,
}

/// Tenancy's share of the application state.
#[derive(Debug, Clone)]
pub struct Tenancy {
    pub config: Arc<TenancyConfig>,
    pub directory: TenantDirectory,
    pub memberships: Memberships,
}

impl Tenancy {
    /// Call after committing a change to `tenant` itself (creation, status, deletion,
    /// restoration): this replica's directory forgets it, and every replica looks its users up
    /// again.
    pub async fn tenant_changed(&self, tenant: &Tenant) {
        self.directory.forget(tenant).await;
        self.memberships.changed(tenant.id).await;
    }
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

    /// Ends a write: commits the session with the audit row for `change`, acting as the caller.
    pub async fn commit(self, change: Change<'_>) -> Result<(), TenancyError> {
        self.session.commit(&self.auth.subject, change, &self.meta).await
    }
}

impl<S> FromRequestParts<S> for TenantContext
where
    S: Send + Sync,
    Tenancy: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
    Arc<dyn CallerLimits>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // An earlier extractor may have authenticated the request completely; otherwise the token
        // is verified here and its revocation lookup rides with the per-caller rate limits below.
        let caller = match parts.extensions.get::<AuthContext>() {
            Some(context) => Unrevoked::checked(context.clone()),
            None => {
                Arc::<Authenticator>::from_ref(state).verify_headers(&parts.headers).await.map_err(Problem::from)?
            }
        };
        let auth = caller.claims();
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
        let tenant = match resolve::resolve(&tenancy.config, &candidates, &tenancy.directory, platform_admin).await {
            Ok(tenant) => tenant,
            // An API key never crosses tenants; its refusal says so and counts as a key failure.
            Err(TenancyError::TenantMismatch(..)) if auth.api_key.is_some() => {
                let refusal = Arc::<Authenticator>::from_ref(state).refused(AuthError::ApiKeyWrongTenant);
                return Err(refusal.into());
            }
            Err(error) => return Err(error.into()),
        };
        // The token's subject is known (its signature and expiry checked) and, with the tenant, on
        // every line from here, a refused one included. One call: the JSON format serializes a
        // span's fields again on every record.
        tracing::record_all!(tracing::Span::current(), tenant_id = %tenant.id, user_id = auth.subject.as_str());
        // Per (tenant, subject) budgets, keyed by slug because tenant overrides are; an API key's
        // subject is `apikey:<id>`, so every key has buckets of its own.
        let write = !parts.method.is_safe();
        let limits = Arc::<dyn CallerLimits>::from_ref(state);
        let epoch_key = tenancy.memberships.epoch_key(tenant.id);
        let Enforced { auth, epoch } =
            limits.enforce(&parts.extensions, &tenant.slug, epoch_key.as_deref(), write, caller).await?;
        parts.extensions.insert(auth.clone());
        let meta = RequestMeta::from_parts(parts);
        let db = tenancy.directory.db();
        let memberships = &tenancy.memberships;
        let cached = epoch.and_then(|epoch| memberships.get(tenant.id, &auth.subject, epoch));
        let hit = cached.is_some();
        let (user, session) = match cached {
            // Nothing changed in the tenant since this user was looked up: no lookup, and the
            // handler's session begins with its first query.
            Some(user) => {
                let access = if write { Access::Write } else { Access::Read };
                (user, TenantSession::lazy_with(db.clone(), tenant.id, access))
            }
            // The handler's session begins on first use, so it is not open (on SQLite: holding the
            // write lock) while the request body is still arriving.
            None if write => {
                let user = provisioned(db, &tenant, &auth.subject, &meta).await?;
                (user, TenantSession::lazy(db.clone(), tenant.id))
            }
            None => {
                // A read is one transaction: the user's lookup and the handler's queries share it.
                let mut session = TenantSession::begin_with(db, tenant.id, Access::Read).await?;
                match users::find_in_live_tenant(session.tx().await?, tenant.id, &auth.subject).await? {
                    Some(user) => (user, session),
                    None => {
                        drop(session);
                        let user = provision(db, &tenant, &auth.subject, &meta).await?;
                        (user, TenantSession::lazy_with(db.clone(), tenant.id, Access::Read))
                    }
                }
            }
        };
        // Kept under the epoch read before the lookup (a freshly provisioned user too: the
        // tenant was live when it was provisioned).
        if let Some(epoch) = epoch.filter(|_| !hit) {
            memberships.remember(epoch, &user);
        }
        // After the user lookup, which refuses a deleted or suspended tenant on every replica: a
        // refused key's use is not recorded.
        if let Some(key) = &auth.api_key {
            api_keys::record_use(db, tenant.id, key, &meta).await?;
        }
        Ok(Self { tenant, auth, user, session, meta })
    }
}

/// The user for `subject`, looked up in a read transaction, and provisioned on first sight.
async fn provisioned(db: &Database, tenant: &Tenant, subject: &str, meta: &RequestMeta) -> Result<User, TenancyError> {
    let mut lookup = TenantSession::begin_with(db, tenant.id, Access::Read).await?;
    if let Some(user) = users::find_in_live_tenant(lookup.tx().await?, tenant.id, subject).await? {
        return Ok(user);
    }
    drop(lookup);
    provision(db, tenant, subject, meta).await
}

/// Provisions the user for `subject` (and audits it) in a write transaction committed at once:
/// provisioning must survive a read-only request. Another request may have provisioned it
/// meanwhile; then that user is returned and nothing is audited twice.
async fn provision(db: &Database, tenant: &Tenant, subject: &str, meta: &RequestMeta) -> Result<User, TenancyError> {
    let mut setup = TenantSession::begin(db, tenant.id).await?;
    let (user, created) = users::provision(setup.tx().await?, tenant.id, subject).await?;
    if created {
        let change = Change { action: "user.provisioned", resource_type: "user", resource_id: &user.id.to_string() };
        setup.commit(subject, change, meta).await?;
    }
    Ok(user)
}
