//! Routes. Handlers are thin: they extract, call plain functions, and shape the response.

mod health;

use axum::{Router, routing::get};
use palisade_ops::Problem;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
}

/// The fallback for paths no route matches.
pub async fn not_found() -> Problem {
    Problem::not_found("No resource at this path.")
}
