//! The sender against a real HTTP receiver on 127.0.0.1.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use palisade_webhooks::{
    BoxFuture, DEFAULT_TOLERANCE, Message, Outcome, Refusal, Resolve, Sender, SenderConfig, SigningSecret, verify,
};

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    method: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes the endless response has produced so far.
    streamed: Arc<AtomicUsize>,
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|seen| seen.path == path).count()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    receiver.seen.lock().expect("lock").push(Seen { path: path.clone(), method: method.to_string(), headers, body });
    match path.as_str() {
        "/ok" => (StatusCode::OK, "thanks\r\n\u{1b}[1m").into_response(),
        "/busy" => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/target")]).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            StatusCode::OK.into_response()
        }
        "/endless" => {
            let streamed = Arc::clone(&receiver.streamed);
            let chunks = futures::stream::repeat_with(move || {
                streamed.fetch_add(64 * 1024, Ordering::Relaxed);
                Ok::<_, Infallible>(Bytes::from(vec![b'a'; 64 * 1024]))
            });
            (StatusCode::OK, Body::from_stream(chunks)).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_receiver() -> (Receiver, SocketAddr) {
    let receiver = Receiver::default();
    let app = Router::new().fallback(any(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (receiver, addr)
}

fn config(allow_loopback: bool) -> SenderConfig {
    SenderConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_response_bytes: 64 * 1024,
        allow: if allow_loopback { vec!["127.0.0.0/8".parse().expect("net")] } else { vec![] },
        user_agent: "palisade-webhooks-test/1".to_owned(),
    }
}

fn url(addr: SocketAddr, path: &str) -> url::Url {
    url::Url::parse(&format!("http://{addr}{path}")).expect("url")
}

const BODY: &[u8] = br#"{"type":"todo.created","data":{"id":1}}"#;

fn message(timestamp: i64) -> Message<'static> {
    Message { id: "msg_2ZgJm0KsoXRS2dtvh4kaF2zGiNH", timestamp, body: BODY }
}

fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// Maps every name to one chosen IP, keeping the port it is asked for.
#[derive(Debug)]
struct PointAt(IpAddr);

impl Resolve for PointAt {
    fn resolve(&self, _host: &str, port: u16) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>> {
        let addr = SocketAddr::new(self.0, port);
        Box::pin(async move { Ok(vec![addr]) })
    }
}

#[tokio::test]
async fn a_2xx_is_delivered_with_headers_whose_signatures_verify() {
    let (receiver, addr) = start_receiver().await;
    let sender = Sender::new(config(true)).expect("sender");
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    let timestamp = now();
    let attempt = sender.deliver(&url(addr, "/ok"), &message(timestamp), &[&new, &old]).await;
    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    assert!(attempt.outcome.is_success());
    assert_eq!(attempt.outcome.label(), "delivered");
    assert_eq!(attempt.status, Some(200));
    assert_eq!(attempt.response_excerpt, "thanks[1m");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.body.as_ref(), BODY);
    let header =
        |name: &str| request.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("user-agent"), "palisade-webhooks-test/1");
    assert_eq!(header("webhook-id"), "msg_2ZgJm0KsoXRS2dtvh4kaF2zGiNH");
    assert_eq!(header("webhook-timestamp"), timestamp.to_string());
    assert_eq!(header("webhook-signature").split(' ').count(), 2);
    for secret in [&old, &new] {
        verify(secret, &request.headers, &request.body, now(), DEFAULT_TOLERANCE)
            .expect("the receiver can verify the delivery with either secret");
    }
}

#[tokio::test]
async fn a_non_2xx_is_rejected_with_its_status() {
    let (receiver, addr) = start_receiver().await;
    let sender = Sender::new(config(true)).expect("sender");
    let secret = SigningSecret::generate();
    let attempt = sender.deliver(&url(addr, "/busy"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Rejected);
    assert!(!attempt.outcome.is_success());
    assert_eq!(attempt.status, Some(503));
    assert_eq!(attempt.response_excerpt, "try later");
    assert_eq!(receiver.hits("/busy"), 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (receiver, addr) = start_receiver().await;
    let sender = Sender::new(config(true)).expect("sender");
    let secret = SigningSecret::generate();
    let attempt = sender.deliver(&url(addr, "/redirect"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Rejected);
    assert_eq!(attempt.status, Some(302));
    assert_eq!(receiver.hits("/redirect"), 1);
    assert_eq!(receiver.hits("/target"), 0, "the redirect target was requested");
}

#[tokio::test]
async fn a_slow_receiver_times_out_within_the_request_timeout() {
    let (_receiver, addr) = start_receiver().await;
    let sender =
        Sender::new(SenderConfig { request_timeout: Duration::from_millis(300), ..config(true) }).expect("sender");
    let secret = SigningSecret::generate();
    let started = Instant::now();
    let attempt = sender.deliver(&url(addr, "/slow"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::TimedOut);
    assert_eq!(attempt.status, None);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(attempt.duration >= Duration::from_millis(300), "{:?}", attempt.duration);
}

#[tokio::test]
async fn an_endless_response_is_read_only_up_to_the_cap() {
    let (receiver, addr) = start_receiver().await;
    let sender = Sender::new(config(true)).expect("sender");
    let secret = SigningSecret::generate();
    let attempt = sender.deliver(&url(addr, "/endless"), &message(now()), &[&secret]).await;
    // Reading it all would never finish: the attempt would time out instead.
    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    assert_eq!(attempt.status, Some(200));
    assert_eq!(attempt.response_excerpt, "a".repeat(1024));
    let streamed = receiver.streamed.load(Ordering::Relaxed);
    assert!(streamed < 64 * 1024 * 1024, "the receiver streamed {streamed} bytes");
}

#[tokio::test]
async fn loopback_is_refused_unless_allow_listed() {
    let (receiver, addr) = start_receiver().await;
    let secret = SigningSecret::generate();
    let refusing = Sender::new(config(false)).expect("sender");
    let attempt = refusing.deliver(&url(addr, "/ok"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Refused(Refusal::Loopback));
    assert_eq!(attempt.outcome.label(), "refused");
    assert_eq!(attempt.status, None);
    assert_eq!(receiver.hits("/ok"), 0, "the receiver was reached");

    let allowing = Sender::new(config(true)).expect("sender");
    let attempt = allowing.deliver(&url(addr, "/ok"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(receiver.hits("/ok"), 1);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_after_dns() {
    let (receiver, addr) = start_receiver().await;
    let secret = SigningSecret::generate();
    let resolver = Arc::new(PointAt(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let named = url::Url::parse(&format!("http://hooks.customer.test:{}/ok", addr.port())).expect("url");

    let refusing = Sender::with_resolver(config(false), resolver.clone()).expect("sender");
    let attempt = refusing.deliver(&named, &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Refused(Refusal::Loopback), "{attempt:?}");
    assert_eq!(receiver.hits("/ok"), 0, "the receiver was reached");

    let allowing = Sender::with_resolver(config(true), resolver).expect("sender");
    let attempt = allowing.deliver(&named, &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    assert_eq!(receiver.hits("/ok"), 1);
}

#[tokio::test]
async fn a_url_with_credentials_or_another_scheme_is_refused_before_sending() {
    let (receiver, addr) = start_receiver().await;
    let sender = Sender::new(config(true)).expect("sender");
    let secret = SigningSecret::generate();
    let with_credentials = url::Url::parse(&format!("http://user:pw@{addr}/ok")).expect("url");
    let attempt = sender.deliver(&with_credentials, &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Refused(Refusal::Credentials));
    let ftp = url::Url::parse(&format!("ftp://{addr}/ok")).expect("url");
    let attempt = sender.deliver(&ftp, &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::Refused(Refusal::BadScheme));
    assert_eq!(receiver.hits("/ok"), 0);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let sender = Sender::new(config(true)).expect("sender");
    let secret = SigningSecret::generate();
    let attempt = sender.deliver(&url(addr, "/ok"), &message(now()), &[&secret]).await;
    assert_eq!(attempt.outcome, Outcome::ConnectFailed, "{attempt:?}");
    assert_eq!(attempt.outcome.label(), "connect_failed");
    assert_eq!(attempt.status, None);
}
