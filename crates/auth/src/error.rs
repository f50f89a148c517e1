//! The crate's one error type and its mapping to problem+json (RFC 9457) with the
//! `WWW-Authenticate` challenge of RFC 6750.
//!
//! Messages say what is wrong with a token but never repeat the token, nor any attacker-chosen
//! part of it (a key id or an algorithm name could carry anything into logs).

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::Problem;
use serde_json::Value;

/// The realm named in every challenge.
pub const REALM: &str = "palisade";

/// The `reason` label of `auth_failures_total`: a small fixed set, so the metric's cardinality
/// stays bounded whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    MissingToken,
    MalformedToken,
    MissingClaim,
    InvalidSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    UnknownKey,
    DisallowedAlgorithm,
    KeysUnavailable,
    Revoked,
    RevocationUnavailable,
    InsufficientScope,
    ApiKeyMalformed,
    ApiKeyUnknown,
    ApiKeyRevoked,
    ApiKeyExpired,
    ApiKeyWrongTenant,
    ApiKeyUnavailable,
}

impl FailureReason {
    /// Every reason, so each series can be exported at 0 from the start (alert rules on
    /// `rate()` need the series to exist before the first failure).
    pub const ALL: [Self; 20] = [
        Self::MissingToken,
        Self::MalformedToken,
        Self::MissingClaim,
        Self::InvalidSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::UnknownKey,
        Self::DisallowedAlgorithm,
        Self::KeysUnavailable,
        Self::Revoked,
        Self::RevocationUnavailable,
        Self::InsufficientScope,
        Self::ApiKeyMalformed,
        Self::ApiKeyUnknown,
        Self::ApiKeyRevoked,
        Self::ApiKeyExpired,
        Self::ApiKeyWrongTenant,
        Self::ApiKeyUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedToken => "malformed_token",
            Self::MissingClaim => "missing_claim",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey => "unknown_key",
            Self::DisallowedAlgorithm => "disallowed_algorithm",
            Self::KeysUnavailable => "keys_unavailable",
            Self::Revoked => "revoked",
            Self::RevocationUnavailable => "revocation_unavailable",
            Self::InsufficientScope => "insufficient_scope",
            Self::ApiKeyMalformed => "api_key_malformed",
            Self::ApiKeyUnknown => "api_key_unknown",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::ApiKeyExpired => "api_key_expired",
            Self::ApiKeyWrongTenant => "api_key_wrong_tenant",
            Self::ApiKeyUnavailable => "api_key_unavailable",
        }
    }

    /// The `outcome` label of `api_key_authentications_total` for a refused API key; `None` for
    /// the reasons of bearer JWTs.
    pub fn api_key_outcome(self) -> Option<&'static str> {
        Some(match self {
            Self::ApiKeyMalformed => "malformed",
            Self::ApiKeyUnknown => "unknown",
            Self::ApiKeyRevoked => "revoked",
            Self::ApiKeyExpired => "expired",
            Self::ApiKeyWrongTenant => "wrong_tenant",
            Self::ApiKeyUnavailable => "unavailable",
            _ => return None,
        })
    }
}

/// Everything that can go wrong authenticating a request, revoking a token, minting a development
/// token or setting the authenticator up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("No access token was presented: send `Authorization: Bearer <token>`.")]
    MissingToken,
    #[error("The Authorization header does not use the Bearer scheme.")]
    NotBearer,
    #[error("The access token is malformed: {0}.")]
    Malformed(&'static str),
    #[error("The access token lacks the required `{0}` claim.")]
    MissingClaim(&'static str),
    #[error("The access token's signature is invalid.")]
    InvalidSignature,
    #[error("The access token has expired.")]
    Expired,
    #[error("The access token is not valid yet (its nbf is in the future).")]
    NotYetValid,
    #[error("The access token was issued by an issuer this API does not trust.")]
    WrongIssuer,
    #[error("The access token was issued for another audience.")]
    WrongAudience,
    #[error("The access token's header has no key id (kid).")]
    MissingKeyId,
    #[error("The access token was signed with a key the issuer does not publish.")]
    UnknownKey,
    #[error("{0}")]
    DisallowedAlgorithm(String),
    #[error("The issuer's signing keys are not available yet; retry shortly.")]
    KeysUnavailable,
    #[error("The access token has been revoked.")]
    Revoked,
    #[error("The access token lacks the `{required}` scope.")]
    InsufficientScope { required: String },
    #[error("Token revocation cannot be checked right now; retry shortly.")]
    RevocationUnavailable,
    #[error("The revocation list is full; retry once older revocations have expired.")]
    RevocationListFull,
    #[error("The access token has no id (jti), so it cannot be revoked.")]
    NotRevocable,
    #[error("The API key is malformed: {0}.")]
    ApiKeyMalformed(crate::api_key::MalformedKey),
    #[error("The API key is not known.")]
    ApiKeyUnknown,
    #[error("The API key has been revoked.")]
    ApiKeyRevoked,
    #[error("The API key has expired.")]
    ApiKeyExpired,
    #[error("The API key belongs to another tenant; a key is only valid in its own tenant.")]
    ApiKeyWrongTenant,
    #[error("API keys cannot be checked right now; retry shortly.")]
    ApiKeyUnavailable,
    #[error("Development tokens are refused: {0}.")]
    DevTokensDisabled(&'static str),
    #[error("Invalid development token request: {0}.")]
    InvalidDevTokenRequest(String),
    #[error("invalid [auth] configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("internal authentication error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The `auth_failures_total` reason this error counts as; `None` for errors that are not a
    /// refused request (configuration, revocation writes, minting).
    pub fn reason(&self) -> Option<FailureReason> {
        Some(match self {
            Self::MissingToken | Self::NotBearer => FailureReason::MissingToken,
            Self::Malformed(_) => FailureReason::MalformedToken,
            Self::MissingClaim(_) => FailureReason::MissingClaim,
            Self::InvalidSignature => FailureReason::InvalidSignature,
            Self::Expired => FailureReason::Expired,
            Self::NotYetValid => FailureReason::NotYetValid,
            Self::WrongIssuer => FailureReason::WrongIssuer,
            Self::WrongAudience => FailureReason::WrongAudience,
            Self::MissingKeyId | Self::UnknownKey => FailureReason::UnknownKey,
            Self::DisallowedAlgorithm(_) => FailureReason::DisallowedAlgorithm,
            Self::KeysUnavailable => FailureReason::KeysUnavailable,
            Self::Revoked => FailureReason::Revoked,
            Self::RevocationUnavailable => FailureReason::RevocationUnavailable,
            Self::InsufficientScope { .. } => FailureReason::InsufficientScope,
            Self::ApiKeyMalformed(_) => FailureReason::ApiKeyMalformed,
            Self::ApiKeyUnknown => FailureReason::ApiKeyUnknown,
            Self::ApiKeyRevoked => FailureReason::ApiKeyRevoked,
            Self::ApiKeyExpired => FailureReason::ApiKeyExpired,
            Self::ApiKeyWrongTenant => FailureReason::ApiKeyWrongTenant,
            Self::ApiKeyUnavailable => FailureReason::ApiKeyUnavailable,
            Self::RevocationListFull
            | Self::NotRevocable
            | Self::DevTokensDisabled(_)
            | Self::InvalidDevTokenRequest(_)
            | Self::Config(_)
            | Self::Internal(_) => return None,
        })
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope { .. } | Self::DevTokensDisabled(_) | Self::ApiKeyWrongTenant => {
                StatusCode::FORBIDDEN
            }
            Self::RevocationUnavailable | Self::RevocationListFull | Self::ApiKeyUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotRevocable | Self::InvalidDevTokenRequest(_) => StatusCode::BAD_REQUEST,
            Self::Config(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        let detail = error.to_string();
        let reason = error.reason().map(FailureReason::as_str);
        let problem = match &error {
            AuthError::MissingToken | AuthError::NotBearer => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required", &detail)
                    .with_header(header::WWW_AUTHENTICATE, challenge(None))
            }
            AuthError::InsufficientScope { required } => {
                Problem::new(StatusCode::FORBIDDEN, "insufficient-scope", "Insufficient scope", &detail)
                    .with_header(
                        header::WWW_AUTHENTICATE,
                        challenge(Some(Challenge::InsufficientScope { description: &detail, scope: required })),
                    )
                    .with_extension("required_scope", Value::String(required.clone()))
            }
            AuthError::ApiKeyMalformed(_)
            | AuthError::ApiKeyUnknown
            | AuthError::ApiKeyRevoked
            | AuthError::ApiKeyExpired => {
                let (slug, title) = match &error {
                    AuthError::ApiKeyMalformed(_) => ("api-key-malformed", "Malformed API key"),
                    AuthError::ApiKeyUnknown => ("api-key-unknown", "Unknown API key"),
                    AuthError::ApiKeyRevoked => ("api-key-revoked", "Revoked API key"),
                    _ => ("api-key-expired", "Expired API key"),
                };
                Problem::new(StatusCode::UNAUTHORIZED, slug, title, &detail).with_header(
                    header::WWW_AUTHENTICATE,
                    challenge(Some(Challenge::InvalidToken { description: &detail })),
                )
            }
            AuthError::ApiKeyWrongTenant => {
                Problem::new(StatusCode::FORBIDDEN, "api-key-wrong-tenant", "API key of another tenant", &detail)
            }
            AuthError::RevocationUnavailable | AuthError::RevocationListFull | AuthError::ApiKeyUnavailable => {
                Problem::unavailable(&detail)
                    .with_header(HeaderName::from_static("retry-after"), HeaderValue::from_static("1"))
            }
            AuthError::NotRevocable => Problem::new(StatusCode::BAD_REQUEST, "not-revocable", "Not revocable", &detail),
            AuthError::DevTokensDisabled(_) => Problem::forbidden(&detail),
            AuthError::InvalidDevTokenRequest(_) => Problem::bad_request(&detail),
            AuthError::Config(_) | AuthError::Internal(_) => Problem::internal(),
            _ => Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", "Invalid access token", &detail).with_header(
                header::WWW_AUTHENTICATE,
                challenge(Some(Challenge::InvalidToken { description: &detail })),
            ),
        };
        match reason {
            Some(reason) => problem.with_extension("reason", Value::String(reason.to_owned())),
            None => problem,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

/// The error part of a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3).
#[derive(Debug, Clone, Copy)]
pub enum Challenge<'a> {
    InvalidToken { description: &'a str },
    InsufficientScope { description: &'a str, scope: &'a str },
}

/// A `WWW-Authenticate` value: `Bearer realm="palisade"` when no token was sent (RFC 6750 §3.1
/// says not to name an error then), otherwise with `error`, `error_description` and, for a
/// missing scope, `scope`.
pub fn challenge(error: Option<Challenge<'_>>) -> HeaderValue {
    let mut value = format!("Bearer realm=\"{REALM}\"");
    match error {
        None => {}
        Some(Challenge::InvalidToken { description }) => {
            value.push_str(&format!(", error=\"invalid_token\", error_description=\"{}\"", quotable(description)));
        }
        Some(Challenge::InsufficientScope { description, scope }) => {
            value.push_str(&format!(
                ", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                quotable(description),
                quotable(scope)
            ));
        }
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"palisade\""))
}

/// RFC 6750 allows only printable ASCII other than `"` and `\` inside these quoted strings;
/// anything else is replaced rather than escaped, because clients do not unescape.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            ' '..='~' if c != '\\' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[test]
    fn the_challenge_for_a_missing_token_names_no_error() {
        assert_eq!(challenge(None), "Bearer realm=\"palisade\"");
    }

    #[test]
    fn the_challenge_for_a_bad_token_names_invalid_token_and_says_why() {
        let value = challenge(Some(Challenge::InvalidToken { description: "The access token has expired." }));
        assert_eq!(
            value,
            "Bearer realm=\"palisade\", error=\"invalid_token\", error_description=\"The access token has expired.\""
        );
    }

    #[test]
    fn the_challenge_for_a_missing_scope_names_the_scope() {
        let value = challenge(Some(Challenge::InsufficientScope {
            description: "The access token lacks the `todos:write` scope.",
            scope: "todos:write",
        }));
        assert_eq!(
            value,
            "Bearer realm=\"palisade\", error=\"insufficient_scope\", \
             error_description=\"The access token lacks the `todos:write` scope.\", scope=\"todos:write\""
        );
    }

    #[test]
    fn quotes_backslashes_and_control_characters_cannot_break_out_of_the_challenge() {
        let value = challenge(Some(Challenge::InvalidToken { description: "a\"b\\c\nd\u{e9}" }));
        assert_eq!(value, "Bearer realm=\"palisade\", error=\"invalid_token\", error_description=\"a'b?c?d?\"");
    }

    #[test]
    fn every_reason_label_is_distinct_and_snake_case() {
        let labels: std::collections::BTreeSet<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), FailureReason::ALL.len());
        assert!(labels.iter().all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn every_api_key_outcome_is_one_the_metric_exports_from_the_start() {
        for reason in FailureReason::ALL {
            if let Some(outcome) = reason.api_key_outcome() {
                assert!(palisade_ops::metrics::API_KEY_OUTCOMES.contains(&outcome), "{outcome}");
            }
        }
    }

    async fn parts(error: AuthError) -> (StatusCode, Option<String>, Option<String>, Value) {
        let response = error.into_response();
        let status = response.status();
        let text = |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(String::from);
        let challenge = text(header::WWW_AUTHENTICATE);
        let content_type = text(header::CONTENT_TYPE);
        let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
        (status, challenge, content_type, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_missing_token_is_a_401_problem_with_a_bare_challenge() {
        let (status, challenge, content_type, body) = parts(AuthError::MissingToken).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"palisade\""));
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["reason"], "missing_token");
        assert_eq!(body["status"], 401);
    }

    #[tokio::test]
    async fn an_expired_token_is_a_401_problem_that_says_so() {
        let (status, challenge, _, body) = parts(AuthError::Expired).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap_or_default().contains("error=\"invalid_token\""));
        assert_eq!(body["type"], "/problems/invalid-token");
        assert_eq!(body["reason"], "expired");
        assert_eq!(body["detail"], "The access token has expired.");
    }

    #[tokio::test]
    async fn a_missing_scope_is_a_403_problem_naming_the_scope() {
        let (status, challenge, _, body) =
            parts(AuthError::InsufficientScope { required: "tenant:admin".into() }).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let challenge = challenge.unwrap_or_default();
        assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
        assert!(challenge.contains("scope=\"tenant:admin\""), "{challenge}");
        assert_eq!(body["required_scope"], "tenant:admin");
    }

    #[tokio::test]
    async fn an_unreadable_revocation_list_is_a_retryable_503() {
        let response = AuthError::RevocationUnavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").map(HeaderValue::as_bytes), Some(&b"1"[..]));
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn configuration_errors_never_reach_the_client() {
        let (status, _, _, body) = parts(AuthError::Config(vec!["auth.dev_secret leaked-value".into()])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("leaked-value"));
    }
}
