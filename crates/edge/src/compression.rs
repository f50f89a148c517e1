//! Response compression (gzip, brotli) for bodies big enough to be worth it.
//!
//! tower-http's `CompressionLayer` does the work, but only for requests that carry
//! `Accept-Encoding` that names gzip or brotli: it wraps every response body it sees, and
//! wrapping and re-boxing the body of a request that cannot be compressed (no `Accept-Encoding`,
//! or `identity`: load generators, probes, many service-to-service clients) was about 4,000
//! instructions of a `/health` (docs/performance.md). Those requests go past it to its inner
//! service and get only the one thing it would have added: `Vary: Accept-Encoding` on a response
//! it would compress for a client that asked.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures::{
    FutureExt,
    future::{Either, Map},
};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};
use tower_http::compression::{
    Compression, CompressionBody, CompressionLayer, DefaultPredicate, Predicate,
    predicate::{And, SizeAbove},
};

/// The `[compression]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Bodies smaller than this are sent as they are: compressing them costs more than it saves.
    pub min_size_bytes: u16,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { enabled: true, min_size_bytes: 1024 }
    }
}

/// The predicate: tower-http's defaults (no images, gRPC or event streams) and the size threshold.
pub type CompressWhen = And<DefaultPredicate, SizeAbove>;

impl CompressionConfig {
    /// The layer, or `None` when disabled.
    pub fn layer(&self) -> Option<Compress> {
        self.enabled.then(|| {
            let predicate = DefaultPredicate::new().and(SizeAbove::new(self.min_size_bytes));
            Compress { layer: CompressionLayer::new().gzip(true).br(true).compress_when(predicate.clone()), predicate }
        })
    }
}

/// The compression layer; see the module's documentation.
#[derive(Clone)]
pub struct Compress {
    layer: CompressionLayer<CompressWhen>,
    predicate: CompressWhen,
}

impl std::fmt::Debug for Compress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compress").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for Compress {
    type Service = CompressService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CompressService { inner: self.layer.layer(inner), predicate: self.predicate.clone() }
    }
}

/// The service [`Compress`] makes: tower-http's, whose inner service serves the requests that
/// cannot be compressed directly.
#[derive(Clone)]
pub struct CompressService<S> {
    inner: Compression<S, CompressWhen>,
    predicate: CompressWhen,
}

impl<S> std::fmt::Debug for CompressService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressService").finish_non_exhaustive()
    }
}

type Compressed = Result<Response<CompressionBody<axum::body::Body>>, Infallible>;

impl<S> Service<Request> for CompressService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        VaryFuture<S::Future>,
        Map<
            tower_http::compression::ResponseFuture<S::Future, CompressWhen>,
            fn(Compressed) -> Result<Response, Infallible>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !may_accept_ours(request.headers()) {
            let predicate = self.predicate.clone();
            return Either::Left(VaryFuture { inner: self.inner.get_mut().call(request), predicate });
        }
        Either::Right(self.inner.call(request).map(into_response as fn(Compressed) -> Result<Response, Infallible>))
    }
}

/// Whether `Accept-Encoding` could select gzip or brotli, the only codings tower-http picks here
/// (`gzip`, `x-gzip`, `br`; `*` and `identity` select none). A false positive only costs the
/// wrapping: tower-http then negotiates (q-values included) and may still answer uncompressed.
fn may_accept_ours(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().any(|value| {
        value.as_bytes().windows(2).any(|pair| pair.eq_ignore_ascii_case(b"br") || pair.eq_ignore_ascii_case(b"gz"))
    })
}

fn into_response(response: Compressed) -> Result<Response, Infallible> {
    response.map(IntoResponse::into_response)
}

pin_project! {
    /// The response of a request whose `Accept-Encoding` cannot select gzip or brotli, with
    /// `Vary: Accept-Encoding` added when a client that asked would have had it compressed.
    pub struct VaryFuture<F> {
        #[pin]
        inner: F,
        predicate: CompressWhen,
    }
}

impl<F> Future for VaryFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if would_compress(&response, this.predicate) && !varies_by_encoding(response.headers()) {
            response.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        Poll::Ready(Ok(response))
    }
}

/// tower-http's own test: not already encoded, not a range, and the predicate agrees.
fn would_compress(response: &Response, predicate: &CompressWhen) -> bool {
    let headers = response.headers();
    !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && predicate.should_compress(response)
}

fn varies_by_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")));
        headers
    }

    #[test]
    fn only_an_accept_encoding_that_names_gzip_or_brotli_goes_through_compression() {
        assert!(!may_accept_ours(&HeaderMap::new()));
        for value in ["identity", "deflate", "*", "zstd, identity;q=0.5"] {
            assert!(!may_accept_ours(&with_encoding(value)), "{value}");
        }
        for value in ["gzip", "GZip;q=0.5", "x-gzip", "br", "deflate, br;q=1.0"] {
            assert!(may_accept_ours(&with_encoding(value)), "{value}");
        }
    }

    /// Answers a JSON body of `size` bytes.
    async fn respond(size: usize, accept_encoding: Option<&str>) -> Response {
        let service = CompressionConfig::default().layer().map(|layer| {
            layer.layer(service_fn(move |_: Request| async move {
                let body = format!("[{}]", "1,".repeat(size / 2).trim_end_matches(','));
                Ok::<_, Infallible>(([(header::CONTENT_TYPE, "application/json")], body).into_response())
            }))
        });
        let mut request = Request::new(Body::empty());
        if let Some(value) = accept_encoding {
            request.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).expect("header value"));
        }
        let Some(service) = service else { panic!("compression is on by default") };
        let Ok(response) = service.oneshot(request).await;
        response
    }

    fn vary(response: &Response) -> Option<&str> {
        response.headers().get(header::VARY).and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_large_body_is_compressed_for_a_client_that_asks_and_varies_by_encoding_for_every_client() {
        let gzip = respond(4096, Some("gzip")).await;
        assert_eq!(gzip.headers().get(header::CONTENT_ENCODING), Some(&HeaderValue::from_static("gzip")));
        assert_eq!(vary(&gzip), Some("accept-encoding"));
        for accept_encoding in [None, Some("identity")] {
            let plain = respond(4096, accept_encoding).await;
            assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None, "{accept_encoding:?}");
            assert_eq!(vary(&plain), Some("accept-encoding"), "{accept_encoding:?}");
        }
    }

    #[tokio::test]
    async fn a_small_body_is_never_compressed_and_does_not_vary() {
        for accept_encoding in [None, Some("gzip, br")] {
            let small = respond(100, accept_encoding).await;
            assert_eq!(small.headers().get(header::CONTENT_ENCODING), None, "{accept_encoding:?}");
            assert_eq!(vary(&small), None, "{accept_encoding:?}");
        }
    }
}
