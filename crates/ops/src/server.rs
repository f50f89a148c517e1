//! Serving HTTP with hyper directly (rather than `axum::serve`) because production needs connection
//! settings axum does not expose: a header read timeout against slowloris clients and a cap on
//! header size. Shutdown is graceful: readiness flips first, the optional drain delay lets load
//! balancers notice, then the listener closes and in-flight requests get a deadline to finish.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, extract::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::readiness::Readiness;

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
    /// A client must send its complete request head within this time (slowloris defence).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers) accepted, in bytes.
    pub max_header_bytes: usize,
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
            shutdown_drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains as described above.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    readiness: Arc<Readiness>,
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
        .max_buf_size(config.max_header_bytes.max(8192));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
                let service = TowerToHyperService::new(router.clone().map_request(
                    move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    },
                ));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                });
            }
            () = &mut drain => break,
        }
    }
    drop(listener);
    tracing::info!(deadline = ?config.shutdown_timeout, "listener closed; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!("shutdown deadline passed with connections still open; abandoning them");
        }
    }
    Ok(())
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
