//! `/api/v1/exports`: a tenant admin exports the tenant's data (docs/data-rights.md). Starting one
//! answers 202 at once; the `export.tenant` job builds the archive, kept in the database until
//! `exports.retention` has passed, so any replica serves the download.

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::Problem;
use palisade_store::Page;
use palisade_tenancy::{TenantContext, audit::Change};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    AppState, background,
    data_rights::export::{self, Export, Status},
    error::ApiError,
    routes::{PageParams, not_found},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get)).routes(routes!(download))
}

/// Start an export of the tenant's data.
#[utoipa::path(post, path = "/exports", operation_id = "create_export", tag = "exports",
    responses((status = 202, body = Export, headers(("Location" = String, description = "The export's status"))),
        crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn create(State(state): State<AppState>, mut ctx: TenantContext) -> Result<Response, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    let queue = background::queue(&state.db, &state.settings.jobs);
    let subject = ctx.auth.subject.clone();
    let created =
        export::request(ctx.session.tx().await?, &queue, tenant_id, &subject, state.settings.exports.retention).await?;
    let id = created.id.to_string();
    ctx.commit(Change { action: "export.requested", resource_type: "export", resource_id: &id }).await?;
    let mut response = (StatusCode::ACCEPTED, Json(&created)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/exports/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List the tenant's exports, newest first.
#[utoipa::path(get, path = "/exports", operation_id = "list_exports", tag = "exports", params(PageParams),
    responses((status = 200, body = Page<Export>), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn list(mut ctx: TenantContext, Query(query): Query<PageParams>) -> Result<Json<Page<Export>>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(export::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}

/// An export's status, with each file's row count and checksum once it is ready.
#[utoipa::path(get, path = "/exports/{id}", operation_id = "get_export", tag = "exports", params(("id" = Uuid, Path)),
    responses((status = 200, body = Export), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Json<Export>, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    export::get(ctx.session.tx().await?, tenant_id, id).await?.map(Json).ok_or_else(|| not_found("export").into())
}

/// Download a ready export's archive (tar.gz; format in docs/data-rights.md).
#[utoipa::path(get, path = "/exports/{id}/archive", operation_id = "download_export", tag = "exports",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "application/gzip", body = String,
        description = "The archive; its SHA-256 is the export's `sha256`"), crate::openapi::ErrorResponses),
    security(("bearer" = ["tenant:admin"])))]
pub async fn download(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    ctx.require_tenant_admin()?;
    let tenant_id = ctx.tenant_id();
    let tx = ctx.session.tx().await?;
    let Some(found) = export::get(tx, tenant_id, id).await? else { return Err(not_found("export").into()) };
    if found.status != Status::Ready {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "export-not-ready",
            "Export not ready",
            "The export has no archive (yet): see its status.",
        )
        .into());
    }
    let Some(bytes) = export::archive(tx, tenant_id, id).await? else { return Err(not_found("export").into()) };
    let disposition = format!("attachment; filename=\"export-{id}.tar.gz\"");
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
