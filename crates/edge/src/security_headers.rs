//! Security headers on every response: defaults for a JSON API that no browser should render,
//! frame, sniff or cache, each overridable or removable from config. A header the handler set
//! itself is left alone (a route that serves HTML can send its own CSP).

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::Response,
};
use palisade_ops::hook::{After, Hook};
use serde::{Deserialize, Serialize};

use crate::client_ip::ResolvedClient;

/// Seconds in a year: the smallest `max-age` the HSTS preload list accepts.
const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;
const REPORTING_GROUP: &str = "csp-endpoint";

/// The `[security_headers]` configuration section. Every value is the header's full value; an
/// empty string leaves the header out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    pub content_security_policy: String,
    /// Send the policy as `Content-Security-Policy-Report-Only` (to trial a stricter one).
    pub content_security_policy_report_only: bool,
    /// Where browsers report violations (`https://…` or a path): added as `report-uri` and, via
    /// `Reporting-Endpoints`, as `report-to`. Empty: no reports.
    pub csp_report_uri: String,
    /// Sent only on requests that arrived over HTTPS (per a trusted proxy), or always with
    /// `hsts_force`.
    pub strict_transport_security: String,
    /// Append `preload` (only once the whole domain is HTTPS-only: it is hard to undo).
    pub hsts_preload: bool,
    /// Send HSTS on every response, for a TLS-terminating proxy that does not set
    /// `X-Forwarded-Proto`.
    pub hsts_force: bool,
    pub x_frame_options: String,
    pub x_content_type_options: String,
    pub referrer_policy: String,
    pub permissions_policy: String,
    pub cross_origin_opener_policy: String,
    pub cross_origin_resource_policy: String,
    pub x_permitted_cross_domain_policies: String,
    pub x_xss_protection: String,
    /// Asks the browser to isolate the origin in its own agent cluster (process).
    pub origin_agent_cluster: String,
    pub x_dns_prefetch_control: String,
    /// Old Internet Explorer: never open a download in the site's context.
    pub x_download_options: String,
    /// Unless the handler chose its own caching.
    pub cache_control: String,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            content_security_policy: "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
                .to_owned(),
            content_security_policy_report_only: false,
            csp_report_uri: String::new(),
            strict_transport_security: "max-age=31536000; includeSubDomains".to_owned(),
            hsts_preload: false,
            hsts_force: false,
            x_frame_options: "DENY".to_owned(),
            x_content_type_options: "nosniff".to_owned(),
            referrer_policy: "no-referrer".to_owned(),
            permissions_policy: [
                "accelerometer",
                "autoplay",
                "bluetooth",
                "camera",
                "display-capture",
                "fullscreen",
                "geolocation",
                "gyroscope",
                "hid",
                "idle-detection",
                "magnetometer",
                "microphone",
                "midi",
                "payment",
                "picture-in-picture",
                "publickey-credentials-get",
                "screen-wake-lock",
                "serial",
                "usb",
                "xr-spatial-tracking",
            ]
            .map(|feature| format!("{feature}=()"))
            .join(", "),
            cross_origin_opener_policy: "same-origin".to_owned(),
            cross_origin_resource_policy: "same-origin".to_owned(),
            x_permitted_cross_domain_policies: "none".to_owned(),
            x_xss_protection: "0".to_owned(),
            origin_agent_cluster: "?1".to_owned(),
            x_dns_prefetch_control: "off".to_owned(),
            x_download_options: "noopen".to_owned(),
            cache_control: "no-store".to_owned(),
        }
    }
}

impl SecurityHeadersConfig {
    /// Every value that cannot be sent or says something other than intended.
    pub fn problems(&self) -> Vec<String> {
        match SecurityHeaders::new(self) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }
}

/// The validated headers, ready to stamp on responses; cheap to clone.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    inner: Arc<Prepared>,
}

/// Every header, ready-made as a map: a response's headers are merged into a clone of it, which
/// costs no hashing of the dozen security headers per response (the map is cloned, not rebuilt).
#[derive(Debug)]
struct Prepared {
    /// For a response to a plain-HTTP request (no HSTS unless `hsts_force`).
    plain: HeaderMap,
    /// For a response to a request that came over HTTPS.
    secure: HeaderMap,
}

impl SecurityHeaders {
    pub fn new(config: &SecurityHeadersConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();

        let mut always = Vec::new();
        let report_uri = config.csp_report_uri.trim();
        let mut csp = config.content_security_policy.trim().to_owned();
        if !report_uri.is_empty() {
            let valid = (report_uri.starts_with("https://")
                || report_uri.starts_with("http://")
                || report_uri.starts_with('/'))
                && !report_uri.contains(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '"'));
            if !valid {
                problems.push("security_headers.csp_report_uri must be an http(s) URL or a path".to_owned());
            } else if csp.is_empty() {
                problems.push("security_headers.csp_report_uri is set but content_security_policy is empty".to_owned());
            } else {
                csp = format!("{csp}; report-uri {report_uri}; report-to {REPORTING_GROUP}");
                if let Some(v) = value(&mut problems, "csp_report_uri", &format!("{REPORTING_GROUP}=\"{report_uri}\""))
                {
                    always.push((HeaderName::from_static("reporting-endpoints"), v));
                }
            }
        }
        if config.content_security_policy_report_only && csp.is_empty() {
            problems.push(
                "security_headers.content_security_policy_report_only is set but content_security_policy is empty"
                    .to_owned(),
            );
        }
        let csp_name = if config.content_security_policy_report_only {
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        } else {
            header::CONTENT_SECURITY_POLICY
        };
        let plain = [
            (csp_name, "content_security_policy", csp.as_str()),
            (header::X_FRAME_OPTIONS, "x_frame_options", &config.x_frame_options),
            (header::X_CONTENT_TYPE_OPTIONS, "x_content_type_options", &config.x_content_type_options),
            (header::REFERRER_POLICY, "referrer_policy", &config.referrer_policy),
            (HeaderName::from_static("permissions-policy"), "permissions_policy", &config.permissions_policy),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "cross_origin_opener_policy",
                &config.cross_origin_opener_policy,
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                "cross_origin_resource_policy",
                &config.cross_origin_resource_policy,
            ),
            (
                HeaderName::from_static("x-permitted-cross-domain-policies"),
                "x_permitted_cross_domain_policies",
                &config.x_permitted_cross_domain_policies,
            ),
            (header::X_XSS_PROTECTION, "x_xss_protection", &config.x_xss_protection),
            (HeaderName::from_static("origin-agent-cluster"), "origin_agent_cluster", &config.origin_agent_cluster),
            (
                HeaderName::from_static("x-dns-prefetch-control"),
                "x_dns_prefetch_control",
                &config.x_dns_prefetch_control,
            ),
            (HeaderName::from_static("x-download-options"), "x_download_options", &config.x_download_options),
        ];
        for (name, key, raw) in plain {
            if let Some(v) = value(&mut problems, key, raw) {
                always.push((name, v));
            }
        }
        let cache_control = value(&mut problems, "cache_control", &config.cache_control);

        let hsts_raw = config.strict_transport_security.trim();
        let hsts = if hsts_raw.is_empty() {
            if config.hsts_preload || config.hsts_force {
                problems.push(
                    "security_headers.hsts_preload/hsts_force are set but strict_transport_security is empty"
                        .to_owned(),
                );
            }
            None
        } else {
            let max_age = hsts_directive(hsts_raw, "max-age").and_then(|v| v.trim_matches('"').parse::<u64>().ok());
            if max_age.is_none() {
                problems.push("security_headers.strict_transport_security needs `max-age=<seconds>`".to_owned());
            }
            let include_subdomains = hsts_directive(hsts_raw, "includesubdomains").is_some();
            let already_preload = hsts_directive(hsts_raw, "preload").is_some();
            if (config.hsts_preload || already_preload)
                && (!include_subdomains || max_age.is_none_or(|age| age < PRELOAD_MIN_MAX_AGE))
            {
                problems.push(
                    "security_headers: HSTS preload needs includeSubDomains and max-age of at least 31536000"
                        .to_owned(),
                );
            }
            let full = if config.hsts_preload && !already_preload {
                format!("{hsts_raw}; preload")
            } else {
                hsts_raw.to_owned()
            };
            value(&mut problems, "strict_transport_security", &full)
        };

        if !problems.is_empty() {
            return Err(problems);
        }
        always.extend(cache_control.map(|value| (header::CACHE_CONTROL, value)));
        let template = |with_hsts: bool| {
            let hsts = hsts.clone().filter(|_| with_hsts).map(|value| (header::STRICT_TRANSPORT_SECURITY, value));
            always.iter().cloned().chain(hsts).collect::<HeaderMap>()
        };
        let plain = template(config.hsts_force);
        Ok(Self { inner: Arc::new(Prepared { plain, secure: template(true) }) })
    }

    /// Adds the headers the response does not carry yet, and removes ones that only advertise
    /// the software we run. A header the response carries wins over ours (a handler that sets its
    /// own `Cache-Control`, say), with all of its values.
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
        let prepared = &*self.inner;
        let mut merged = if https { prepared.secure.clone() } else { prepared.plain.clone() };
        merged.reserve(headers.len());
        // The iterator names a header once, then yields its further values with `None`.
        let mut current: Option<HeaderName> = None;
        for (name, value) in std::mem::take(headers) {
            match name {
                Some(name) if name == header::SERVER || name.as_str() == "x-powered-by" => current = None,
                Some(name) => {
                    merged.insert(&name, value);
                    current = Some(name);
                }
                None => {
                    if let Some(name) = &current {
                        merged.append(name, value);
                    }
                }
            }
        }
        *headers = merged;
    }
}

/// `raw` as a header value; `None` when empty (the header is disabled) or invalid (a problem).
fn value(problems: &mut Vec<String>, key: &str, raw: &str) -> Option<HeaderValue> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parsed = HeaderValue::from_str(raw).ok();
    if parsed.is_none() {
        problems
            .push(format!("security_headers.{key} is not a valid header value (printable ASCII only, no line breaks)"));
    }
    parsed
}

/// The value of an HSTS directive (`Some("")` for a valueless one), matched case-insensitively.
fn hsts_directive<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').map(str::trim).find_map(|directive| {
        let (key, rest) = directive.split_once('=').unwrap_or((directive, ""));
        key.trim().eq_ignore_ascii_case(name).then_some(rest.trim())
    })
}

/// Middleware (a [`Hook`]): stamps the headers on every response that passes through it.
impl Hook for SecurityHeaders {
    type Carry = bool;

    fn before(&self, request: &mut Request) -> Result<bool, Response> {
        Ok(request.extensions().get::<ResolvedClient>().is_some_and(|client| client.https))
    }

    fn after(&self, https: bool, mut response: Response) -> After {
        self.apply(response.headers_mut(), https);
        After::Done(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(config: &SecurityHeadersConfig, https: bool) -> HeaderMap {
        let headers = SecurityHeaders::new(config).expect("valid");
        let mut map = HeaderMap::new();
        headers.apply(&mut map, https);
        map
    }

    #[test]
    fn the_defaults_are_valid_and_complete() {
        let map = applied(&SecurityHeadersConfig::default(), false);
        assert_eq!(map["x-frame-options"], "DENY");
        assert_eq!(map["x-content-type-options"], "nosniff");
        assert_eq!(map["cache-control"], "no-store");
        assert_eq!(map["x-xss-protection"], "0");
        assert_eq!(map["referrer-policy"], "no-referrer");
        assert_eq!(map["origin-agent-cluster"], "?1");
        assert_eq!(map["x-dns-prefetch-control"], "off");
        assert_eq!(map["x-download-options"], "noopen");
        assert!(map["permissions-policy"].to_str().unwrap_or_default().contains("camera=()"));
        assert!(!map.contains_key("strict-transport-security"));
    }

    #[test]
    fn hsts_goes_out_on_https_or_when_forced_and_preload_is_opt_in() {
        let mut config = SecurityHeadersConfig::default();
        assert_eq!(applied(&config, true)["strict-transport-security"], "max-age=31536000; includeSubDomains");
        config.hsts_force = true;
        config.hsts_preload = true;
        assert_eq!(
            applied(&config, false)["strict-transport-security"],
            "max-age=31536000; includeSubDomains; preload"
        );
    }

    #[test]
    fn an_empty_value_removes_a_header_and_a_handler_value_wins() {
        let config = SecurityHeadersConfig { x_frame_options: String::new(), ..Default::default() };
        let headers = SecurityHeaders::new(&config).expect("valid");
        let mut map = HeaderMap::new();
        map.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        map.insert(header::SERVER, HeaderValue::from_static("hyper"));
        headers.apply(&mut map, false);
        assert!(!map.contains_key("x-frame-options"));
        assert_eq!(map["cache-control"], "public, max-age=60");
        assert!(!map.contains_key("server"));
    }

    #[test]
    fn every_value_of_a_handler_header_is_kept_and_every_advertisement_dropped() {
        let headers = SecurityHeaders::new(&SecurityHeadersConfig::default()).expect("valid");
        let mut map = HeaderMap::new();
        map.append(header::VARY, HeaderValue::from_static("accept"));
        map.append(header::VARY, HeaderValue::from_static("origin"));
        map.append("x-powered-by", HeaderValue::from_static("php"));
        map.append("x-powered-by", HeaderValue::from_static("asp"));
        map.append(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'"));
        map.append(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("img-src *"));
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.apply(&mut map, false);
        let all = |name| map.get_all(name).iter().map(|v| v.to_str().unwrap_or_default()).collect::<Vec<_>>();
        assert_eq!(all(header::VARY), ["accept", "origin"]);
        assert_eq!(all(header::CONTENT_SECURITY_POLICY), ["default-src 'self'", "img-src *"]);
        assert_eq!(all(header::CONTENT_TYPE), ["application/json"]);
        assert!(!map.contains_key("x-powered-by"));
        assert_eq!(map["x-frame-options"], "DENY");
    }

    #[test]
    fn report_only_and_a_report_uri_are_options() {
        let config = SecurityHeadersConfig {
            content_security_policy_report_only: true,
            csp_report_uri: "https://reports.example.com/csp".into(),
            ..Default::default()
        };
        let map = applied(&config, false);
        assert!(!map.contains_key("content-security-policy"));
        let csp = map["content-security-policy-report-only"].to_str().unwrap_or_default();
        assert!(csp.ends_with("; report-uri https://reports.example.com/csp; report-to csp-endpoint"), "{csp}");
        assert_eq!(map["reporting-endpoints"], "csp-endpoint=\"https://reports.example.com/csp\"");
    }

    #[test]
    fn bad_values_are_listed_not_panicked_on() {
        let config = SecurityHeadersConfig {
            x_frame_options: "DENY\nX-Evil: 1".into(),
            strict_transport_security: "includeSubDomains".into(),
            csp_report_uri: "javascript:alert(1)".into(),
            hsts_preload: true,
            ..Default::default()
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("x_frame_options")));
    }
}
