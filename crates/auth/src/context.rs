//! Who is calling: the verified facts of an access token that handlers act on.

use std::collections::BTreeSet;

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{
    AuthError,
    api_key::{KeyUse, StoredKey},
};

/// The `expires_at` of a key that never expires: the last second of 9999.
const NEVER: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);

/// Scopes the platform itself defines; each resource declares its own (see `palisade_api::resources`).
pub mod scopes {
    pub const TENANT_ADMIN: &str = "tenant:admin";
    pub const PLATFORM_ADMIN: &str = "platform:admin";
}

/// An authenticated caller. Produced by [`crate::Authenticator::authenticate`] or by using it as
/// an axum extractor; serializes as the body of `GET /api/v1/auth/me` (schema `Me`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Me)]
pub struct AuthContext {
    /// The token's `sub`: the user (or client) id at the issuer.
    pub subject: String,
    /// The value of the tenant claim (a slug or a uuid), when the token carries one; the tenancy
    /// crate reconciles it with the `X-Tenant-ID` header and the subdomain.
    pub tenant: Option<String>,
    /// Scopes granted, from `scope` (space-separated) and `scp` (array or string).
    pub scopes: BTreeSet<String>,
    /// The token id, needed to revoke the token; tokens without one cannot be revoked.
    pub jti: Option<String>,
    /// When the token expires; a revocation only needs to be remembered until then.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Counts refused scope checks in `auth_failures_total`, when the context came from an
    /// [`crate::Authenticator`] (contexts built by hand in tests count nothing).
    #[serde(skip)]
    insufficient_scope: Option<IntCounter>,
    /// The API key the request presented (`None` for a bearer JWT).
    #[serde(skip)]
    pub api_key: Option<KeyUse>,
}

impl AuthContext {
    /// A context built by hand (tests, background jobs acting for a user).
    pub fn new(
        subject: impl Into<String>,
        tenant: Option<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
        jti: Option<String>,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            subject: subject.into(),
            tenant,
            scopes: scopes.into_iter().map(Into::into).collect(),
            jti,
            expires_at,
            insufficient_scope: None,
            api_key: None,
        }
    }

    /// The context of a verified API key: subject `apikey:<id>`, the key's tenant (by uuid) as
    /// the tenant claim, the key's scopes; no jti (a key is revoked through its own endpoint).
    /// A key without an expiry reports the latest representable time.
    pub(crate) fn for_api_key(key: StoredKey) -> Self {
        let expires_at = key.expires_at.unwrap_or(NEVER);
        Self {
            subject: crate::api_key::subject(key.id),
            tenant: Some(key.tenant_id.to_string()),
            scopes: key.scopes.into_iter().collect(),
            jti: None,
            expires_at,
            insufficient_scope: None,
            api_key: Some(KeyUse { id: key.id, last_used_at: key.last_used_at, last_used_ip: key.last_used_ip }),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` when the token grants `scope`; otherwise the 403 error that names it.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            return Ok(());
        }
        if let Some(counter) = &self.insufficient_scope {
            counter.inc();
        }
        Err(AuthError::InsufficientScope { required: scope.to_owned() })
    }

    pub(crate) fn with_scope_counter(mut self, counter: IntCounter) -> Self {
        self.insufficient_scope = Some(counter);
        self
    }
}

/// The claims this crate reads; everything else is kept in `other` so the tenant claim can be
/// looked up under whatever name is configured.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    sub: Option<String>,
    jti: Option<String>,
    /// Already checked (present, numeric, not past) by jsonwebtoken; kept as a number because
    /// issuers may send a float.
    exp: Option<serde_json::Number>,
    scope: Option<Value>,
    scp: Option<Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

impl Claims {
    pub(crate) fn into_context(mut self, tenant_claim: &str) -> Result<AuthContext, AuthError> {
        let subject = self.sub.filter(|s| !s.is_empty()).ok_or(AuthError::MissingClaim("sub"))?;
        let exp = self.exp.as_ref().and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)));
        let expires_at = exp.ok_or(AuthError::MissingClaim("exp")).and_then(|exp| {
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| AuthError::Malformed("exp is out of range"))
        })?;
        let tenant = match self.other.remove(tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(tenant)) if !tenant.is_empty() => Some(tenant),
            Some(_) => return Err(AuthError::Malformed("the tenant claim is not a non-empty string")),
        };
        let mut scopes = BTreeSet::new();
        for claim in [self.scope, self.scp].into_iter().flatten() {
            collect_scopes(claim, &mut scopes)?;
        }
        Ok(AuthContext { subject, tenant, scopes, jti: self.jti, expires_at, insufficient_scope: None, api_key: None })
    }
}

fn collect_scopes(claim: Value, scopes: &mut BTreeSet<String>) -> Result<(), AuthError> {
    match claim {
        Value::Null => {}
        Value::String(list) => scopes.extend(list.split_whitespace().map(str::to_owned)),
        Value::Array(items) => {
            for item in items {
                let Value::String(scope) = item else {
                    return Err(AuthError::Malformed("a scope is not a string"));
                };
                scopes.extend(scope.split_whitespace().map(str::to_owned));
            }
        }
        _ => return Err(AuthError::Malformed("the scope claim is neither a string nor an array")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context(claims: Value) -> Result<AuthContext, AuthError> {
        serde_json::from_value::<Claims>(claims).map_err(|_| AuthError::Malformed("json"))?.into_context("tenant_id")
    }

    #[test]
    fn scopes_come_from_a_space_separated_scope_claim() {
        let ctx = context(json!({ "sub": "u1", "exp": 2_000_000_000, "scope": "todos:read  todos:write" }))
            .expect("valid claims");
        assert_eq!(ctx.scopes.iter().collect::<Vec<_>>(), ["todos:read", "todos:write"]);
        assert!(ctx.has_scope("todos:read"));
    }

    #[test]
    fn scopes_come_from_an_scp_array_or_string_too() {
        let ctx = context(json!({ "sub": "u1", "exp": 2_000_000_000, "scp": ["tenant:admin"], "scope": "todos:read" }))
            .expect("valid claims");
        assert!(ctx.has_scope("tenant:admin") && ctx.has_scope("todos:read"));
        let ctx = context(json!({ "sub": "u1", "exp": 2_000_000_000, "scp": "platform:admin" })).expect("valid");
        assert!(ctx.has_scope(scopes::PLATFORM_ADMIN));
    }

    #[test]
    fn a_scope_claim_of_the_wrong_type_is_malformed() {
        let result = context(json!({ "sub": "u1", "exp": 2_000_000_000, "scp": [1, 2] }));
        assert!(matches!(result, Err(AuthError::Malformed(_))));
    }

    #[test]
    fn the_tenant_claim_is_read_by_its_configured_name() {
        let claims = json!({ "sub": "u1", "exp": 2_000_000_000, "https://example.com/tenant": "acme" });
        let ctx = serde_json::from_value::<Claims>(claims)
            .expect("claims")
            .into_context("https://example.com/tenant")
            .expect("valid");
        assert_eq!(ctx.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn a_token_without_a_subject_is_refused() {
        assert!(matches!(context(json!({ "exp": 2_000_000_000 })), Err(AuthError::MissingClaim("sub"))));
    }

    #[test]
    fn the_scope_guard_refuses_a_missing_scope_and_names_it() {
        let ctx = AuthContext::new("u1", None, ["todos:read"], None, OffsetDateTime::UNIX_EPOCH);
        assert!(ctx.require_scope("todos:read").is_ok());
        match ctx.require_scope("todos:write") {
            Err(AuthError::InsufficientScope { required }) => assert_eq!(required, "todos:write"),
            other => panic!("expected insufficient scope, got {other:?}"),
        }
    }
}
