//! Development tokens: HS256 with a local secret, so `cargo run` works without an identity
//! provider. Minted by `palisade token`, accepted only when the environment is development.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{AuthConfig, AuthError};

/// The `iss` of every development token; never a real issuer's URL.
pub const DEV_ISSUER: &str = "palisade-dev";

/// The `aud` of development tokens when `auth.audience` is unset.
pub const DEV_AUDIENCE: &str = "palisade";

/// The secret used when `auth.dev_secret` is unset. Public by nature (it is in the source), which
/// is why development tokens are refused outside development whatever the secret.
pub const DEV_SECRET: &str = "palisade-development-secret-never-use-in-production";

/// What `palisade token --tenant SLUG --sub ID --scopes a,b --ttl 1h` asks for.
#[derive(Debug, Clone)]
pub struct DevTokenRequest {
    pub subject: String,
    /// Put in the configured tenant claim (`tenant_id` by default).
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub ttl: Duration,
}

/// The HS256 keys and claim checks of development mode.
pub(crate) struct DevKeys {
    encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    pub(crate) validation: Validation,
    audience: String,
    tenant_claim: String,
}

impl std::fmt::Debug for DevKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKeys").field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl DevKeys {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        let secret = config.dev_secret.as_ref().map_or(DEV_SECRET, |secret| secret.expose_secret());
        let audience = config.audience.clone().unwrap_or_else(|| DEV_AUDIENCE.to_owned());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[DEV_ISSUER]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            audience,
            tenant_claim: config.tenant_claim.clone(),
        }
    }

    pub(crate) fn mint(&self, request: &DevTokenRequest) -> Result<String, AuthError> {
        let invalid = |why: &str| AuthError::InvalidDevTokenRequest(why.to_owned());
        if request.subject.trim().is_empty() {
            return Err(invalid("the subject is empty"));
        }
        if request.ttl.is_zero() {
            return Err(invalid("the ttl must be greater than 0"));
        }
        if request.scopes.iter().any(|scope| scope.is_empty() || scope.contains(char::is_whitespace)) {
            return Err(invalid("a scope is empty or contains whitespace"));
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(request.ttl.as_secs()).map_err(|_| invalid("the ttl is too long"))?;
        let mut claims = Map::new();
        claims.insert("iss".into(), DEV_ISSUER.into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("sub".into(), request.subject.clone().into());
        if let Some(tenant) = &request.tenant {
            claims.insert(self.tenant_claim.clone(), tenant.clone().into());
        }
        claims.insert("scope".into(), request.scopes.join(" ").into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl.max(1)).into());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Value::Object(claims), &self.encoding)
            .map_err(|error| AuthError::Internal(format!("signing the development token failed: {error}")))
    }
}

/// Mints a development token (`palisade token`). Refused unless the environment is development
/// and no issuer is configured (with an issuer, only the issuer's tokens are accepted, so a
/// development token would be useless).
pub fn mint_dev_token(
    config: &AuthConfig,
    is_development: bool,
    request: &DevTokenRequest,
) -> Result<String, AuthError> {
    check_dev_mode(config, is_development)?;
    DevKeys::new(config).mint(request)
}

pub(crate) fn check_dev_mode(config: &AuthConfig, is_development: bool) -> Result<(), AuthError> {
    if !is_development {
        return Err(AuthError::DevTokensDisabled("the environment is not development"));
    }
    if config.issuer.is_some() {
        return Err(AuthError::DevTokensDisabled("auth.issuer is set, so only the issuer's tokens are accepted"));
    }
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(AuthError::Config(problems));
    }
    Ok(())
}
