//! `/api/v1/users`: the tenant's users. Listing and role changes need a tenant admin.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use palisade_store::Page;
use palisade_tenancy::{Tenancy, TenantContext, User, UserRole, audit::Change, users};
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
pub struct RoleChange {
    #[schema(example = "admin")]
    pub role: UserRole,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(me)).routes(routes!(get, update))
}

/// The caller, as a user of the tenant.
#[utoipa::path(get, path = "/users/me", operation_id = "get_current_user", tag = "users",
    responses((status = 200, body = User), crate::openapi::ErrorResponses), security(("bearer" = [])))]
pub async fn me(ctx: TenantContext) -> Json<User> {
    Json(ctx.user)
}

/// List the tenant's users.
#[utoipa::path(get, path = "/users", operation_id = "list_users", tag = "users", params(PageParams),
    responses((status = 200, body = Page<User>), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn list(mut ctx: TenantContext, Query(query): Query<PageParams>) -> Result<Json<Page<User>>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(users::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}

/// Fetch one user of the tenant.
#[utoipa::path(get, path = "/users/{id}", operation_id = "get_user", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = User), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Json<User>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    users::get(ctx.session.tx().await?, tenant_id, id).await?.map(Json).ok_or_else(|| not_found("user").into())
}

/// Change a user's role.
#[utoipa::path(patch, path = "/users/{id}", operation_id = "update_user_role", tag = "users", params(("id" = Uuid, Path)), request_body = RoleChange,
    responses((status = 200, body = User), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn update(
    State(tenancy): State<Tenancy>,
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    ValidatedJson(change): ValidatedJson<RoleChange>,
) -> Result<Json<User>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    let Some(user) = users::set_role(ctx.session.tx().await?, tenant_id, id, change.role).await? else {
        return Err(not_found("user").into());
    };
    ctx.commit(Change { action: "user.role_changed", resource_type: "user", resource_id: &id.to_string() }).await?;
    // Every replica's next request of this user sees the new role.
    tenancy.memberships.changed(tenant_id).await;
    Ok(Json(user))
}
