//! `/api/v1/audit-events`: the tenant's audit log, newest first (tenant admins).

use axum::{Json, extract::Query};
use palisade_store::{Page, PageRequest};
use palisade_tenancy::{TenantContext, audit};
use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The tenant's audit events, newest first.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit", params(ListQuery),
    responses((status = 200, body = inline(crate::openapi::AuditPage)), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn list(
    mut ctx: TenantContext,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<audit::AuditEvent>>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(
        audit::list(ctx.session.tx().await?, tenant_id, &PageRequest { limit: query.limit, cursor: query.cursor })
            .await?,
    ))
}
