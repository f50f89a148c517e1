//! `/api/v1/users/me/data`: the caller's own data as a person, across every tenant (GDPR art. 15
//! and 17; docs/data-rights.md). Needs only a valid token, whatever its tenant.

use axum::{Json, extract::State};
use palisade_auth::AuthContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    data_rights::subject::{self, Erasure, SubjectData},
    error::ApiError,
    routes::tenants::Meta,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export, erase))
}

/// Everything the platform holds about the caller: the subject and its user in each tenant.
#[utoipa::path(get, path = "/users/me/data", operation_id = "get_my_data", tag = "users",
    responses((status = 200, body = SubjectData), crate::openapi::ErrorResponses), security(("bearer" = [])))]
pub async fn export(State(state): State<AppState>, auth: AuthContext) -> Result<Json<SubjectData>, ApiError> {
    let memberships = subject::memberships(&state.db, &auth.subject).await?;
    Ok(Json(SubjectData { subject: auth.subject, memberships }))
}

/// Erase the caller's personal data: the subject is replaced by a pseudonym in every tenant.
#[utoipa::path(delete, path = "/users/me/data", operation_id = "erase_my_data", tag = "users",
    responses((status = 200, body = Erasure), crate::openapi::ErrorResponses), security(("bearer" = [])))]
pub async fn erase(State(state): State<AppState>, auth: AuthContext, meta: Meta) -> Result<Json<Erasure>, ApiError> {
    Ok(Json(subject::erase(&state.db, &state.tenancy.memberships, &auth.subject, &meta.0).await?))
}
