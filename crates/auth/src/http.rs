//! The one place this crate talks HTTP: building the client and sending requests to the identity
//! provider. Instrumenting outgoing calls (tracing spans, metrics, OpenTelemetry propagation)
//! later means changing only this file.

use std::time::Duration;

use serde::de::DeserializeOwned;
use tracing::Instrument;

/// Discovery documents and key sets are small; anything bigger is a misbehaving endpoint.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a request to the provider failed. Messages carry the URL and status, never a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("GET {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("GET {url} answered {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("GET {url} returned more than {MAX_BODY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("GET {url} did not return the expected JSON: {source}")]
    Json { url: String, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
}

/// An HTTP client for the identity provider, with every request bounded by the fetch timeout.
#[derive(Debug, Clone)]
pub(crate) struct ProviderClient {
    client: reqwest::Client,
}

impl ProviderClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self { client })
    }

    /// `GET url` and parse the JSON body. The request is a client span of the current trace and
    /// carries its W3C `traceparent`, so the provider's side of a slow key fetch can be found.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let span = tracing::info_span!("GET jwks", "otel.kind" = "client", "url.full" = url);
        self.fetch_json(url).instrument(span).await
    }

    async fn fetch_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let request_error = |source| FetchError::Request { url: url.to_owned(), source };
        let mut trace_headers = reqwest::header::HeaderMap::new();
        palisade_ops::telemetry::inject_trace_context(&mut trace_headers);
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .headers(trace_headers)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status { url: url.to_owned(), status });
        }
        if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(FetchError::TooLarge { url: url.to_owned() });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::TooLarge { url: url.to_owned() });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|source| FetchError::Json { url: url.to_owned(), source })
    }
}
