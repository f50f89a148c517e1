//! `/api/v1/tenants`: platform administration (`platform:admin`).

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_auth::{AuthContext, scopes};
use palisade_ops::Problem;
use palisade_store::Page;
use palisade_tenancy::{
    RequestMeta, TenancyError, TenantStatus,
    audit::Change,
    session::bind_tenant,
    tenants::{self, Tenant, is_valid_slug},
    write,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    AppState,
    error::ApiError,
    extract::ValidatedJson,
    routes::{PageParams, not_found},
};

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// A DNS label: 1–63 lowercase letters, digits and inner hyphens. Used in URLs and subdomains.
    #[validate(custom(function = "slug", message = "must be 1-63 lowercase letters, digits and inner hyphens"))]
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub slug: String,
    /// 1 to 200 characters (surrounding whitespace is removed first).
    #[serde(deserialize_with = "crate::extract::trimmed")]
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, delete))
        .routes(routes!(restore))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
}

fn slug(value: &str) -> Result<(), validator::ValidationError> {
    if is_valid_slug(value) { Ok(()) } else { Err(validator::ValidationError::new("slug")) }
}

fn require_platform_admin(auth: &AuthContext) -> Result<(), ApiError> {
    auth.require_scope(scopes::PLATFORM_ADMIN).map_err(|e| Problem::from(e).into())
}

/// Create a tenant.
#[utoipa::path(post, path = "/tenants", operation_id = "create_tenant", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthContext,
    meta: Meta,
    ValidatedJson(new): ValidatedJson<NewTenant>,
) -> Result<Response, ApiError> {
    require_platform_admin(&auth)?;
    let tenant = write::create_tenant(&state.db, &new.slug, &new.name, &auth.subject, &meta.0).await?;
    let id = tenant.id.to_string();
    state.tenancy.tenant_changed(&tenant).await;
    let mut response = (StatusCode::CREATED, Json(&tenant)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/tenants/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List tenants.
#[utoipa::path(get, path = "/tenants", operation_id = "list_tenants", tag = "tenants", params(PageParams),
    responses((status = 200, body = Page<Tenant>), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthContext,
    Query(query): Query<PageParams>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    require_platform_admin(&auth)?;
    let mut tx = state.db.begin().await?;
    let page = tenants::list(&mut tx, &query.into()).await?;
    tx.commit().await?;
    Ok(Json(page))
}

/// Fetch a tenant.
#[utoipa::path(get, path = "/tenants/{id}", operation_id = "get_tenant", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn get(
    State(state): State<AppState>,
    auth: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Tenant>, ApiError> {
    require_platform_admin(&auth)?;
    let mut tx = state.db.begin().await?;
    let tenant = tenants::by_id(&mut tx, id).await?;
    tx.commit().await?;
    tenant.map(Json).ok_or_else(|| not_found("tenant").into())
}

/// Suspend a tenant: its users get 403 until it is reactivated.
#[utoipa::path(post, path = "/tenants/{id}/suspend", operation_id = "suspend_tenant", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn suspend(
    state: State<AppState>,
    auth: AuthContext,
    meta: Meta,
    id: Path<Uuid>,
) -> Result<Json<Tenant>, ApiError> {
    set_status(state, auth, meta, id, TenantStatus::Suspended).await
}

/// Reactivate a suspended tenant.
#[utoipa::path(post, path = "/tenants/{id}/reactivate", operation_id = "reactivate_tenant", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn reactivate(
    state: State<AppState>,
    auth: AuthContext,
    meta: Meta,
    id: Path<Uuid>,
) -> Result<Json<Tenant>, ApiError> {
    set_status(state, auth, meta, id, TenantStatus::Active).await
}

/// Delete a tenant (erasure, GDPR art. 17). At once every request for it answers 410; its data is
/// purged `tenancy.erasure_grace` later, leaving only a tombstone. Until then it can be restored.
#[utoipa::path(delete, path = "/tenants/{id}", operation_id = "delete_tenant", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthContext,
    meta: Meta,
    Path(id): Path<Uuid>,
) -> Result<Json<Tenant>, ApiError> {
    require_platform_admin(&auth)?;
    let mut tx = state.db.begin().await?;
    let Some(tenant) = tenants::mark_deleted(&mut tx, id, &auth.subject).await? else {
        return Err(match tenants::by_id(&mut tx, id).await? {
            Some(_) => TenancyError::TenantDeleted.into(),
            None => not_found("tenant").into(),
        });
    };
    bind_tenant(&mut tx, tenant.id).await?;
    let change = Change { action: "tenant.deleted", resource_type: "tenant", resource_id: &id.to_string() };
    write::commit(tx, tenant.id, &auth.subject, change, &meta.0).await?;
    state.tenancy.tenant_changed(&tenant).await;
    Ok(Json(tenant))
}

/// Restore a deleted tenant during its erasure grace; it returns to its status before.
#[utoipa::path(post, path = "/tenants/{id}/restore", operation_id = "restore_tenant", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Tenant), crate::openapi::ErrorResponses),
    security(("bearer" = ["platform:admin"])))]
pub async fn restore(
    State(state): State<AppState>,
    auth: AuthContext,
    meta: Meta,
    Path(id): Path<Uuid>,
) -> Result<Json<Tenant>, ApiError> {
    require_platform_admin(&auth)?;
    let mut tx = state.db.begin().await?;
    let Some(tenant) = tenants::restore(&mut tx, id).await? else {
        return Err(match tenants::by_id(&mut tx, id).await? {
            Some(_) => Problem::conflict("The tenant is not deleted.").into(),
            None => not_found("tenant").into(),
        });
    };
    bind_tenant(&mut tx, tenant.id).await?;
    let change = Change { action: "tenant.restored", resource_type: "tenant", resource_id: &id.to_string() };
    write::commit(tx, tenant.id, &auth.subject, change, &meta.0).await?;
    state.tenancy.tenant_changed(&tenant).await;
    Ok(Json(tenant))
}

async fn set_status(
    State(state): State<AppState>,
    auth: AuthContext,
    meta: Meta,
    Path(id): Path<Uuid>,
    status: TenantStatus,
) -> Result<Json<Tenant>, ApiError> {
    require_platform_admin(&auth)?;
    let mut tx = state.db.begin().await?;
    let Some(tenant) = tenants::set_status(&mut tx, id, status).await? else {
        return Err(match tenants::by_id(&mut tx, id).await? {
            Some(_) => TenancyError::TenantDeleted.into(),
            None => not_found("tenant").into(),
        });
    };
    bind_tenant(&mut tx, tenant.id).await?;
    let action = if status == TenantStatus::Suspended { "tenant.suspended" } else { "tenant.reactivated" };
    let change = Change { action, resource_type: "tenant", resource_id: &id.to_string() };
    write::commit(tx, tenant.id, &auth.subject, change, &meta.0).await?;
    state.tenancy.tenant_changed(&tenant).await;
    Ok(Json(tenant))
}

/// Request metadata as an extractor.
#[derive(Debug)]
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(RequestMeta::from_parts(parts)))
    }
}
