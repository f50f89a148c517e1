//! HTTP edge hardening: security headers, CORS, client IP resolution, response compression and
//! rate limiting. Each part owns its config section; the `api` crate puts the middleware in
//! order (see docs/architecture.md, "Middleware stack").

pub mod client_ip;
pub mod compression;
pub mod cors;
pub mod rate_limit;
pub mod security_headers;

pub use client_ip::{ClientIp, ClientIpConfig, ClientIpResolver, Https};
pub use compression::CompressionConfig;
pub use cors::{Cors, CorsConfig};
pub use rate_limit::{Decision, RateLimitConfig, RateLimiter, Verdict};
pub use security_headers::{SecurityHeaders, SecurityHeadersConfig};

/// The stateless edge parts, validated and ready to layer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Edge {
    pub security_headers: SecurityHeaders,
    /// `None` when no origin is allowed.
    pub cors: Option<Cors>,
    pub client_ip: ClientIpResolver,
    pub compression: CompressionConfig,
}

impl Edge {
    /// Builds every part, listing all problems at once (the same ones `problems` reports).
    pub fn build(
        security_headers: &SecurityHeadersConfig,
        cors: &CorsConfig,
        client_ip: &ClientIpConfig,
        compression: &CompressionConfig,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let headers = SecurityHeaders::new(security_headers).map_err(|p| problems.extend(p)).ok();
        let cors = cors.build().map_err(|p| problems.extend(p)).ok();
        let resolver = ClientIpResolver::new(client_ip).map_err(|p| problems.extend(p)).ok();
        match (headers, cors, resolver) {
            (Some(security_headers), Some(cors), Some(client_ip)) if problems.is_empty() => {
                Ok(Self { security_headers, cors, client_ip, compression: compression.clone() })
            }
            _ => Err(problems),
        }
    }
}
