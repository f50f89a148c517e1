//! Request ids: kept from the caller when well-formed (so a trace spans the caller's logs and ours),
//! generated otherwise, and echoed on every response.

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderName, HeaderValue, request::Parts},
    middleware::Next,
    response::Response,
};
use std::convert::Infallible;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served; in request extensions and as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts what a proxy or client would plausibly send (a UUID, a trace id, a ULID) and nothing
    /// that could smuggle log lines or markup: 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RequestId>().cloned().unwrap_or_else(RequestId::generate))
    }
}

/// Middleware: assigns the request id and puts it on the response.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        request.headers_mut().insert(HEADER.clone(), value.clone());
        request.extensions_mut().insert(id);
        let mut response = next.run(request).await;
        response.headers_mut().insert(HEADER.clone(), value);
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_kept() {
        let raw = "0190d7a2-7c1e-7b3a-9b1e-1f2e3d4c5b6a";
        assert_eq!(RequestId::parse(raw).map(|r| r.0), Some(raw.to_owned()));
    }

    #[test]
    fn a_header_with_spaces_or_newlines_or_too_long_is_refused() {
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a\nb").is_none());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
    }
}
