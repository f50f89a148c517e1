//! `/api/v1/api-keys`: tenant-scoped API keys for machines (docs/api-keys.md, ADR 0008). Tenant
//! admins create, list, rotate and revoke them; a key's full secret appears only in the answer to
//! its creation or rotation. Storage and lookup are `palisade_tenancy::api_keys`; the key format
//! and authentication are `palisade_auth::api_key`.

use std::collections::BTreeSet;

use axum::{
    Json,
    extract::{Path, Query},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::{Problem, problem::FieldError};
use palisade_store::Page;
use palisade_tenancy::{
    TenantContext,
    api_keys::{self, ApiKey, NewKey, Rotation},
    audit::Change,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    AppState,
    error::ApiError,
    extract::ValidatedJson,
    routes::{PageParams, not_found},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, revoke))
        .routes(routes!(revoke_by_post))
        .routes(routes!(rotate))
}

/// The scopes this resource's routes require (besides being a tenant admin).
pub mod scopes {
    pub const READ: &str = "api_keys:read";
    pub const WRITE: &str = "api_keys:write";
}

/// The event types this resource's writes commit (webhooks may subscribe to them).
pub const EVENTS: &[&str] = &["api_key.created", "api_key.rotated", "api_key.revoked", "api_key.used_from_new_ip"];

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1 to 100 characters, to tell keys apart (e.g. "CI deploy").
    #[serde(deserialize_with = "crate::extract::trimmed")]
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    #[schema(min_length = 1, max_length = 100, example = "CI deploy")]
    pub name: String,
    /// The scopes the key grants: each one the creator holds.
    #[validate(length(min = 1, max = 50, message = "must list 1 to 50 scopes"))]
    #[schema(min_items = 1, max_items = 50, example = json!(["todos:read"]))]
    pub scopes: Vec<String>,
    /// When the key stops working; in the future. Absent: the key works until revoked.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// A key with its full secret: the only time the secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeySecret {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The full key. Store it now: it cannot be shown again.
    #[schema(pattern = "^psk_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$")]
    pub key: String,
}

/// A scope is 1 to 100 visible ASCII characters.
fn is_valid_scope(scope: &str) -> bool {
    (1..=100).contains(&scope.len()) && scope.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the request beyond its shape: well-formed scopes, an expiry in the future.
fn field_errors(new: &NewApiKey) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (index, scope) in new.scopes.iter().enumerate() {
        if !is_valid_scope(scope) {
            errors.push(FieldError {
                field: format!("scopes[{index}]"),
                message: "must be 1 to 100 visible ASCII characters".into(),
            });
        }
    }
    if new.expires_at.is_some_and(|at| at <= OffsetDateTime::now_utc()) {
        errors.push(FieldError { field: "expires_at".into(), message: "must be in the future".into() });
    }
    errors
}

/// 403 naming the scopes the creator does not hold: a key never grants more than its creator.
fn scopes_not_held(missing: &[&str]) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "api-key-scope-not-held",
        "Scope not held",
        format!("An API key can only carry scopes its creator holds; you do not hold: {}.", missing.join(", ")),
    )
    .with_extension("scopes", Value::from(missing.iter().map(|s| Value::from(*s)).collect::<Vec<_>>()))
}

/// List the tenant's API keys (metadata only, revoked ones included), oldest first.
#[utoipa::path(get, path = "/api-keys", operation_id = "list_api_keys", tag = "api-keys", params(PageParams),
    responses((status = 200, body = Page<ApiKey>), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:read", "tenant:admin"])))]
pub async fn list(mut ctx: TenantContext, Query(query): Query<PageParams>) -> Result<Json<Page<ApiKey>>, ApiError> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scopes::READ).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(api_keys::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}

/// Create an API key. The answer holds the full key, shown this once.
#[utoipa::path(post, path = "/api-keys", operation_id = "create_api_key", tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, body = ApiKeySecret, headers(("Location" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:write", "tenant:admin"])))]
pub async fn create(mut ctx: TenantContext, ValidatedJson(new): ValidatedJson<NewApiKey>) -> Result<Response, ApiError> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
    let errors = field_errors(&new);
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let requested: BTreeSet<String> = new.scopes.iter().cloned().collect();
    let missing: Vec<&str> =
        requested.iter().filter(|scope| !ctx.auth.has_scope(scope)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(scopes_not_held(&missing).into());
    }
    let scopes: Vec<String> = requested.into_iter().collect();
    let tenant_id = ctx.tenant_id();
    let record = NewKey { name: &new.name, scopes: &scopes, expires_at: new.expires_at, created_by: ctx.user.id };
    let (api_key, key) = api_keys::create(ctx.session.tx().await?, tenant_id, &record).await?;
    let id = api_key.id.to_string();
    ctx.commit(Change { action: "api_key.created", resource_type: "api_key", resource_id: &id }).await?;
    let mut response = (StatusCode::CREATED, Json(ApiKeySecret { api_key, key })).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/api-keys/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    no_store(&mut response);
    Ok(response)
}

/// An answer carrying a secret must not be kept by any cache.
fn no_store(response: &mut Response) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Fetch one API key's metadata.
#[utoipa::path(get, path = "/api-keys/{id}", operation_id = "get_api_key", tag = "api-keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:read", "tenant:admin"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Json<ApiKey>, ApiError> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scopes::READ).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    api_keys::get(ctx.session.tx().await?, tenant_id, id).await?.map(Json).ok_or_else(|| not_found("API key").into())
}

/// Revoke an API key: it stops working at once, on every instance. Idempotent; the key stays
/// listed with its `revoked_at`.
#[utoipa::path(delete, path = "/api-keys/{id}", operation_id = "revoke_api_key", tag = "api-keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:write", "tenant:admin"])))]
pub async fn revoke(ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Json<ApiKey>, ApiError> {
    revoke_key(ctx, id).await
}

/// Revoke an API key (the same as `DELETE /api-keys/{id}`, for clients that cannot send DELETE).
#[utoipa::path(post, path = "/api-keys/{id}/revoke", operation_id = "revoke_api_key_by_post", tag = "api-keys",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:write", "tenant:admin"])))]
pub async fn revoke_by_post(ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Json<ApiKey>, ApiError> {
    revoke_key(ctx, id).await
}

async fn revoke_key(mut ctx: TenantContext, id: Uuid) -> Result<Json<ApiKey>, ApiError> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    match api_keys::revoke(ctx.session.tx().await?, tenant_id, id).await? {
        None => Err(not_found("API key").into()),
        Some((api_key, false)) => Ok(Json(api_key)),
        Some((api_key, true)) => {
            ctx.commit(Change { action: "api_key.revoked", resource_type: "api_key", resource_id: &id.to_string() })
                .await?;
            Ok(Json(api_key))
        }
    }
}

/// Rotate an API key: a new key (new prefix and secret) is returned once, and the old one stops
/// working at once (no grace period). Id, name, scopes and expiry are kept.
#[utoipa::path(post, path = "/api-keys/{id}/rotate", operation_id = "rotate_api_key", tag = "api-keys",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKeySecret), crate::openapi::ErrorResponses),
    security(("bearer" = ["api_keys:write", "tenant:admin"])))]
pub async fn rotate(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    match api_keys::rotate(ctx.session.tx().await?, tenant_id, id).await? {
        Rotation::NotFound => Err(not_found("API key").into()),
        Rotation::Revoked => {
            Err(Problem::conflict("A revoked API key cannot be rotated; create a new key instead.").into())
        }
        Rotation::Rotated(api_key, key) => {
            ctx.commit(Change { action: "api_key.rotated", resource_type: "api_key", resource_id: &id.to_string() })
                .await?;
            let mut response = Json(ApiKeySecret { api_key: *api_key, key }).into_response();
            no_store(&mut response);
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_visible_ascii_without_spaces() {
        assert!(is_valid_scope("todos:read"));
        for bad in ["", "todos read", "t\u{e9}", &"x".repeat(101)] {
            assert!(!is_valid_scope(bad), "{bad}");
        }
    }
}
