//! The client's address as a request extension. The edge crate resolves it (trusting
//! `X-Forwarded-For` only from configured proxies); it lives here so that every crate that needs
//! it (the rate limits, the audit log) reads the same type without depending on the edge.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Extensions, request::Parts},
    response::{IntoResponse, Response},
};

use crate::Problem;

/// The client's address, resolved by the edge: an extractor (the audit log records it), read from
/// the request's [`ResolvedClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// What the edge resolved about the client, in request extensions: its address, and whether it
/// reached the edge over HTTPS. One extension for both, because each is a boxed insert into the
/// request's extension map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedClient {
    pub ip: IpAddr,
    pub https: bool,
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The client's address for a request that may not have been resolved by the edge (then the TCP
/// peer).
pub fn client_ip_of(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ResolvedClient>()
        .map(|c| c.ip)
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical()))
}

/// Rejection when no address is known at all (the server always provides one; a router driven
/// without a connection, as in some unit tests, does not).
#[derive(Debug, Clone, Copy)]
pub struct NoClientIp;

impl IntoResponse for NoClientIp {
    fn into_response(self) -> Response {
        tracing::error!("ClientIp extracted on a request without connection info");
        Problem::internal().into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = NoClientIp;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        client_ip_of(&parts.extensions).map(ClientIp).ok_or(NoClientIp)
    }
}
