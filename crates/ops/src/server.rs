//! Serving HTTP with hyper directly (rather than `axum::serve`) because production needs connection
//! settings axum does not expose. Every connection is watched so that none is held for free:
//!
//! - a client must send its first complete request head within `header_read_timeout` of
//!   connecting (HTTP/1 and HTTP/2 alike: bytes that never finish a request line, a partial
//!   HTTP/2 preface, or a whole preface followed by nothing), and hyper bounds every later
//!   HTTP/1 head by the same timeout from its first byte;
//! - a connection with no request in flight is closed after `idle_timeout`;
//! - HTTP/2 peers are pinged every `http2_keep_alive_interval`, and dropped when a ping is not
//!   answered within `http2_keep_alive_timeout`;
//! - at most `max_connections` are open; one more is answered at once with a 503 problem
//!   (written on the raw socket as HTTP/1.1 with `Connection: close`) and closed.
//!
//! Shutdown is graceful: readiness flips first, the optional drain delay lets load balancers
//! notice, then the listener closes, every connection is asked to finish (HTTP/2 gets GOAWAY),
//! connections with no request in flight are closed at once, and the others get
//! `shutdown_timeout` to finish.
//!
//! Request heads: hyper itself refuses (with a bare 431, before any middleware runs) heads larger
//! than twice `max_header_bytes` or with more than twice `max_header_count` fields; heads between
//! the documented limits and those hard ones reach the [`HeadLimits`] hook, which answers with the
//! same problem+json, request id and security headers as every other error.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulConnection},
    service::TowerToHyperService,
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, mpsc, watch},
    time::Instant,
};
use tower::ServiceExt;

use crate::{
    Metrics, Problem,
    hook::{After, Hook},
    problem,
    readiness::Readiness,
};

/// The `[server]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address. Inside a container set `0.0.0.0:8080`.
    pub addr: SocketAddr,
    /// A request still running after this long is answered with 503 problem+json.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Request bodies larger than this are refused with 413.
    pub body_limit_bytes: usize,
    /// A client must send its complete request head within this time (slowloris defence); a new
    /// connection must deliver its first request within it too.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields accepted in one request.
    pub max_header_count: usize,
    /// A connection with no request in flight is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 connections are pinged this often to find dead peers.
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_interval: Duration,
    /// An HTTP/2 peer that does not answer a ping within this is disconnected.
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_timeout: Duration,
    /// Most client connections open at once; one more is refused with 503.
    pub max_connections: usize,
    /// After SIGTERM, keep serving (while /ready says 503) this long so load balancers stop
    /// routing here before connections are refused.
    #[serde(with = "humantime_serde")]
    pub shutdown_drain_delay: Duration,
    /// After the drain delay, in-flight requests get this long to finish before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_header_count: 100,
            idle_timeout: Duration::from_secs(120),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

impl ServerConfig {
    /// Hyper's own head limits, above the documented ones so that the [`HeadLimits`] hook answers
    /// in the project's shape; only heads beyond these get hyper's bare refusal.
    fn hard_header_bytes(&self) -> usize {
        self.max_header_bytes.saturating_mul(2).max(8192)
    }

    fn hard_header_count(&self) -> usize {
        self.max_header_count.saturating_mul(2)
    }
}

/// How long a connection being closed (idle, or at shutdown with nothing in flight) is polled
/// further so that an HTTP/2 GOAWAY reaches the peer before the socket closes.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How long a refused connection may take to receive its 503 before it is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves, then drains as described above.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.hard_header_bytes())
        .max_headers(config.hard_header_count());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(config.hard_header_bytes()).unwrap_or(u32::MAX));
    let limits = Limits {
        first_request: config.header_read_timeout,
        idle: config.idle_timeout,
        max_connections: config.max_connections,
    };
    let open = Arc::new(AtomicUsize::new(0));
    let (stopping, stop_signal) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, `recv` returns `None`.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let drain = async {
        shutdown.await;
        readiness.begin_shutdown();
        tracing::info!(delay = ?config.shutdown_drain_delay, "shutdown requested; draining");
        tokio::time::sleep(config.shutdown_drain_delay).await;
    };
    tokio::pin!(drain);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = Slot::claim(&open, limits.max_connections, &metrics) else {
                    metrics.http_connections_refused_total.inc();
                    // Counted, not logged at warn: a flood would otherwise flood the logs too.
                    tracing::debug!(%peer, max_connections = limits.max_connections, "connection refused: too many open");
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let activity = Arc::new(Activity::new());
                let service = TowerToHyperService::new(tower::service_fn({
                    let (router, activity) = (router.clone(), activity.clone());
                    move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        // The request counts as in flight until its response body is finished.
                        let guard = activity.begin();
                        let response = router.clone().oneshot(request);
                        async move {
                            let response = response.await?;
                            Ok::<_, std::convert::Infallible>(response.map(|body| {
                                Body::new(body.map_frame(move |frame| {
                                    let _held = &guard;
                                    frame
                                }))
                            }))
                        }
                    }
                }));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                tokio::spawn(watch_connection(connection, activity, limits, stop_signal.clone(), (slot, alive.clone()), peer));
            }
            () = &mut drain => break,
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(alive);
    tracing::info!(deadline = ?config.shutdown_timeout, "listener closed; waiting for in-flight requests");
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!("shutdown deadline passed with connections still open; abandoning them");
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    first_request: Duration,
    idle: Duration,
    max_connections: usize,
}

/// One of the `max_connections` places; released (and the gauge lowered) when dropped.
struct Slot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn claim(open: &Arc<AtomicUsize>, max: usize, metrics: &Arc<Metrics>) -> Option<Self> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        metrics.http_connections_open.inc();
        Some(Self { open: open.clone(), metrics: metrics.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.http_connections_open.dec();
    }
}

/// What the watcher of one connection needs to know: requests in flight and when the last ended.
///
/// Requests do not wake the watcher: it sleeps until the earliest moment the connection could be
/// idle too long and looks again then (activity only ever moves that moment later). Only the first
/// request, which swaps `first_request` for the `idle` limit, and the end of a request during
/// shutdown, when an idle connection must close at once, wake it. Waking it on every request cost
/// each request two wake-ups of its connection's task and two new timers (docs/performance.md).
struct Activity {
    /// When the connection was accepted; `last_end` counts from here.
    opened: Instant,
    in_flight: AtomicUsize,
    seen_request: AtomicBool,
    /// Nanoseconds from `opened` to the end of the latest request (0: none has ended).
    last_end: AtomicU64,
    /// Set once shutdown begins: from then on the end of every request wakes the watcher.
    stopping: AtomicBool,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            last_end: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if !self.seen_request.load(Ordering::Relaxed) && !self.seen_request.swap(true, Ordering::SeqCst) {
            self.changed.notify_one();
        }
        InFlight(self.clone())
    }

    fn end(&self) {
        let since_open = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_end.fetch_max(since_open, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.stopping.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_nanos(self.last_end.load(Ordering::SeqCst))
    }

    /// The earliest moment the connection may be closed as idle, as far as is known now: while a
    /// request is in flight, no sooner than one idle period from now.
    fn deadline(&self, limits: &Limits) -> Instant {
        let stopping = self.stopping.load(Ordering::SeqCst);
        if !self.is_idle() {
            return Instant::now() + limits.idle;
        }
        let limit = match (stopping, self.seen_request.load(Ordering::SeqCst)) {
            (true, _) => Duration::ZERO,
            (false, true) => limits.idle,
            (false, false) => limits.first_request,
        };
        self.idle_since() + limit
    }
}

/// Marks one request in flight on its connection, from the request's arrival until its response
/// body is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Drives one connection, closing it when idle too long, and asking it to finish at shutdown.
async fn watch_connection<C>(
    connection: C,
    activity: Arc<Activity>,
    limits: Limits,
    mut stop_signal: watch::Receiver<bool>,
    held: (Slot, mpsc::Sender<()>),
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let _held = held;
    tokio::pin!(connection);
    let mut closing_at: Option<Instant> = None;
    loop {
        let deadline = closing_at.unwrap_or_else(|| activity.deadline(&limits));
        let stopping = activity.stopping.load(Ordering::SeqCst);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            changed = stop_signal.changed(), if !stopping => {
                if changed.is_ok() {
                    activity.stopping.store(true, Ordering::SeqCst);
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if closing_at.is_some() {
                    tracing::debug!(%peer, "closed an idle connection");
                    return;
                }
                // Activity since the sleep began only moves the deadline later (and a request in
                // flight puts it an idle period ahead): look again.
                if activity.deadline(&limits) <= Instant::now() {
                    if !activity.stopping.load(Ordering::SeqCst) {
                        connection.as_mut().graceful_shutdown();
                    }
                    closing_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

/// Answers a connection beyond `max_connections` with a 503 problem and closes it. The answer is
/// HTTP/1.1 (the protocol is not known yet; an HTTP/2 client sees a connection error and retries
/// elsewhere, which is what a load balancer should do anyway).
async fn refuse(mut stream: TcpStream) {
    let request_id = crate::RequestId::generate();
    let problem =
        Problem::unavailable("The server has too many open connections; retry shortly.").with_request_id(&request_id);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\ncontent-length: {}\r\nretry-after: 1\r\n\
         x-request-id: {request_id}\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\n\
         connection: close\r\n\r\n",
        problem::CONTENT_TYPE,
        body.len(),
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes, so the close is not a reset that could
        // destroy the answer before the client reads it.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, answer).await;
}

/// The documented request-head limits, enforced inside the middleware stack.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    max_bytes: usize,
    max_count: usize,
}

impl From<&ServerConfig> for HeadLimits {
    fn from(config: &ServerConfig) -> Self {
        Self { max_bytes: config.max_header_bytes, max_count: config.max_header_count }
    }
}

/// Middleware (a [`Hook`]): a request whose head exceeds `max_header_bytes` (request line plus
/// header fields, as sent) or `max_header_count` fields gets 431 problem+json.
impl Hook for HeadLimits {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        let uri = request.uri();
        let target = uri.path_and_query().map_or(1, |target| target.as_str().len())
            + uri.authority().map_or(0, |authority| authority.as_str().len());
        let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
        let fields: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        let count = request.headers().len();
        if line + fields <= self.max_bytes && count <= self.max_count {
            return Ok(());
        }
        let detail = format!(
            "The request line and headers must stay within {} bytes and {} header fields.",
            self.max_bytes, self.max_count
        );
        Err(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request-head-too-large",
            "Request head too large",
            detail,
        )
        .into_response())
    }

    fn after(&self, (): (), response: Response) -> After {
        After::Done(response)
    }
}

/// Resolves on SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
