//! The [`Authenticator`]: turns a bearer token into an [`AuthContext`] or says why not.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use palisade_ops::{Metrics, ReadinessCheck};
use palisade_store::Redis;
use time::OffsetDateTime;
use tokio::task::AbortHandle;

use crate::{
    AuthConfig, AuthContext, AuthError, FailureReason, RevocationFailureMode,
    api_key::{self, ApiKeyLookup},
    context::Claims,
    dev::{DevKeys, DevTokenRequest, check_dev_mode},
    jwks::{KeyStore, SigningKey, spawn_refresh},
    revocation::{Lookup, MEMORY_CAPACITY, MemoryRevocations, RevocationStore, StoreFailure},
    token::{RawHeader, from_jwt_error},
    verified::VerifiedTokens,
};

/// While Redis is unreachable in `open` mode every request would log; once per this is enough.
const OPEN_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A jti worth storing: 1–255 visible ASCII characters (anything else is no token id of ours,
/// and an unbounded one would let a caller fill the revocation list).
fn is_revocable_jti(jti: &str) -> bool {
    !jti.is_empty() && jti.len() <= 255 && jti.bytes().all(|b| b.is_ascii_graphic())
}

/// The revocation list's key for a token: its tenant's uuid (empty for a token without a tenant
/// claim) and its jti. Canonical whatever the caller named the tenant by (slug or uuid, in any
/// case), so a revocation reaches the token however either side spelled the tenant. The tenant
/// part is length-prefixed so no choice of the two can collide with another.
fn revocation_key(tenant: &str, jti: &str) -> String {
    format!("{}:{tenant}:{jti}", tenant.len())
}

/// Maps a tenant claim (a slug or a uuid, as the token states it) to the tenant's uuid, so that
/// revocations are keyed canonically. The tenancy crate's directory implements it; the
/// authenticator cannot depend on it (tenancy depends on auth).
pub trait TenantIds: Send + Sync + std::fmt::Debug {
    /// `None` for an unknown tenant or when the lookup failed.
    fn tenant_id<'a>(&'a self, claim: &'a str) -> Pin<Box<dyn Future<Output = Option<uuid::Uuid>> + Send + 'a>>;
}

/// A verified caller whose token has not been checked against the revocation list yet: the
/// tenant extractor makes that lookup in the same Redis round trip as its rate limits (see
/// docs/adr/0002), then hands the answer to [`Authenticator::finish`]. Holding one is no
/// authentication: only `finish` yields the [`AuthContext`].
#[derive(Debug)]
pub struct Unrevoked {
    context: AuthContext,
    lookup: Lookup,
}

impl Unrevoked {
    /// A context that needs no lookup (already checked by an earlier extractor).
    pub fn checked(context: AuthContext) -> Self {
        Self { context, lookup: Lookup::None }
    }

    /// The verified claims, for deciding the tenant before the lookup; not to be trusted as an
    /// authenticated caller yet.
    pub fn claims(&self) -> &AuthContext {
        &self.context
    }

    /// The Redis key to look up (its existence means "revoked"), when the list is in Redis.
    pub fn redis_key(&self) -> Option<&str> {
        match &self.lookup {
            Lookup::Redis(key) => Some(key),
            Lookup::None | Lookup::Known(_) => None,
        }
    }

    /// Whether the token is known to be revoked without asking Redis (in-process list).
    pub fn known_revoked(&self) -> bool {
        matches!(self.lookup, Lookup::Known(true))
    }
}

/// What became of an [`Unrevoked`]'s Redis lookup when another component made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationAnswer {
    /// Not made: [`Authenticator::finish`] makes it (one round trip of its own).
    NotAsked,
    /// Made: whether the key exists.
    Revoked(bool),
    /// The call that carried it failed (its Redis error is counted by its own operation label
    /// too); `revocation_failure_mode` decides.
    Failed(String),
}

/// How tokens are verified: by the issuer's published keys, or by the development secret.
#[derive(Debug)]
enum Mode {
    Oidc(Box<Oidc>),
    Development(Box<DevKeys>),
}

/// OIDC verification: the issuer's keys, the accepted algorithms and the claim checks.
#[derive(Debug)]
struct Oidc {
    keys: Arc<KeyStore>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
}

/// Verifies bearer tokens, checks revocations and counts failures. Shared by all requests
/// (`Arc<Authenticator>` in the router state); dropping it stops the key refresh task.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
    tenant_claim: String,
    leeway: Duration,
    revocations: RevocationStore,
    failure_mode: RevocationFailureMode,
    metrics: Arc<Metrics>,
    refresh_task: Option<AbortHandle>,
    last_open_warning: Mutex<Option<Instant>>,
    ready_requires_signing_keys: bool,
    tenant_ids: OnceLock<Arc<dyn TenantIds>>,
    api_keys: OnceLock<Arc<dyn ApiKeyLookup>>,
    /// Tokens verified before, served again after their expiry and key are re-checked.
    verified: VerifiedTokens,
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        if let Some(task) = &self.refresh_task {
            task.abort();
        }
    }
}

impl Authenticator {
    /// Sets up verification for `config`. In OIDC mode the issuer's keys are fetched once
    /// (bounded by `jwks_fetch_timeout`) and then refreshed in the background; a provider that is
    /// down does not fail startup, requests are refused with `keys_unavailable` until the keys
    /// arrive. Without an issuer (development mode) the environment must be development.
    ///
    /// `redis`: the shared revocation list; `None` keeps revocations in this process.
    pub async fn new(
        config: &AuthConfig,
        is_development: bool,
        metrics: Arc<Metrics>,
        redis: Option<Redis>,
    ) -> Result<Arc<Self>, AuthError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(AuthError::Config(problems));
        }
        for reason in FailureReason::ALL {
            metrics.auth_failures_total.with_label_values(&[reason.as_str()]);
        }
        let (mode, refresh_task) = match &config.issuer {
            Some(issuer) => {
                let keys = Arc::new(
                    KeyStore::new(
                        issuer.clone(),
                        config.jwks_uri.clone(),
                        config.jwks_fetch_timeout,
                        config.jwks_unknown_kid_refetches_per_minute,
                    )
                    .map_err(|error| AuthError::Internal(format!("cannot build the HTTP client: {error}")))?,
                );
                let initial = tokio::time::timeout(config.jwks_fetch_timeout, keys.refresh()).await;
                let initial_failed = !matches!(initial, Ok(Ok(_)));
                if initial_failed {
                    tracing::warn!(
                        %issuer,
                        "the issuer's signing keys could not be fetched at startup; requests are refused until \
                         they arrive (retrying in the background)"
                    );
                }
                let task = spawn_refresh(&keys, config.jwks_refresh_interval, initial_failed);
                let algorithms = config.parsed_algorithms();
                let mut validation = Validation::new(Algorithm::RS256);
                validation.leeway = config.leeway.as_secs();
                validation.validate_nbf = true;
                validation.set_issuer(&[issuer]);
                match &config.audience {
                    Some(audience) => {
                        validation.set_audience(&[audience]);
                        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                    }
                    None => {
                        // Development or staging against a real issuer without an audience;
                        // `production_problems` refuses this outside development.
                        validation.validate_aud = false;
                        validation.set_required_spec_claims(&["exp", "iss"]);
                    }
                }
                (Mode::Oidc(Box::new(Oidc { keys, algorithms, validation })), Some(task))
            }
            None => {
                check_dev_mode(config, is_development)?;
                tracing::warn!("auth.issuer is not set: accepting development tokens (HS256, `palisade token`)");
                (Mode::Development(Box::new(DevKeys::new(config))), None)
            }
        };
        let revocations = match redis {
            Some(redis) => {
                metrics.redis_errors_total.with_label_values(&["revocation"]);
                RevocationStore::Redis(redis)
            }
            None => RevocationStore::Memory(MemoryRevocations::new(MEMORY_CAPACITY)),
        };
        Ok(Arc::new(Self {
            mode,
            tenant_claim: config.tenant_claim.clone(),
            leeway: config.leeway,
            revocations,
            failure_mode: config.revocation_failure_mode,
            metrics,
            refresh_task,
            last_open_warning: Mutex::new(None),
            ready_requires_signing_keys: config.ready_requires_signing_keys,
            tenant_ids: OnceLock::new(),
            api_keys: OnceLock::new(),
            verified: VerifiedTokens::new(config.leeway),
        }))
    }

    /// Verifies `token` (signature, algorithm, issuer, audience, times) and checks that it has not
    /// been revoked. Failures are counted in `auth_failures_total`.
    ///
    /// A token with the API key prefix (`psk_`) takes the key path instead: format and checksum,
    /// then the key's row by lookup id, compared by hash (see [`crate::api_key`]).
    pub async fn authenticate(&self, token: &str) -> Result<AuthContext, AuthError> {
        if api_key::looks_like_key(token) {
            let result = self.verify_api_key(token).await;
            if result.is_ok() {
                self.metrics.api_key_authentications_total.with_label_values(&["success"]).inc();
            }
            return self.counted(result);
        }
        let result = match self.verify_token(token).await {
            Ok(context) => self.check_revocation(context).await,
            Err(error) => Err(error),
        };
        self.counted(result)
    }

    /// [`Self::authenticate`] for a request's headers: reads `Authorization: Bearer <token>`
    /// (the scheme is case-insensitive).
    pub async fn authenticate_headers(&self, headers: &HeaderMap) -> Result<AuthContext, AuthError> {
        match bearer_token(headers) {
            Ok(token) => self.authenticate(token).await,
            Err(error) => self.counted(Err(error)),
        }
    }

    /// [`Self::authenticate_headers`] up to the revocation check, which is left to the caller
    /// (to ride in one Redis call with its rate limits) and ended by [`Self::finish`]. Failures
    /// are counted as by `authenticate_headers`. An API key is checked completely here (its
    /// revocation is in the database).
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Unrevoked, AuthError> {
        let token = match bearer_token(headers) {
            Ok(token) => token,
            Err(error) => return self.counted(Err(error)).map(Unrevoked::checked),
        };
        if api_key::looks_like_key(token) {
            return self.authenticate(token).await.map(Unrevoked::checked);
        }
        let context = self.counted(self.verify_token(token).await)?;
        let lookup = match context.jti.as_deref() {
            Some(jti) => {
                let tenant = self.canonical_tenant(context.tenant.as_deref()).await;
                self.revocations.lookup(&revocation_key(&tenant, jti))
            }
            None => Lookup::None,
        };
        Ok(Unrevoked { context, lookup })
    }

    /// Ends [`Self::verify_headers`]: the context when the token is not revoked. `answer` is the
    /// Redis lookup's outcome when another call made it; `NotAsked` makes it here. A failed
    /// lookup is decided by `revocation_failure_mode` exactly as in [`Self::authenticate`], and
    /// counted in `redis_errors_total{operation="revocation"}`.
    pub async fn finish(&self, caller: Unrevoked, answer: RevocationAnswer) -> Result<AuthContext, AuthError> {
        let Unrevoked { context, lookup } = caller;
        let result = match (lookup, answer) {
            (Lookup::None, _) | (Lookup::Known(false), _) => return Ok(context),
            (Lookup::Known(true), _) | (Lookup::Redis(_), RevocationAnswer::Revoked(true)) => Err(AuthError::Revoked),
            (Lookup::Redis(_), RevocationAnswer::Revoked(false)) => Ok(context),
            (Lookup::Redis(key), RevocationAnswer::NotAsked) => {
                let checked = self.revocations.is_revoked_at(&key).await;
                self.revocation_decided(context, checked)
            }
            (Lookup::Redis(_), RevocationAnswer::Failed(error)) => {
                self.metrics.redis_error("revocation");
                self.revocation_decided(context, Err(StoreFailure::Combined(error)))
            }
        };
        match result {
            Ok(context) => Ok(context),
            Err(error) => Err(self.refused(error)),
        }
    }

    /// Verifies `token` like [`Self::authenticate`] but without the revocation check: for
    /// revoking a token that may already be revoked.
    pub async fn verify(&self, token: &str) -> Result<AuthContext, AuthError> {
        let result = self.verify_token(token).await;
        self.counted(result)
    }

    /// Revokes the token with id `jti` whose tenant claim is `tenant`, until it expires at
    /// `expires_at`; every replica sharing the Redis refuses it from then on. Revocations are
    /// keyed by tenant claim and jti together, so revoking by jti reaches only tokens of the
    /// revoker's own tenant. Fails (503) rather than pretend when the list cannot be written,
    /// whatever `revocation_failure_mode` says.
    pub async fn revoke(&self, tenant: Option<&str>, jti: &str, expires_at: OffsetDateTime) -> Result<(), AuthError> {
        if !is_revocable_jti(jti) {
            return Err(AuthError::NotRevocable);
        }
        // The token stays acceptable for `leeway` after its exp, so the entry must outlive it.
        let until = time::Duration::try_from(self.leeway)
            .ok()
            .and_then(|leeway| expires_at.checked_add(leeway))
            .unwrap_or(expires_at);
        let tenant = self.canonical_tenant(tenant).await;
        match self.revocations.revoke(&revocation_key(&tenant, jti), until).await {
            Ok(()) => {
                tracing::info!("access token revoked");
                Ok(())
            }
            Err(StoreFailure::Full) => Err(AuthError::RevocationListFull),
            Err(error @ (StoreFailure::Redis(_) | StoreFailure::Combined(_))) => {
                tracing::error!(%error, "a token revocation could not be stored");
                Err(AuthError::RevocationUnavailable)
            }
        }
    }

    /// Lets revocations name a tenant by slug: without it a slug claim is keyed as written, so
    /// a token naming its tenant by uuid would escape a revocation by slug. Set once, at startup.
    pub fn set_tenant_ids(&self, ids: Arc<dyn TenantIds>) {
        if self.tenant_ids.set(ids).is_err() {
            tracing::warn!("the tenant id lookup was set twice; keeping the first");
        }
    }

    /// The tenant part of a revocation key: the tenant's uuid in its canonical (lowercase,
    /// hyphenated) form. A uuid claim needs no lookup; a slug is looked up (cached by the
    /// directory). A claim that names no tenant is kept as written: such a token is refused by
    /// tenant resolution anyway.
    async fn canonical_tenant(&self, claim: Option<&str>) -> String {
        let Some(claim) = claim else { return String::new() };
        if let Ok(id) = uuid::Uuid::parse_str(claim) {
            return id.to_string();
        }
        match self.tenant_ids.get() {
            Some(ids) => ids.tenant_id(claim).await.map_or_else(|| claim.to_owned(), |id| id.to_string()),
            None => claim.to_owned(),
        }
    }

    /// Lets bearer API keys be looked up. Set once, at startup; without it every key is refused
    /// as `api_key_unavailable`.
    pub fn set_api_keys(&self, keys: Arc<dyn ApiKeyLookup>) {
        if self.api_keys.set(keys).is_err() {
            tracing::warn!("the API key lookup was set twice; keeping the first");
        }
    }

    /// Counts a refusal made after authentication proper (an API key presented in another
    /// tenant) as any other, and returns it.
    pub fn refused(&self, error: AuthError) -> AuthError {
        match self.counted(Err(error)) {
            Err(error) => error,
            Ok(_) => AuthError::Internal("a refusal was counted as a success".to_owned()),
        }
    }

    /// The key path: the format and checksum offline, then one lookup by lookup id, then the
    /// hash compared in constant time, then revocation and expiry. The database is asked on
    /// every request, so a revocation is seen by every replica at its next request.
    async fn verify_api_key(&self, token: &str) -> Result<AuthContext, AuthError> {
        let parsed = api_key::parse(token).map_err(AuthError::ApiKeyMalformed)?;
        let Some(lookup) = self.api_keys.get() else {
            return Err(AuthError::ApiKeyUnavailable);
        };
        let stored = match lookup.find(parsed.lookup_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(AuthError::ApiKeyUnknown),
            Err(error) => {
                tracing::error!(%error, "an API key could not be looked up");
                return Err(AuthError::ApiKeyUnavailable);
            }
        };
        if !api_key::hashes_match(&api_key::hash_secret(parsed.secret), &stored.secret_hash) {
            return Err(AuthError::ApiKeyUnknown);
        }
        if stored.revoked_at.is_some() {
            return Err(AuthError::ApiKeyRevoked);
        }
        if stored.expires_at.is_some_and(|at| at <= OffsetDateTime::now_utc()) {
            return Err(AuthError::ApiKeyExpired);
        }
        Ok(AuthContext::for_api_key(stored))
    }

    /// Revokes the token an [`AuthContext`] came from (`POST /api/v1/auth/revoke`).
    pub async fn revoke_context(&self, context: &AuthContext) -> Result<(), AuthError> {
        let jti = context.jti.as_deref().ok_or(AuthError::NotRevocable)?;
        self.revoke(context.tenant.as_deref(), jti, context.expires_at).await
    }

    /// Mints a development token with this authenticator's secret and claims (development mode
    /// only); the CLI uses [`crate::mint_dev_token`], which needs no authenticator.
    pub fn mint_dev_token(&self, request: &DevTokenRequest) -> Result<String, AuthError> {
        match &self.mode {
            Mode::Development(keys) => keys.mint(request),
            Mode::Oidc(_) => {
                Err(AuthError::DevTokensDisabled("auth.issuer is set, so only the issuer's tokens are accepted"))
            }
        }
    }

    /// Whether tokens are verified against an OpenID Connect issuer (else: development tokens).
    pub fn is_oidc(&self) -> bool {
        matches!(self.mode, Mode::Oidc(_))
    }

    /// How many of the issuer's signing keys are cached (0 until the first successful fetch;
    /// always 0 in development mode).
    pub fn signing_key_count(&self) -> usize {
        match &self.mode {
            Mode::Oidc(oidc) => oidc.keys.key_count(),
            Mode::Development(_) => 0,
        }
    }

    /// The readiness check "the issuer's signing keys were loaded", in OIDC mode and unless
    /// `auth.ready_requires_signing_keys` is off: a pod that cannot verify any token takes no
    /// traffic.
    pub fn readiness_check(self: &Arc<Self>) -> Option<Arc<dyn ReadinessCheck>> {
        (self.is_oidc() && self.ready_requires_signing_keys)
            .then(|| Arc::new(SigningKeysCheck(Arc::downgrade(self))) as Arc<dyn ReadinessCheck>)
    }

    fn counted(&self, result: Result<AuthContext, AuthError>) -> Result<AuthContext, AuthError> {
        match result {
            Ok(context) => Ok(context.with_scope_counter(
                self.metrics.auth_failures_total.with_label_values(&[FailureReason::InsufficientScope.as_str()]),
            )),
            Err(error) => {
                if let Some(reason) = error.reason() {
                    self.metrics.auth_failures_total.with_label_values(&[reason.as_str()]).inc();
                    if let Some(outcome) = reason.api_key_outcome() {
                        self.metrics.api_key_authentications_total.with_label_values(&[outcome]).inc();
                    }
                    tracing::debug!(reason = reason.as_str(), "authentication refused");
                }
                Err(error)
            }
        }
    }

    async fn verify_token(&self, token: &str) -> Result<AuthContext, AuthError> {
        let published = |kid: &str, key: &Arc<SigningKey>| match &self.mode {
            Mode::Oidc(oidc) => oidc.keys.publishes(kid, key),
            Mode::Development(_) => false,
        };
        if let Some(context) = self.verified.get(token, published) {
            return Ok(context);
        }
        let header = RawHeader::parse(token)?;
        let (data, signer) = match &self.mode {
            Mode::Development(keys) => {
                header.algorithm(&[Algorithm::HS256])?;
                (jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation), None)
            }
            Mode::Oidc(oidc) => {
                let algorithm = header.algorithm(&oidc.algorithms)?;
                if algorithm.family() == AlgorithmFamily::Hmac {
                    return Err(AuthError::DisallowedAlgorithm(
                        "HMAC-signed access tokens are refused: the issuer signs with a private key.".to_owned(),
                    ));
                }
                let kid = header.kid.as_deref().filter(|kid| !kid.is_empty()).ok_or(AuthError::MissingKeyId)?;
                let key = oidc.keys.key(kid).await?;
                if !key.accepts(algorithm) {
                    return Err(AuthError::DisallowedAlgorithm(
                        "The access token's algorithm does not match the key it names.".to_owned(),
                    ));
                }
                let mut validation = oidc.validation.clone();
                validation.algorithms = vec![algorithm];
                (jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation), Some((kid.to_owned(), key)))
            }
        };
        let context = data.map_err(|error| from_jwt_error(&error))?.claims.into_context(&self.tenant_claim)?;
        self.verified.insert(token, &context, signer);
        Ok(context)
    }

    async fn check_revocation(&self, context: AuthContext) -> Result<AuthContext, AuthError> {
        let Some(jti) = context.jti.as_deref() else {
            return Ok(context);
        };
        let tenant = self.canonical_tenant(context.tenant.as_deref()).await;
        let checked = self.revocations.is_revoked(&revocation_key(&tenant, jti)).await;
        self.revocation_decided(context, checked)
    }

    /// The context, refused when revoked; a failed lookup is decided by the failure mode.
    fn revocation_decided(
        &self,
        context: AuthContext,
        checked: Result<bool, StoreFailure>,
    ) -> Result<AuthContext, AuthError> {
        match checked {
            Ok(false) => Ok(context),
            Ok(true) => Err(AuthError::Revoked),
            Err(error) => match self.failure_mode {
                RevocationFailureMode::Closed => {
                    tracing::error!(%error, "token revocation cannot be checked; refusing the request (closed mode)");
                    Err(AuthError::RevocationUnavailable)
                }
                RevocationFailureMode::Open => {
                    // Already counted in redis_errors_total{operation="revocation"}.
                    self.warn_open(&error);
                    Ok(context)
                }
            },
        }
    }

    fn warn_open(&self, error: &StoreFailure) {
        let mut last = self.last_open_warning.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= OPEN_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                %error,
                "token revocation cannot be checked; letting requests through (open mode, see ADR 0002)"
            );
        }
    }
}

/// Ready once the issuer's keys are cached. Holds a weak reference: readiness must not keep the
/// authenticator (and its refresh task) alive.
#[derive(Debug)]
struct SigningKeysCheck(Weak<Authenticator>);

impl ReadinessCheck for SigningKeysCheck {
    fn name(&self) -> &'static str {
        "signing_keys"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let count = self.0.upgrade().map_or(0, |auth| auth.signing_key_count());
        Box::pin(async move {
            if count > 0 { Ok(()) } else { Err("the issuer's signing keys have never been loaded".to_owned()) }
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(header::AUTHORIZATION) {
            AuthError::Malformed("the request has more than one Authorization header")
        } else {
            AuthError::MissingToken
        });
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc "] {
            assert_eq!(bearer_token(&headers(&[value])).ok(), Some("abc"), "{value}");
        }
    }

    #[test]
    fn a_missing_empty_or_foreign_authorization_is_refused() {
        assert!(matches!(bearer_token(&headers(&[])), Err(AuthError::MissingToken)));
        assert!(matches!(bearer_token(&headers(&["Bearer "])), Err(AuthError::MissingToken)));
        assert!(matches!(bearer_token(&headers(&["Basic dXNlcjpwYXNz"])), Err(AuthError::NotBearer)));
        assert!(matches!(bearer_token(&headers(&["Bearer a", "Bearer b"])), Err(AuthError::Malformed(_))));
    }
}
