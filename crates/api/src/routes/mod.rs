//! Routes. Handlers are thin: they extract, call plain functions, and shape the response.

pub(crate) mod audit;
pub(crate) mod auth;
pub mod conditional;
pub(crate) mod data;
mod docs;
pub(crate) mod exports;
mod health;
pub(crate) mod tenants;
pub(crate) mod users;

use std::sync::Arc;

use axum::{Router, http::header, routing::get};
use palisade_ops::Problem;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{AppState, openapi::ApiDoc, resources};

/// Every API route with its documentation, each declared once (`routes!` in its module). The
/// router and the OpenAPI document are both produced from this.
pub fn documented() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(auth::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(data::routes())
        .merge(exports::routes());
    let v1 = resources::merge_resources!(v1).merge(audit::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The served routes: the documented API, its document, the probes and metrics (which are for
/// the platform, not API clients, so they are not in the document), and with `api_docs` the
/// reference page at `/docs`.
pub fn router(api_docs: bool) -> Router<AppState> {
    let (api, document) = documented().split_for_parts();
    // Serialized once: the document depends only on the code.
    let document: Arc<str> = serde_json::to_string(&crate::openapi::finish(document)).unwrap_or_default().into();
    let router = if api_docs { docs::router() } else { Router::new() };
    router
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document.to_string()) }),
        )
}

/// `?limit=&cursor=` of a list request, as the OpenAPI document describes it.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 22, max_length = 22, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

impl From<PageParams> for palisade_store::PageRequest {
    fn from(params: PageParams) -> Self {
        Self { limit: params.limit, cursor: params.cursor }
    }
}

/// The fallback for paths no route matches.
pub async fn fallback() -> Problem {
    Problem::not_found("No resource at this path.")
}

/// 404 for a resource that does not exist *in this tenant*: another tenant's rows get the same
/// answer, so existence is never leaked.
pub fn not_found(kind: &str) -> Problem {
    Problem::not_found(format!("No {kind} with this id."))
}
