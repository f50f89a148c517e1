//! Request ids: kept from the caller when well-formed (so a trace spans the caller's logs and ours),
//! generated otherwise, and echoed on every response.
//!
//! tower-http does the work: [`Sanitize`] first drops an incoming `x-request-id` that is not
//! well-formed, then `SetRequestIdLayer` with [`MakeRequestUuidV7`] keeps the caller's id or makes
//! one (header and `tower_http::request_id::RequestId` extension), and `PropagateRequestIdLayer`
//! copies it onto the response. [`RequestId`] is the read side the other crates use.

use std::convert::Infallible;

use axum::{
    extract::{FromRequestParts, Request},
    http::{Extensions, HeaderName, HeaderValue, request::Parts},
    response::Response,
};
use tower_http::request_id::MakeRequestId;

use crate::hook::{After, Hook};

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, read from the extension tower-http's `SetRequestIdLayer`
/// stores; also an extractor. Holds only ids that passed [`RequestId::parse`] or were generated,
/// so the value is always printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A UUIDv7, written straight into the header value (no intermediate `String`).
    pub fn generate() -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        Self(HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("unknown")))
    }

    /// Accepts what a proxy or client would plausibly send (a UUID, a trace id, a ULID) and nothing
    /// that could smuggle log lines or markup: 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        ok.then(|| HeaderValue::from_str(raw).ok().map(Self)).flatten()
    }

    /// The request's id, once `SetRequestIdLayer` has run.
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        extensions.get::<tower_http::request_id::RequestId>().map(|id| Self(id.header_value().clone()))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions).unwrap_or_else(Self::generate))
    }
}

/// Runs before `SetRequestIdLayer`, which keeps any id it finds: an incoming `x-request-id` that is
/// not well-formed ([`RequestId::parse`]) is removed, so a fresh one is generated in its place.
#[derive(Debug, Clone, Copy)]
pub struct Sanitize;

impl Hook for Sanitize {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        let well_formed =
            request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).and_then(RequestId::parse).is_some();
        if !well_formed {
            request.headers_mut().remove(&HEADER);
        }
        Ok(())
    }

    fn after(&self, (): (), response: Response) -> After {
        After::Done(response)
    }
}

/// `SetRequestIdLayer`'s generator: UUIDv7, so ids sort by time in logs and audit rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        Some(tower_http::request_id::RequestId::new(RequestId::generate().0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_kept() {
        let raw = "0190d7a2-7c1e-7b3a-9b1e-1f2e3d4c5b6a";
        assert_eq!(RequestId::parse(raw).map(|r| r.as_str().to_owned()), Some(raw.to_owned()));
    }

    #[test]
    fn a_generated_id_is_a_hyphenated_lowercase_uuid_v7_that_sorts_after_an_earlier_one() {
        let first = RequestId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(first.as_str()).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(first.as_str(), parsed.hyphenated().to_string());
        assert!(first.as_str() < second.as_str(), "{first} then {second}");
    }

    #[test]
    fn a_header_with_spaces_or_newlines_or_too_long_is_refused() {
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a\nb").is_none());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
    }

    #[test]
    fn sanitize_removes_a_malformed_id_and_keeps_a_well_formed_one() {
        let sanitized = |id: &str| {
            let mut request = Request::builder().header(&HEADER, id).body(axum::body::Body::empty()).unwrap();
            assert!(Sanitize.before(&mut request).is_ok());
            request.headers().get(&HEADER).cloned()
        };
        assert!(sanitized("a<script>").is_none());
        assert_eq!(sanitized("abc-123").unwrap(), "abc-123");
    }
}
