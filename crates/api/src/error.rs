//! The api crate's error type and its single mapping to problem+json. Client mistakes keep their
//! message; server-side failures are logged in full and answered with a generic 500/503.

use axum::response::{IntoResponse, Response};
use palisade_ops::Problem;
use palisade_store::StoreError;
use palisade_tenancy::TenancyError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client-facing problem, already shaped.
    #[error("{}", .0.detail())]
    Problem(Problem),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
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
            Self::Store(error) => Problem::from(error).into_response(),
            Self::Tenancy(error) => error.into_response(),
        }
    }
}
