//! `/api/v1/auth`: who am I, and revoking tokens.

use std::sync::Arc;

use axum::{Json, body::Bytes, extract::State, http::StatusCode};
use palisade_auth::{AuthContext, Authenticator};
use palisade_ops::Problem;
use palisade_tenancy::{TenantContext, audit::Change};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{AppState, error::ApiError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me)).routes(routes!(revoke))
}

/// A tenant admin revoking someone else's token names its `jti` (and, when known, its expiry so
/// the revocation is remembered exactly as long as needed).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token's id: 1 to 255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]+$")]
    pub jti: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// How long a revocation by `jti` alone is remembered: longer than any access token should live.
const REVOKE_BY_JTI_FOR: time::Duration = time::Duration::days(1);

/// The caller's identity as the token states it.
#[utoipa::path(get, path = "/auth/me", operation_id = "get_auth_me", tag = "auth",
    responses((status = 200, body = AuthContext), crate::openapi::ErrorResponses), security(("bearer" = [])))]
pub async fn me(auth: AuthContext) -> Json<AuthContext> {
    Json(auth)
}

/// Revoke the presented token (no body, or `null`) or, as a tenant admin, another token of the tenant by `jti`.
#[utoipa::path(post, path = "/auth/revoke", operation_id = "revoke_token", tag = "auth", request_body(content = Option<RevokeRequest>),
    responses((status = 204, description = "Revoked"), crate::openapi::ErrorResponses), security(("bearer" = [])))]
pub async fn revoke(
    State(authenticator): State<Arc<Authenticator>>,
    ctx: TenantContext,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    // No body, or JSON `null` (the document's optional body, spelled out), names the presented token.
    let (jti, expires_at) = if matches!(body.trim_ascii(), b"" | b"null") {
        let jti =
            ctx.auth.jti.clone().ok_or_else(|| Problem::bad_request("This token has no jti and cannot be revoked."))?;
        (jti, ctx.auth.expires_at)
    } else {
        ctx.require_tenant_admin()?;
        let request: RevokeRequest = serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("Expected {{\"jti\": \"…\"}}: {e}")))?;
        // Never remember a revocation longer than any token may live, whatever the caller says.
        let latest = OffsetDateTime::now_utc() + REVOKE_BY_JTI_FOR;
        (request.jti, request.expires_at.map_or(latest, |at| at.min(latest)))
    };
    // Keyed by the tenant's uuid (the one resolved for this request, which the caller's claim
    // names) whatever form the caller used: a tenant admin reaches only its own tenant's tokens,
    // and every token of that tenant, by slug or uuid. A token without a tenant claim stays
    // keyed without one.
    let tenant = ctx.auth.tenant.as_ref().map(|_| ctx.tenant.id.to_string());
    authenticator.revoke(tenant.as_deref(), &jti, expires_at).await.map_err(Problem::from)?;
    ctx.commit(Change { action: "token.revoked", resource_type: "token", resource_id: &jti }).await?;
    Ok(StatusCode::NO_CONTENT)
}
