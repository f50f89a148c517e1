use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use palisade_ops::Problem;
use palisade_store::{PageError, StoreError};

/// Why a request could not be placed in a tenant, or a tenant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("no tenant: use a token with a tenant claim, or send X-Tenant-ID")]
    TenantRequired,
    #[error("X-Tenant-ID must be a tenant slug or uuid")]
    MalformedTenantHeader,
    #[error("tenant {0:?} does not exist")]
    TenantNotFound(String),
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// Erasure was requested: the tenant's data is gone for its users (and purged after the grace).
    #[error("the tenant has been deleted")]
    TenantDeleted,
    #[error("the tenant named by the {0} disagrees with the one named by the {1}")]
    TenantMismatch(&'static str, &'static str),
    #[error("the token is not bound to a tenant; only platform admins may choose one")]
    NotBoundToTenant,
    #[error("the token's subject is longer than 255 characters")]
    SubjectTooLong,
    #[error("slug {0:?} is already taken")]
    SlugTaken(String),
    /// An outbox event could not be serialized (a programming error; answered as a 500).
    #[error("cannot serialize an outbox event: {0}")]
    Event(String),
    /// The system random generator failed (a new API key could not be made; answered as a 500).
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TenancyError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<TenancyError> for Problem {
    fn from(error: TenancyError) -> Self {
        let detail = error.to_string();
        match error {
            TenancyError::TenantRequired => {
                Problem::new(StatusCode::BAD_REQUEST, "tenant-required", "Tenant required", detail)
            }
            TenancyError::MalformedTenantHeader => Problem::bad_request(detail),
            TenancyError::TenantNotFound(_) => {
                Problem::new(StatusCode::NOT_FOUND, "tenant-not-found", "Unknown tenant", detail)
            }
            TenancyError::TenantDeleted => Problem::new(StatusCode::GONE, "tenant-deleted", "Tenant deleted", detail),
            TenancyError::TenantSuspended => {
                Problem::new(StatusCode::FORBIDDEN, "tenant-suspended", "Tenant suspended", detail)
            }
            TenancyError::TenantMismatch(..) | TenancyError::NotBoundToTenant => {
                Problem::new(StatusCode::FORBIDDEN, "tenant-mismatch", "Tenant not allowed", detail)
            }
            TenancyError::SlugTaken(_) => Problem::conflict(detail),
            TenancyError::SubjectTooLong => Problem::bad_request(detail),
            TenancyError::Page(page) => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-page", "Bad page request", page.to_string())
            }
            TenancyError::Store(error) => Problem::from(error),
            TenancyError::Random => {
                tracing::error!("the system random generator failed");
                Problem::internal()
            }
            TenancyError::Event(error) => {
                tracing::error!(%error, "outbox event not recorded");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for TenancyError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
