//! Sends one signed webhook attempt and reports what happened, without letting a tenant's URL
//! reach an internal address.
//!
//! The address check happens inside the HTTP client's DNS step: the resolver drops every
//! address the [`AddressPolicy`] refuses, so the client can only connect to addresses that were
//! checked, and a name that resolves differently the second time (DNS rebinding) gains nothing.
//! URLs with a literal IP host skip DNS, so [`Sender::deliver`] checks them itself first.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::header::CONTENT_TYPE;

use crate::policy::{AddressPolicy, Refusal};
use crate::signature::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningSecret};
use crate::signature_header;

/// How much of a response body is kept for display: enough to show a receiver's error message.
const EXCERPT_BYTES: usize = 1024;

/// A boxed future that may borrow from its resolver.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns a host name into socket addresses.
///
/// Our own trait rather than `reqwest::dns::Resolve`, so callers (and tests that map names to
/// chosen addresses) need no reqwest types. The sender wraps it in the policy filter. reqwest
/// does not tell the resolver the URL's port, so the sender passes `0`; the port in the returned
/// addresses is then ignored in favour of the URL's.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver, through tokio's `lookup_host`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// How the sender behaves. Timeouts bound how long one slow receiver can hold a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Time to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time for the whole attempt, from connecting to the last body byte read.
    pub request_timeout: Duration,
    /// Response body bytes read at most; the rest is never read.
    pub max_response_bytes: usize,
    /// Networks the address policy lets through although it would refuse them.
    pub allow: Vec<ipnet::IpNet>,
    /// The `user-agent` header sent with every delivery.
    pub user_agent: String,
}

/// One message to deliver. The id and timestamp go into the headers and the signature.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub duration: Duration,
    /// The first ≤1 KiB of the response body, lossy UTF-8 with control characters removed, so it
    /// can be shown to the endpoint's owner and stored without surprises.
    pub response_excerpt: String,
}

/// How an attempt ended.
///
/// A response larger than `max_response_bytes` is not an outcome of its own: the sender reads
/// up to the cap, stops, and judges the attempt by its status, since the receiver's answer is
/// the status and a long body does not make a 2xx less of an acknowledgement.
/// A body that fails while being read (reset, timeout) reports that failure, with the status
/// kept in [`Attempt::status`]; receivers deduplicate a resulting retry by `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response.
    Delivered,
    /// Any other status, 3xx included: redirects are not followed, since the target would be an
    /// unchecked second URL.
    Rejected,
    /// The address policy refused the URL or every address its host resolved to; nothing was
    /// sent.
    Refused(Refusal),
    /// Connecting or the whole attempt took longer than its timeout.
    TimedOut,
    /// The connection could not be established: the name did not resolve, the connection was
    /// refused or unreachable, or the TLS handshake failed.
    ConnectFailed,
    /// Anything else; the text names the failure and never contains the URL or a secret.
    Other(String),
}

impl Outcome {
    /// Whether the receiver acknowledged the message, so it need not be retried.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Delivered)
    }

    /// A short stable name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Refused(_) => "refused",
            Self::TimedOut => "timed_out",
            Self::ConnectFailed => "connect_failed",
            Self::Other(_) => "other",
        }
    }
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("the user agent is not a valid header value")]
    UserAgent,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// The resolver error that says every resolved address was refused. Found again in the
/// client's error chain to report [`Outcome::Refused`] instead of a generic connect failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RefusedAddresses(Refusal);

/// The adapter reqwest calls: resolves through the inner resolver and keeps only the
/// addresses the policy permits.
#[derive(Debug)]
struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    policy: AddressPolicy,
}

impl GuardedResolver {
    async fn permitted(&self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
        let resolved = self.inner.resolve(host, 0).await?;
        let mut first_refusal = None;
        let permitted: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match self.policy.check_ip(addr.ip()) {
                Ok(()) => true,
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                    false
                }
            })
            .collect();
        if permitted.is_empty() {
            return Err(Box::new(RefusedAddresses(first_refusal.unwrap_or(Refusal::NoAddress))));
        }
        Ok(permitted)
    }
}

/// The reqwest side of [`GuardedResolver`]; a newtype over an `Arc` so the returned future can
/// own what it uses, as reqwest requires.
#[derive(Debug, Clone)]
struct ReqwestResolver(Arc<GuardedResolver>);

impl reqwest::dns::Resolve for ReqwestResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.0);
        Box::pin(async move {
            let addrs = guard.permitted(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Delivers signed webhooks over HTTP(S) under the address policy.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: AddressPolicy,
    config: SenderConfig,
}

impl Sender {
    /// A sender that resolves names with the system resolver.
    pub fn new(config: SenderConfig) -> Result<Self, SenderError> {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// A sender that resolves names with `resolver`; tests use it to point a name at a chosen
    /// address. The policy still filters whatever it returns.
    pub fn with_resolver(config: SenderConfig, resolver: Arc<dyn Resolve>) -> Result<Self, SenderError> {
        let policy = AddressPolicy::new(config.allow.clone());
        let user_agent = HeaderValue::from_str(&config.user_agent).map_err(|_| SenderError::UserAgent)?;
        let guard = GuardedResolver { inner: resolver, policy: policy.clone() };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(user_agent)
            .dns_resolver(ReqwestResolver(Arc::new(guard)))
            .build()
            .map_err(|error| SenderError::Client(error.without_url().to_string()))?;
        Ok(Self { client, policy, config })
    }

    /// POSTs `message` to `url`, signed with every secret in `secrets`, and reports the attempt.
    /// Never fails: every way an attempt can end is an [`Outcome`].
    pub async fn deliver(&self, url: &url::Url, message: &Message<'_>, secrets: &[&SigningSecret]) -> Attempt {
        let started = Instant::now();
        let attempt = match self.policy.check_url(url) {
            Err(refusal) => Attempt {
                status: None,
                outcome: Outcome::Refused(refusal),
                duration: Duration::ZERO,
                response_excerpt: String::new(),
            },
            Ok(()) => match tokio::time::timeout(self.config.request_timeout, self.send(url, message, secrets)).await {
                Ok(attempt) => attempt,
                Err(_) => Attempt {
                    status: None,
                    outcome: Outcome::TimedOut,
                    duration: Duration::ZERO,
                    response_excerpt: String::new(),
                },
            },
        };
        Attempt { duration: started.elapsed(), ..attempt }
    }

    async fn send(&self, url: &url::Url, message: &Message<'_>, secrets: &[&SigningSecret]) -> Attempt {
        let signature = signature_header(secrets, message.id, message.timestamp, message.body);
        let response = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, message.id)
            .header(HEADER_TIMESTAMP, message.timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(message.body.to_vec())
            .send()
            .await;
        let mut response = match response {
            Ok(response) => response,
            Err(error) => return failed(None, &error),
        };
        let status = response.status();
        let mut excerpt = Vec::new();
        let mut read = 0usize;
        while read < self.config.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read = read.saturating_add(chunk.len());
                    let room = EXCERPT_BYTES.saturating_sub(excerpt.len());
                    excerpt.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                Ok(None) => break,
                Err(error) => return failed(Some(status.as_u16()), &error),
            }
        }
        Attempt {
            status: Some(status.as_u16()),
            outcome: if status.is_success() { Outcome::Delivered } else { Outcome::Rejected },
            duration: Duration::ZERO,
            response_excerpt: clean_excerpt(&excerpt),
        }
    }
}

/// Classifies a client error; its text leaves out the URL, which may carry a token.
fn failed(status: Option<u16>, error: &reqwest::Error) -> Attempt {
    let outcome = if let Some(refused) = find_refusal(error) {
        Outcome::Refused(refused)
    } else if error.is_timeout() {
        Outcome::TimedOut
    } else if error.is_connect() {
        Outcome::ConnectFailed
    } else {
        Outcome::Other(describe(error))
    };
    Attempt { status, outcome, duration: Duration::ZERO, response_excerpt: String::new() }
}

fn find_refusal(error: &reqwest::Error) -> Option<Refusal> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = source {
        if let Some(RefusedAddresses(refusal)) = current.downcast_ref::<RefusedAddresses>() {
            return Some(*refusal);
        }
        source = current.source();
    }
    None
}

/// The error and its causes in one line, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if !text.is_empty() {
            text.push_str(": ");
        }
        match err.downcast_ref::<reqwest::Error>() {
            Some(reqwest_error) if reqwest_error.url().is_some() => {
                text.push_str(&strip_url(reqwest_error));
            }
            _ => text.push_str(&err.to_string()),
        }
        current = err.source();
    }
    text
}

fn strip_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// Lossy UTF-8 with control characters removed, at most [`EXCERPT_BYTES`] of input.
fn clean_excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Resolves every name to the addresses it was given, without touching the network.
    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    impl Resolve for Fixed {
        fn resolve(&self, _host: &str, port: u16) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>> {
            let addrs = self.0.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            Box::pin(async move { Ok(addrs) })
        }
    }

    fn guard(addresses: Vec<IpAddr>, allow: Vec<ipnet::IpNet>) -> GuardedResolver {
        GuardedResolver { inner: Arc::new(Fixed(addresses)), policy: AddressPolicy::new(allow) }
    }

    fn refusal_of(result: Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>>) -> Refusal {
        match result {
            Ok(addrs) => panic!("expected a refusal, got {addrs:?}"),
            Err(error) => match error.downcast_ref::<RefusedAddresses>() {
                Some(RefusedAddresses(refusal)) => *refusal,
                None => panic!("expected RefusedAddresses, got {error}"),
            },
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_the_metadata_service_yields_no_address() {
        let guard = guard(vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))], vec![]);
        assert_eq!(refusal_of(guard.permitted("metadata.example").await), Refusal::Metadata);
    }

    #[tokio::test]
    async fn a_name_resolving_to_private_addresses_yields_no_address() {
        let guard = guard(
            vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), IpAddr::V6(Ipv6Addr::new(0xfd12, 0, 0, 0, 0, 0, 0, 1))],
            vec![],
        );
        assert_eq!(refusal_of(guard.permitted("intranet.example").await), Refusal::Private);
    }

    #[tokio::test]
    async fn a_name_resolving_to_nothing_is_refused_as_no_address() {
        let guard = guard(vec![], vec![]);
        assert_eq!(refusal_of(guard.permitted("empty.example").await), Refusal::NoAddress);
    }

    #[tokio::test]
    async fn refused_addresses_are_dropped_and_permitted_ones_kept() {
        let public = IpAddr::V4(Ipv4Addr::new(203, 0, 114, 7));
        let guard =
            guard(vec![IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)), public, IpAddr::V6(Ipv6Addr::LOCALHOST)], vec![]);
        let permitted = guard.permitted("mixed.example").await.expect("one permitted");
        assert_eq!(permitted.iter().map(SocketAddr::ip).collect::<Vec<_>>(), vec![public]);
    }

    #[tokio::test]
    async fn the_allow_list_lets_a_resolved_private_address_through() {
        let private = IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7));
        let guard = guard(vec![private], vec!["10.0.0.0/8".parse().expect("net")]);
        let permitted = guard.permitted("internal.example").await.expect("allowed");
        assert_eq!(permitted.iter().map(SocketAddr::ip).collect::<Vec<_>>(), vec![private]);
    }

    #[test]
    fn the_excerpt_is_capped_lossy_and_free_of_control_characters() {
        let mut body = b"bad\r\n\x1b[31mthing\xff".to_vec();
        body.extend(std::iter::repeat_n(b'x', 5000));
        let excerpt = clean_excerpt(&body);
        assert!(excerpt.starts_with("bad[31mthing\u{fffd}x"), "{excerpt}");
        assert!(excerpt.len() <= EXCERPT_BYTES + 2, "{}", excerpt.len());
    }
}
