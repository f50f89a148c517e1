//! `AuthContext` as an axum extractor.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts, OptionalFromRequestParts},
    http::{header, request::Parts},
};

use crate::{AuthContext, AuthError, Authenticator};

/// Authenticates the request's bearer token; the rejection is the 401/403/503 problem.
///
/// The verified context is cached in the request's extensions, so several extractors needing it
/// (the handler, the tenant resolver) verify the token and check revocation only once.
impl<S> FromRequestParts<S> for AuthContext
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(context) = parts.extensions.get::<AuthContext>() {
            return Ok(context.clone());
        }
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let context = authenticator.authenticate_headers(&parts.headers).await?;
        tracing::Span::current().record("user_id", context.subject.as_str());
        parts.extensions.insert(context.clone());
        Ok(context)
    }
}

/// `Option<AuthContext>`: `None` when no `Authorization` header was sent, for routes that serve
/// anonymous callers too; a token that is sent must still be valid.
impl<S> OptionalFromRequestParts<S> for AuthContext
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Some)
    }
}
