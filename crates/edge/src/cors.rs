//! CORS with tower-http's `CorsLayer`, from exact origins. Two things are added around it:
//! configurations tower-http would panic on (credentials with a `*`) never reach it, and a
//! request from an origin that is not allowed gets no `Access-Control-*` header at all (tower-http
//! still sends the credentials and expose-headers parts).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    response::Response,
};
use palisade_ops::hook::{After, Hook};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

const WILDCARD: &str = "*";

/// The `[cors]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`, no path or trailing slash) allowed to call the API
    /// from a browser, or `*`. Empty: no cross-origin browser access.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    /// Response headers browser code may read.
    pub exposed_headers: Vec<String>,
    /// Let browsers send cookies / HTTP auth cross-origin (never with `*` outside development).
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: strings(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: strings(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "if-match",
                "if-none-match",
                "x-request-id",
                "x-tenant-id",
            ]),
            exposed_headers: strings(&[
                "etag",
                "idempotent-replayed",
                "location",
                "retry-after",
                "ratelimit",
                "ratelimit-policy",
                "x-request-id",
            ]),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Which origins may make cross-origin requests.
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    Any,
    List(Arc<[HeaderValue]>),
}

impl AllowedOrigins {
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(origin),
        }
    }
}

/// A ready CORS setup: the tower-http layer plus the origin check used to strip stray headers.
#[derive(Debug, Clone)]
pub struct Cors {
    pub layer: CorsLayer,
    pub origins: AllowedOrigins,
}

fn entries(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl CorsConfig {
    pub fn is_enabled(&self) -> bool {
        entries(&self.allowed_origins).next().is_some()
    }

    fn has_wildcard(list: &[String]) -> bool {
        entries(list).any(|s| s == WILDCARD)
    }

    /// Malformed entries always; outside development also `*` origins with credentials (any site
    /// could make authenticated requests with the user's cookies).
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let origins: Vec<&str> = entries(&self.allowed_origins).collect();
        if origins.contains(&WILDCARD) && origins.len() > 1 {
            problems.push("cors.allowed_origins mixes `*` with explicit origins; use one or the other".to_owned());
        }
        for origin in origins.iter().filter(|o| **o != WILDCARD) {
            if let Err(why) = check_origin(origin) {
                problems.push(format!("cors.allowed_origins: `{origin}` {why}"));
            }
        }
        for method in entries(&self.allowed_methods).filter(|m| *m != WILDCARD) {
            if Method::from_bytes(method.as_bytes()).is_err() {
                problems.push(format!("cors.allowed_methods: `{method}` is not an HTTP method"));
            }
        }
        for (key, list) in [("allowed_headers", &self.allowed_headers), ("exposed_headers", &self.exposed_headers)] {
            for name in entries(list).filter(|h| *h != WILDCARD) {
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    problems.push(format!("cors.{key}: `{name}` is not a header name"));
                }
            }
        }
        if self.allow_credentials && Self::has_wildcard(&self.exposed_headers) {
            problems.push("cors.exposed_headers cannot be `*` with cors.allow_credentials; list them".to_owned());
        }
        if production && self.allow_credentials {
            for (key, list) in [
                ("allowed_origins", &self.allowed_origins),
                ("allowed_methods", &self.allowed_methods),
                ("allowed_headers", &self.allowed_headers),
            ] {
                if Self::has_wildcard(list) {
                    problems.push(format!(
                        "cors.{key} is `*` with cors.allow_credentials=true: browsers would send users' \
                         credentials from any site; list the exact values"
                    ));
                }
            }
        }
        problems
    }

    /// The layer, or `None` when no origin is allowed (then cross-origin requests get no CORS
    /// headers and preflights are not answered). With credentials in development, a `*` is
    /// honoured by mirroring the request, the only form browsers (and tower-http) accept.
    pub fn build(&self) -> Result<Option<Cors>, Vec<String>> {
        let problems = self.problems(false);
        if !problems.is_empty() {
            return Err(problems);
        }
        if !self.is_enabled() {
            return Ok(None);
        }
        let credentials = self.allow_credentials;
        if credentials && Self::has_wildcard(&self.allowed_origins) {
            tracing::warn!("cors: `*` with credentials mirrors every request's origin (refused outside development)");
        }
        let (allow_origin, origins) = if Self::has_wildcard(&self.allowed_origins) {
            let allow = if credentials { AllowOrigin::mirror_request() } else { AllowOrigin::any() };
            (allow, AllowedOrigins::Any)
        } else {
            let list: Vec<HeaderValue> =
                entries(&self.allowed_origins).filter_map(|o| HeaderValue::from_str(o).ok()).collect();
            (AllowOrigin::list(list.clone()), AllowedOrigins::List(list.into()))
        };
        let allow_methods = if Self::has_wildcard(&self.allowed_methods) {
            if credentials { AllowMethods::mirror_request() } else { AllowMethods::any() }
        } else {
            AllowMethods::list(entries(&self.allowed_methods).filter_map(|m| Method::from_bytes(m.as_bytes()).ok()))
        };
        let allow_headers = if Self::has_wildcard(&self.allowed_headers) {
            if credentials { AllowHeaders::mirror_request() } else { AllowHeaders::any() }
        } else {
            AllowHeaders::list(entries(&self.allowed_headers).filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()))
        };
        let expose_headers = if Self::has_wildcard(&self.exposed_headers) {
            ExposeHeaders::any()
        } else {
            ExposeHeaders::list(
                entries(&self.exposed_headers).filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            )
        };
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(allow_methods)
            .allow_headers(allow_headers)
            .expose_headers(expose_headers)
            .allow_credentials(credentials)
            .max_age(self.max_age);
        Ok(Some(Cors { layer, origins }))
    }
}

/// Browsers send origins as `scheme://host[:port]`, lowercase, nothing after; a configured value
/// of any other shape would silently never match.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("must look like https://app.example.com");
    };
    if !matches!(scheme, "http" | "https") {
        return Err("must be an http or https origin");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path or trailing slash");
    }
    if origin.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lowercase (browsers send origins lowercase)");
    }
    if HeaderValue::from_str(origin).is_err() {
        return Err("is not a valid header value");
    }
    Ok(())
}

/// Middleware (a [`Hook`]), just outside the `CorsLayer`: a response to a request without an allowed `Origin`
/// carries no `Access-Control-*` header.
impl Hook for AllowedOrigins {
    type Carry = bool;

    fn before(&self, request: &mut Request) -> Result<bool, Response> {
        Ok(request.headers().get(header::ORIGIN).is_some_and(|origin| self.allows(origin)))
    }

    fn after(&self, allowed: bool, mut response: Response) -> After {
        if !allowed {
            let stray: Vec<HeaderName> = response
                .headers()
                .keys()
                .filter(|name| name.as_str().starts_with("access-control-"))
                .cloned()
                .collect();
            for name in stray {
                response.headers_mut().remove(name);
            }
        }
        After::Done(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allow_credentials: credentials,
            ..Default::default()
        }
    }

    #[test]
    fn no_origins_means_no_layer() {
        assert!(matches!(CorsConfig::default().build(), Ok(None)));
        assert!(matches!(config(&[" "], false).build(), Ok(None)));
    }

    #[test]
    fn a_wildcard_with_credentials_is_a_production_problem_and_never_panics() {
        let c = config(&["*"], true);
        assert!(c.problems(false).is_empty());
        assert_eq!(c.problems(true).len(), 1);
        let built = c.build().expect("builds in development").expect("enabled");
        // Applying the layer is where tower-http would panic on `*` + credentials.
        let _router: axum::Router =
            axum::Router::new().route("/", axum::routing::get(|| async { "ok" })).layer(built.layer);
    }

    #[test]
    fn malformed_origins_methods_and_headers_are_listed() {
        let c = CorsConfig {
            allowed_origins: vec!["https://app.example.com/".into(), "app.example.com".into(), "HTTPS://X.COM".into()],
            allowed_methods: vec!["GE T".into()],
            allowed_headers: vec!["bad header".into()],
            ..Default::default()
        };
        assert_eq!(c.problems(false).len(), 5, "{:?}", c.problems(false));
        assert!(c.build().is_err());
    }

    #[test]
    fn listed_origins_match_exactly() {
        let built = config(&["https://app.example.com"], true).build().expect("valid").expect("enabled");
        assert!(built.origins.allows(&HeaderValue::from_static("https://app.example.com")));
        assert!(!built.origins.allows(&HeaderValue::from_static("https://app.example.com.evil.com")));
        assert!(!built.origins.allows(&HeaderValue::from_static("http://app.example.com")));
    }
}
