//! `/api/v1/audit-events`: the tenant's audit log, newest first (tenant admins).

use axum::{Json, extract::Query};
use palisade_store::Page;
use palisade_tenancy::{TenantContext, audit};

use crate::{error::ApiError, routes::PageParams};

/// The tenant's audit events, newest first.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit", params(PageParams),
    responses((status = 200, body = inline(crate::openapi::AuditPage)), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn list(
    mut ctx: TenantContext,
    Query(query): Query<PageParams>,
) -> Result<Json<Page<audit::AuditEvent>>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(audit::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}
