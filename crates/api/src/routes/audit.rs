//! `/api/v1/audit-events`: the tenant's audit log, newest first (tenant admins).

use axum::{Json, extract::Query};
use palisade_store::Page;
use palisade_tenancy::{TenantContext, audit};

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{AppState, error::ApiError, routes::PageParams};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The tenant's audit events, newest first.
#[utoipa::path(get, path = "/audit-events", operation_id = "list_audit_events", tag = "audit", params(PageParams),
    responses((status = 200, body = Page<audit::AuditEvent>), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn list(
    mut ctx: TenantContext,
    Query(query): Query<PageParams>,
) -> Result<Json<Page<audit::AuditEvent>>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(audit::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}
