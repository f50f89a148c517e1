//! Routes. Handlers are thin: they extract, call plain functions, and shape the response.

pub(crate) mod audit;
pub(crate) mod auth;
pub mod conditional;
mod health;
pub(crate) mod tenants;
pub(crate) mod users;

use std::sync::OnceLock;

use axum::{
    Router,
    http::header,
    response::IntoResponse,
    routing::{get, post},
};
use palisade_ops::Problem;

use crate::AppState;

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/auth/me", get(auth::me))
        .route("/auth/revoke", post(auth::revoke))
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/tenants/{id}", get(tenants::get))
        .route("/tenants/{id}/suspend", post(tenants::suspend))
        .route("/tenants/{id}/reactivate", post(tenants::reactivate))
        .route("/users", get(users::list))
        .route("/users/me", get(users::me))
        .route("/users/{id}", get(users::get).patch(users::update))
        .route("/audit-events", get(audit::list))
        .route("/openapi.json", get(openapi));
    let api = crate::resources::merge_resources!(api);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api)
}

/// The document is built and serialized once: it depends only on the code.
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| serde_json::to_string(&crate::openapi::document()).unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
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
