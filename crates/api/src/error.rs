//! The api crate's error type and its single mapping to problem+json. Client mistakes keep their
//! message; server-side failures are logged in full and answered with a generic 500/503.

use axum::response::{IntoResponse, Response};
use palisade_ops::Problem;
use palisade_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client-facing problem, already shaped.
    #[error("{}", .0.detail())]
    Problem(Problem),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Store(StoreError::PoolTimeout) => {
                tracing::warn!("database pool exhausted");
                Problem::unavailable("The database is busy; retry shortly.").into_response()
            }
            Self::Store(error) => {
                tracing::error!(error = %error, "storage failure");
                Problem::internal().into_response()
            }
        }
    }
}
