//! A bare axum server for `bench/run.sh`: the same axum and tokio as palisade, one route, no layers.
//! `/health` through palisade is measured against `/health` here, so the ratio is what palisade's
//! middleware stack costs on top of the framework itself.

use std::net::SocketAddr;

use axum::{Router, http::header, routing::get};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("BARE_AXUM_ADDR")
        .ok()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
    let app = Router::new()
        .route("/health", get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#) }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
