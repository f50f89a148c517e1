//! HTTP hardening, end to end over real sockets: security headers, HSTS behind a trusted proxy,
//! CORS, client IP resolution, rate limiting (in process and shared through Redis, including Redis
//! going away mid-test), and the request limits (body size, timeout, slow and oversized heads).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{Backend, TestApp, proxy::Proxy, spawn_app, spawn_app_with};
use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    routing::{get, post},
};
use palisade_api::{AppState, Environment, Settings, extract::ValidatedJson};
use palisade_edge::{
    ClientIp, RateLimiter,
    rate_limit::{self, ANONYMOUS, AUTHENTICATED, FailureMode, Policy, PolicyChange},
};
use palisade_ops::Problem;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

on_both_backends!(
    every_response_carries_the_security_headers,
    each_security_header_can_be_overridden_or_disabled,
    hsts_is_sent_only_for_https_reported_by_a_trusted_proxy,
    cors_answers_listed_origins_and_preflights_and_nothing_else,
    a_burst_from_one_address_gets_429_with_retry_after_and_limit_headers,
    the_default_anonymous_limit_refuses_a_burst_of_a_thousand_requests,
    probes_and_metrics_are_never_rate_limited,
    a_spoofed_forwarded_for_from_an_untrusted_peer_shares_the_peers_bucket,
    the_auth_code_limits_per_tenant_and_subject_with_tenant_overrides,
    a_body_over_the_limit_gets_413_and_a_non_json_body_gets_415,
    a_request_running_past_the_timeout_gets_a_problem,
    a_slowloris_connection_is_closed_after_the_header_read_timeout,
    an_oversized_request_head_is_refused,
    large_responses_are_compressed_and_small_ones_are_not,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const DEFAULT_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
    ("cache-control", "no-store"),
];

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ascii header"))
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(|v| v.to_str().expect("ascii header").to_owned()).collect()
}

fn assert_security_headers(headers: &HeaderMap, context: &str) {
    for (name, value) in DEFAULT_HEADERS {
        assert_eq!(header(headers, name), Some(*value), "{name} on {context}");
    }
    let permissions = header(headers, "permissions-policy").unwrap_or_default();
    for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"] {
        assert!(permissions.contains(feature), "{feature} missing on {context}: {permissions}");
    }
    assert!(!headers.contains_key("strict-transport-security"), "HSTS on plain HTTP on {context}");
    assert!(!headers.contains_key("server") && !headers.contains_key("x-powered-by"), "{context}");
}

/// A policy of `burst` requests at once and one more per minute: nothing refills during a test.
fn tiny(burst: u32) -> Policy {
    Policy { rate: 1, period: Duration::from_secs(60), burst }
}

/// Sets the `anonymous` policy. These tests check what is decided, not how fast: a generous Redis
/// timeout keeps a loaded CI machine from pushing decisions into the failure mode.
fn set_anonymous(settings: &mut Settings, policy: Policy) {
    settings.rate_limit.policies.insert(ANONYMOUS.to_owned(), policy);
    settings.rate_limit.redis_timeout = Duration::from_secs(2);
}

/// The value of one `rate_limit_decisions_total` series (0 when absent).
async fn decisions(app: &TestApp, policy: &str, decision: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    let series = format!(r#"rate_limit_decisions_total{{decision="{decision}",policy="{policy}"}} "#);
    text.lines().find_map(|line| line.strip_prefix(&series)).map_or(0, |v| v.trim().parse().expect("count"))
}

/// Sends `request` on a fresh connection and reads until the server closes it (or `limit`).
/// Returns what was read and how long the server took to close.
async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Option<Duration>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    // The server may close before it has read everything (that is the point of some tests).
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break None,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

// ---------------------------------------------------------------------------------------------
// Security headers
// ---------------------------------------------------------------------------------------------

async fn panics() -> &'static str {
    panic!("a handler bug")
}

async fn every_response_carries_the_security_headers(backend: Backend) {
    let extra: Router<AppState> = Router::new().route("/test/panic", get(panics));
    let Some(app) = spawn_app_with(backend, extra, |s| set_anonymous(s, tiny(8))).await else { return };
    for path in ["/health", "/ready", "/metrics", "/api/v1/openapi.json", "/no/such/path", "/test/panic"] {
        let response = app.get(path).await;
        assert_security_headers(response.headers(), path);
    }
    let not_allowed = app.client.delete(app.url("/health")).send().await.expect("request");
    assert_eq!(not_allowed.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(not_allowed.headers(), "405");
    let limited = loop {
        let response = app.get("/no/such/path").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
    };
    assert_security_headers(limited.headers(), "429");
    app.stop().await;
}

async fn each_security_header_can_be_overridden_or_disabled(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| {
        let h = &mut s.security_headers;
        h.x_frame_options = "SAMEORIGIN".into();
        h.referrer_policy = String::new();
        h.permissions_policy = String::new();
        h.cache_control = "private, max-age=5".into();
        h.content_security_policy = "default-src 'self'".into();
        h.content_security_policy_report_only = true;
        h.csp_report_uri = "https://reports.example.com/csp".into();
    })
    .await
    else {
        return;
    };
    let response = app.get("/health").await;
    let headers = response.headers();
    assert_eq!(header(headers, "x-frame-options"), Some("SAMEORIGIN"));
    assert!(!headers.contains_key("referrer-policy"));
    assert!(!headers.contains_key("permissions-policy"));
    assert_eq!(header(headers, "cache-control"), Some("private, max-age=5"));
    assert!(!headers.contains_key("content-security-policy"));
    assert_eq!(
        header(headers, "content-security-policy-report-only"),
        Some("default-src 'self'; report-uri https://reports.example.com/csp; report-to csp-endpoint")
    );
    assert_eq!(header(headers, "reporting-endpoints"), Some(r#"csp-endpoint="https://reports.example.com/csp""#));
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"), "untouched headers keep their default");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_security_header_value_is_a_listed_startup_problem_not_a_panic() {
    let mut settings = Settings::default();
    settings.security_headers.x_frame_options = "DENY\r\nSet-Cookie: x=1".into();
    settings.security_headers.strict_transport_security = "includeSubDomains".into();
    settings.security_headers.hsts_preload = true;
    let problems = settings.problems();
    assert!(problems.iter().any(|p| p.contains("security_headers.x_frame_options")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("max-age")), "{problems:?}");
    match palisade_api::Application::build(settings).await {
        Err(palisade_api::StartupError::Config(listed)) => assert_eq!(listed, problems),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn edge_settings_are_read_from_environment_variables() {
    let vars = [
        ("PALISADE_SECURITY_HEADERS__X_FRAME_OPTIONS", "SAMEORIGIN"),
        ("PALISADE_SECURITY_HEADERS__REFERRER_POLICY", ""),
        ("PALISADE_SECURITY_HEADERS__HSTS_PRELOAD", "true"),
        ("PALISADE_CORS__ALLOWED_ORIGINS", "https://a.example.com,https://b.example.com"),
        ("PALISADE_CORS__ALLOW_CREDENTIALS", "true"),
        ("PALISADE_CORS__MAX_AGE", "5m"),
        ("PALISADE_CLIENT_IP__TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
        ("PALISADE_RATE_LIMIT__FAILURE_MODE", "deny"),
        ("PALISADE_RATE_LIMIT__REDIS_TIMEOUT", "20ms"),
        ("PALISADE_RATE_LIMIT__POLICIES__ANONYMOUS__RATE", "5"),
        ("PALISADE_RATE_LIMIT__TENANT_OVERRIDES__ACME__AUTHENTICATED__BURST", "500"),
        ("PALISADE_COMPRESSION__MIN_SIZE_BYTES", "2048"),
    ];
    let env = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let settings = Settings::load_from(&env, std::path::Path::new("/nonexistent")).expect("settings load");
    assert_eq!(settings.security_headers.x_frame_options, "SAMEORIGIN");
    assert_eq!(settings.security_headers.referrer_policy, "");
    assert!(settings.security_headers.hsts_preload);
    assert_eq!(settings.cors.allowed_origins, ["https://a.example.com", "https://b.example.com"]);
    assert!(settings.cors.allow_credentials);
    assert_eq!(settings.cors.max_age, Duration::from_secs(300));
    assert_eq!(settings.client_ip.trusted_proxies, ["10.0.0.0/8", "192.168.1.7"]);
    assert_eq!(settings.rate_limit.failure_mode, FailureMode::Deny);
    assert_eq!(settings.rate_limit.redis_timeout, Duration::from_millis(20));
    assert_eq!(settings.rate_limit.policies[ANONYMOUS], Policy { rate: 5, period: Duration::from_secs(1), burst: 200 });
    assert!(settings.rate_limit.policies.contains_key(AUTHENTICATED), "built-in policies stay");
    assert_eq!(
        settings.rate_limit.tenant_overrides["acme"][AUTHENTICATED],
        PolicyChange { burst: Some(500), ..Default::default() }
    );
    assert_eq!(settings.compression.min_size_bytes, 2048);
    assert!(settings.problems().is_empty(), "{:?}", settings.problems());
    let printed = settings.to_redacted_toml();
    assert!(printed.contains("[rate_limit.policies.anonymous]"), "{printed}");
}

// ---------------------------------------------------------------------------------------------
// HSTS and the client's address
// ---------------------------------------------------------------------------------------------

async fn hsts_is_sent_only_for_https_reported_by_a_trusted_proxy(backend: Backend) {
    let hsts =
        |response: &reqwest::Response| header(response.headers(), "strict-transport-security").map(str::to_owned);

    let Some(untrusting) = spawn_app(backend, |_| {}).await else { return };
    let spoofed = untrusting.client.get(untrusting.url("/health")).header("x-forwarded-proto", "https").send();
    assert_eq!(hsts(&spoofed.await.expect("request")), None, "X-Forwarded-Proto from an untrusted peer is ignored");
    untrusting.stop().await;

    let Some(behind_proxy) = spawn_app(backend, |s| {
        s.client_ip.trusted_proxies = vec!["127.0.0.1/32".into()];
        s.security_headers.hsts_preload = true;
    })
    .await
    else {
        return;
    };
    let via_https = behind_proxy.client.get(behind_proxy.url("/health")).header("x-forwarded-proto", "https").send();
    assert_eq!(
        hsts(&via_https.await.expect("request")).as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );
    let via_http = behind_proxy.client.get(behind_proxy.url("/health")).header("x-forwarded-proto", "http").send();
    assert_eq!(hsts(&via_http.await.expect("request")), None);
    assert_eq!(hsts(&behind_proxy.get("/health").await), None, "no header, no HTTPS");
    let error = behind_proxy.client.get(behind_proxy.url("/nope")).header("x-forwarded-proto", "https").send();
    assert!(hsts(&error.await.expect("request")).is_some(), "errors carry HSTS too");
    behind_proxy.stop().await;

    let Some(forced) = spawn_app(backend, |s| s.security_headers.hsts_force = true).await else { return };
    assert_eq!(hsts(&forced.get("/health").await).as_deref(), Some("max-age=31536000; includeSubDomains"));
    forced.stop().await;
}

async fn whoami(ClientIp(ip): ClientIp) -> String {
    ip.to_string()
}

async fn a_spoofed_forwarded_for_from_an_untrusted_peer_shares_the_peers_bucket(backend: Backend) {
    let extra = || Router::<AppState>::new().route("/test/whoami", get(whoami));
    let Some(app) = spawn_app_with(backend, extra(), |s| set_anonymous(s, tiny(3))).await else { return };
    let mut statuses = Vec::new();
    for n in 0..6 {
        let response =
            app.client.get(app.url("/test/whoami")).header("x-forwarded-for", format!("198.51.100.{n}")).send();
        let response = response.await.expect("request");
        statuses.push(response.status());
        if response.status() == StatusCode::OK {
            assert_eq!(response.text().await.expect("text body"), "127.0.0.1", "the spoofed address was believed");
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3, "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    app.stop().await;

    // The control: behind a trusted proxy, the forwarded address is the client and has its own bucket.
    let Some(app) = spawn_app_with(backend, extra(), |s| {
        set_anonymous(s, tiny(3));
        s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    else {
        return;
    };
    for n in 0..6 {
        let response = app
            .client
            .get(app.url("/test/whoami"))
            .header("x-forwarded-for", format!("203.0.113.50, 198.51.100.{n}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.expect("text body"), format!("198.51.100.{n}"));
    }
    let repeated: Vec<StatusCode> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let request = app.client.get(app.url("/test/whoami")).header("x-forwarded-for", "198.51.100.200");
            statuses.push(request.send().await.expect("request").status());
        }
        statuses
    };
    assert_eq!(repeated[3], StatusCode::TOO_MANY_REQUESTS, "{repeated:?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

async fn cors_answers_listed_origins_and_preflights_and_nothing_else(backend: Backend) {
    const APP: &str = "https://app.example.com";
    let Some(app) = spawn_app(backend, |s| {
        s.cors.allowed_origins = vec![APP.into()];
        s.cors.allow_credentials = true;
        set_anonymous(s, tiny(10));
    })
    .await
    else {
        return;
    };
    let cors_headers = |h: &HeaderMap| h.keys().filter(|k| k.as_str().starts_with("access-control-")).count();

    let allowed = app.client.get(app.url("/health")).header("origin", APP).send().await.expect("request");
    let h = allowed.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    let exposed = header(h, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("ratelimit") && exposed.contains("x-request-id"), "{exposed}");
    assert!(all(h, "vary").iter().any(|v| v.contains("origin")), "{:?}", all(h, "vary"));

    let other =
        app.client.get(app.url("/health")).header("origin", "https://evil.example.com").send().await.expect("request");
    assert_eq!(cors_headers(other.headers()), 0, "{:?}", other.headers());
    let same_origin = app.get("/health").await;
    assert_eq!(cors_headers(same_origin.headers()), 0);

    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/todos"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("request");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    assert!(header(h, "access-control-allow-methods").unwrap_or_default().contains("POST"));
    let allowed_headers = header(h, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert_security_headers(h, "preflight");

    let evil_preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/todos"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .expect("request");
    assert_eq!(cors_headers(evil_preflight.headers()), 0, "{:?}", evil_preflight.headers());

    // A 429 must be readable by the browser code that caused it.
    let limited = loop {
        let response = app.client.get(app.url("/nope")).header("origin", APP).send().await.expect("request");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
    };
    assert_eq!(header(limited.headers(), "access-control-allow-origin"), Some(APP));
    app.stop().await;
}

#[test]
fn a_wildcard_origin_with_credentials_is_a_problem_outside_development_only() {
    let mut settings = Settings::default();
    settings.cors.allowed_origins = vec!["*".into()];
    settings.cors.allow_credentials = true;
    assert!(!settings.problems().iter().any(|p| p.starts_with("cors.")), "{:?}", settings.problems());
    settings.environment = Environment::Production;
    let problems = settings.problems();
    assert!(problems.iter().any(|p| p.starts_with("cors.allowed_origins is `*` with")), "{problems:?}");
    settings.client_ip.trusted_proxies = vec!["0.0.0.0/0".into()];
    assert!(settings.problems().iter().any(|p| p.contains("trusts every peer")));
}

// ---------------------------------------------------------------------------------------------
// Rate limiting
// ---------------------------------------------------------------------------------------------

async fn a_burst_from_one_address_gets_429_with_retry_after_and_limit_headers(backend: Backend) {
    let policy = Policy { rate: 1, period: Duration::from_secs(10), burst: 3 };
    let Some(app) = spawn_app(backend, |s| set_anonymous(s, policy)).await else { return };
    let mut limits = Vec::new();
    for _ in 0..3 {
        let response = app.get("/no/such/path").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(header(response.headers(), "ratelimit-policy"), Some(r#""anonymous";q=3;w=30"#));
        limits.push(header(response.headers(), "ratelimit").unwrap_or_default().to_owned());
    }
    assert_eq!(limits, [r#""anonymous";r=2;t=10"#, r#""anonymous";r=1;t=20"#, r#""anonymous";r=0;t=30"#]);

    let refused = app.get("/no/such/path").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = refused.headers().clone();
    assert_eq!(header(&h, "content-type"), Some("application/problem+json"));
    let retry_after: u64 = header(&h, "retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!((9..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&h, "ratelimit-policy"), Some(r#""anonymous";q=3;w=30"#));
    assert_eq!(header(&h, "ratelimit"), Some(r#""anonymous";r=0;t=30"#));
    assert!(h.contains_key("x-request-id"));
    let problem: Value = refused.json().await.expect("json body");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["type"], "/problems/rate-limited");
    assert_eq!(problem["policy"], "anonymous");
    assert!(problem["request_id"].is_string());

    assert_eq!(decisions(&app, ANONYMOUS, "allowed").await, 3);
    assert_eq!(decisions(&app, ANONYMOUS, "limited").await, 1);
    assert_eq!(decisions(&app, ANONYMOUS, "bypassed").await, 0);
    app.stop().await;
}

async fn the_default_anonymous_limit_refuses_a_burst_of_a_thousand_requests(backend: Backend) {
    use futures::StreamExt as _;
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let started = Instant::now();
    let statuses: Vec<StatusCode> = futures::stream::iter(0..1000)
        .map(|_| async { app.client.get(app.url("/no/such/path")).send().await.expect("request").status() })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = statuses.iter().filter(|s| **s == StatusCode::NOT_FOUND).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(allowed + limited, 1000);
    // Burst 200, then 100 per second. On a loaded machine a Redis decision can miss the limiter's
    // 50ms timeout; those fall back to this instance's own buckets, a second budget.
    let bypassed = decisions(&app, ANONYMOUS, "bypassed").await;
    let budgets = if bypassed > 0 { 2.0 } else { 1.0 };
    let ceiling = budgets * (200.0 + 100.0 * elapsed) + 1.0;
    assert!(
        limited > 0 && (allowed as f64) <= ceiling,
        "{allowed} allowed, {limited} limited, {bypassed} bypassed in {elapsed:.2}s"
    );
    app.stop().await;
}

async fn probes_and_metrics_are_never_rate_limited(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| set_anonymous(s, tiny(1))).await else { return };
    assert_eq!(app.get("/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/nope").await.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..30 {
        for path in ["/health", "/ready", "/metrics"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(!response.headers().contains_key("ratelimit"), "{path} reports a limit");
        }
    }
    app.stop().await;
}

/// What the auth code does once it knows the caller (here the tenant comes from a header).
async fn tenant_limited(State(limiter): State<RateLimiter>, request: Request) -> Result<&'static str, Problem> {
    let tenant = request.headers().get("x-test-tenant").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
    rate_limit::enforce(&limiter, request.extensions(), AUTHENTICATED, &tenant, "user-1").await?;
    Ok("ok")
}

async fn the_auth_code_limits_per_tenant_and_subject_with_tenant_overrides(backend: Backend) {
    let extra: Router<AppState> = Router::new().route("/test/tenant-limited", get(tenant_limited));
    let Some(app) = spawn_app_with(backend, extra, |s| {
        set_anonymous(s, tiny(100));
        s.rate_limit.policies.insert(AUTHENTICATED.into(), tiny(2));
        s.rate_limit
            .tenant_overrides
            .entry("big".into())
            .or_default()
            .insert(AUTHENTICATED.into(), PolicyChange { burst: Some(5), ..Default::default() });
    })
    .await
    else {
        return;
    };
    let call =
        |tenant: &'static str| app.client.get(app.url("/test/tenant-limited")).header("x-test-tenant", tenant).send();
    let first = call("small").await.expect("request");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        all(first.headers(), "ratelimit"),
        [r#""anonymous";r=99;t=60"#, r#""authenticated";r=1;t=60"#],
        "both policies report"
    );
    assert_eq!(call("small").await.expect("request").status(), StatusCode::OK);
    let refused = call("small").await.expect("request");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(all(refused.headers(), "ratelimit-policy").len(), 2, "{:?}", refused.headers());
    assert_eq!(refused.json::<Value>().await.expect("json body")["policy"], "authenticated");
    for n in 0..5 {
        assert_eq!(call("big").await.expect("request").status(), StatusCode::OK, "request {n} of tenant `big`");
    }
    assert_eq!(call("big").await.expect("request").status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(decisions(&app, AUTHENTICATED, "limited").await, 2);
    app.stop().await;
}

/// Three instances with one key prefix on one Redis draw on one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_share_one_budget() {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let prefix = crate::support::unique_name("palisade-test");
    let mut apps = Vec::new();
    for _ in 0..3 {
        let Some(app) = spawn_app(Backend::Sqlite, |s| {
            s.redis.url = Some(redis_url.clone().into());
            s.redis.key_prefix = prefix.clone();
            set_anonymous(s, tiny(5));
        })
        .await
        else {
            return;
        };
        apps.push(app);
    }
    let mut allowed = 0;
    for n in 0..30 {
        let app = &apps[n % 3];
        let status = app.get("/nope").await.status();
        assert!(matches!(status, StatusCode::NOT_FOUND | StatusCode::TOO_MANY_REQUESTS), "{status}");
        allowed += usize::from(status == StatusCode::NOT_FOUND);
    }
    // Burst 5; at one per minute at most one more can have refilled during the test.
    assert!((5..=6).contains(&allowed), "{allowed} of 30 allowed across three instances");
    for app in apps {
        assert_eq!(decisions(&app, ANONYMOUS, "bypassed").await, 0);
        app.stop().await;
    }
}

/// A TCP proxy that, once stalled, keeps every connection open but forwards nothing, and accepts
/// new ones into the same silence: the slow-Redis case, where only a timeout helps.
struct StallingProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let stalled = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn({
            let (stalled, generation) = (stalled.clone(), generation.clone());
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { continue };
                    if stalled.load(Ordering::SeqCst) {
                        held.lock().expect("held connections").push(inbound);
                        continue;
                    }
                    let (target, held) = (target.clone(), held.clone());
                    let mut stall_signal = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = stall_signal.changed() => held.lock().expect("held connections").push(inbound),
                        }
                    });
                }
            }
        });
        Self { addr, stalled, generation, task }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn url(&self, redis_url: &str) -> String {
        let mut url = url::Url::parse(redis_url).expect("redis url");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.to_string()
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `count` requests one after another; returns the statuses and the slowest request's time.
async fn timed_requests(app: &TestApp, count: usize) -> (Vec<StatusCode>, Duration) {
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..count {
        let started = Instant::now();
        let status = app.get("/nope").await.status();
        slowest = slowest.max(started.elapsed());
        statuses.push(status);
    }
    (statuses, slowest)
}

async fn app_behind(redis_url: String, mode: FailureMode) -> Option<TestApp> {
    spawn_app(Backend::Sqlite, |s| {
        s.redis.url = Some(redis_url.into());
        s.redis.key_prefix = crate::support::unique_name("palisade-test");
        s.rate_limit.failure_mode = mode;
        s.rate_limit.breaker_failures = 3;
        s.rate_limit.breaker_cooldown = Duration::from_millis(500);
        set_anonymous(s, tiny(100));
        // Short, as in production (50ms), with some room for a loaded CI machine before the outage.
        s.rate_limit.redis_timeout = Duration::from_millis(250);
    })
    .await
}

/// A generous behavioural bound: the limiter's own timeout is 250ms here (50ms by default).
const MAX_WAIT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_is_cut_requests_keep_flowing_on_the_fallback_and_shared_limits_resume_after() {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let proxy = Proxy::start(crate::support::proxy::host_port(&redis_url)).await;
    let Some(app) = app_behind(crate::support::proxy::through(&redis_url, &proxy), FailureMode::Fallback).await else {
        return;
    };
    // The Redis connection is made lazily: wait until a decision is Redis's before counting.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bypassed = decisions(&app, ANONYMOUS, "bypassed").await;
        app.get("/nope").await;
        if decisions(&app, ANONYMOUS, "bypassed").await == bypassed {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never started deciding");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let allowed = decisions(&app, ANONYMOUS, "allowed").await;
    let bypassed = decisions(&app, ANONYMOUS, "bypassed").await;
    let (before, _) = timed_requests(&app, 5).await;
    assert!(before.iter().all(|s| *s == StatusCode::NOT_FOUND), "{before:?}");
    assert_eq!(decisions(&app, ANONYMOUS, "allowed").await, allowed + 5, "decided by Redis before the cut");

    proxy.cut().await;
    let (during, slowest) = timed_requests(&app, 40).await;
    assert!(during.iter().all(|s| *s == StatusCode::NOT_FOUND), "{during:?}");
    assert!(slowest < MAX_WAIT, "a request waited {slowest:?} for a Redis that is gone");
    assert_eq!(decisions(&app, ANONYMOUS, "bypassed").await, bypassed + 40);
    let allowed = allowed + 5;
    assert_eq!(decisions(&app, ANONYMOUS, "allowed").await, allowed);
    // The in-process fallback still limits: 100 at once, 40 used.
    let (more, _) = timed_requests(&app, 70).await;
    assert!(more.contains(&StatusCode::TOO_MANY_REQUESTS), "the fallback did not limit");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while decisions(&app, ANONYMOUS, "allowed").await == allowed && decisions(&app, ANONYMOUS, "limited").await == 0 {
        assert!(Instant::now() < deadline, "Redis decisions never resumed");
        app.get("/nope").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_stalls_no_request_waits_longer_than_the_limiter_timeout() {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let proxy = StallingProxy::start(crate::support::proxy::host_port(&redis_url)).await;
    let Some(app) = app_behind(proxy.url(&redis_url), FailureMode::Fallback).await else { return };
    let (before, _) = timed_requests(&app, 3).await;
    assert!(before.iter().all(|s| *s == StatusCode::NOT_FOUND));
    assert_eq!(decisions(&app, ANONYMOUS, "allowed").await, 3);

    proxy.stall();
    let started = Instant::now();
    let (during, slowest) = timed_requests(&app, 30).await;
    assert!(during.iter().all(|s| *s == StatusCode::NOT_FOUND), "{during:?}");
    assert!(slowest < MAX_WAIT, "a request waited {slowest:?} on a silent Redis");
    // Three timeouts open the circuit; after that only a probe per cooldown pays one.
    assert!(started.elapsed() < Duration::from_secs(5), "30 requests took {:?}", started.elapsed());
    assert_eq!(decisions(&app, ANONYMOUS, "bypassed").await, 30);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_and_deny_failure_modes_pass_everything_or_refuse_with_503() {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let proxy = Proxy::start(crate::support::proxy::host_port(&redis_url)).await;
    let through = crate::support::proxy::through(&redis_url, &proxy);
    let Some(allow) = app_behind(through.clone(), FailureMode::Allow).await else { return };
    let Some(deny) = app_behind(through, FailureMode::Deny).await else { return };
    for app in [&allow, &deny] {
        assert_eq!(app.get("/nope").await.status(), StatusCode::NOT_FOUND);
    }
    proxy.cut().await;

    let (statuses, slowest) = timed_requests(&allow, 150).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NOT_FOUND), "allow mode refused a request");
    assert!(slowest < MAX_WAIT, "{slowest:?}");
    assert!(!allow.get("/nope").await.headers().contains_key("ratelimit"), "nothing was counted");
    assert_eq!(decisions(&allow, ANONYMOUS, "bypassed").await, 151);

    let (statuses, slowest) = timed_requests(&deny, 10).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    assert!(slowest < MAX_WAIT, "{slowest:?}");
    let refused = deny.get("/nope").await;
    assert!(header(refused.headers(), "retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(refused.json::<Value>().await.expect("json body")["type"], "/problems/rate-limiter-unavailable");
    assert_eq!(deny.get("/health").await.status(), StatusCode::OK, "probes do not depend on the limiter");
    allow.stop().await;
    deny.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[derive(serde::Deserialize, validator::Validate)]
struct Echo {
    #[validate(length(min = 1))]
    title: String,
}

async fn a_body_over_the_limit_gets_413_and_a_non_json_body_gets_415(backend: Backend) {
    let extra: Router<AppState> = Router::new()
        .route("/test/upload", post(|body: Bytes| async move { body.len().to_string() }))
        .route("/test/echo", post(|ValidatedJson(echo): ValidatedJson<Echo>| async move { echo.title }));
    let Some(app) = spawn_app_with(backend, extra, |s| s.server.body_limit_bytes = 1024).await else { return };

    let fits = app.client.post(app.url("/test/upload")).body(vec![b'x'; 1024]).send().await.expect("request");
    assert_eq!(fits.status(), StatusCode::OK);
    let declared = app.client.post(app.url("/test/upload")).body(vec![b'x'; 4096]).send().await.expect("request");
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header(declared.headers(), "content-type"), Some("application/problem+json"));
    assert_security_headers(declared.headers(), "413");
    assert_eq!(declared.json::<Value>().await.expect("json body")["status"], 413);

    // Without a Content-Length the limit applies while the body is read.
    let mut chunked = b"POST /test/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
                        Connection: close\r\n\r\n"
        .to_vec();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("200\r\n{}\r\n", "x".repeat(512)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (received, _) = raw_exchange(app.addr, &chunked, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 413"), "{received}");
    assert!(received.to_ascii_lowercase().contains("content-type: application/problem+json"), "{received}");

    let text = app.client.post(app.url("/test/echo")).header("content-type", "text/plain").body(r#"{"title":"a"}"#);
    let text = text.send().await.expect("request");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(header(text.headers(), "content-type"), Some("application/problem+json"));
    let json =
        app.client.post(app.url("/test/echo")).json(&serde_json::json!({"title": "a"})).send().await.expect("request");
    assert_eq!(json.status(), StatusCode::OK);
    app.stop().await;
}

async fn a_request_running_past_the_timeout_gets_a_problem(backend: Backend) {
    let extra: Router<AppState> = Router::new().route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "too late"
        }),
    );
    let Some(app) = spawn_app_with(backend, extra, |s| s.server.request_timeout = Duration::from_millis(300)).await
    else {
        return;
    };
    let started = Instant::now();
    let response = app.get("/test/slow").await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(response.headers(), "content-type"), Some("application/problem+json"));
    assert_security_headers(response.headers(), "timeout");
    let problem: Value = response.json().await.expect("json body");
    assert_eq!(problem["status"], 503);
    assert!(problem["request_id"].is_string());
    app.stop().await;
}

async fn a_slowloris_connection_is_closed_after_the_header_read_timeout(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.server.header_read_timeout = Duration::from_millis(500)).await else {
        return;
    };
    let partial = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: a";
    let (received, closed) = raw_exchange(app.addr, partial, Duration::from_secs(10)).await;
    let closed = closed.expect("the server kept a half-sent request open for 10s");
    assert!(closed >= Duration::from_millis(400) && closed < Duration::from_secs(5), "closed after {closed:?}");
    assert!(received.is_empty() || received.starts_with("HTTP/1.1 408"), "{received}");
    // Meanwhile, well-behaved clients are served.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    app.stop().await;
}

async fn an_oversized_request_head_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.server.max_header_bytes = 8 * 1024).await else { return };
    let big = format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let (received, closed) = raw_exchange(app.addr, big.as_bytes(), Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the connection stayed open");
    assert!(received.is_empty() || received.starts_with("HTTP/1.1 431"), "{received}");
    let fine =
        format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Ok: {}\r\nConnection: close\r\n\r\n", "a".repeat(1024));
    let (received, _) = raw_exchange(app.addr, fine.as_bytes(), Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    app.stop().await;
}

async fn large_responses_are_compressed_and_small_ones_are_not(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    for (encoding, magic) in [("gzip", &[0x1f_u8, 0x8b][..]), ("br", &[][..])] {
        let response = app
            .client
            .get(app.url("/api/v1/openapi.json"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(response.headers(), "content-encoding"), Some(encoding));
        assert_security_headers(response.headers(), encoding);
        let body = response.bytes().await.expect("body");
        assert!(body.starts_with(magic));
        let plain = app.get("/api/v1/openapi.json").await.bytes().await.expect("body");
        assert!(body.len() < plain.len() / 2, "{encoding}: {} of {} bytes", body.len(), plain.len());
    }
    let small = app.client.get(app.url("/health")).header("accept-encoding", "gzip, br").send().await.expect("request");
    assert_eq!(header(small.headers(), "content-encoding"), None, "a 15-byte body is not worth compressing");
    // Without Accept-Encoding the compression layer is skipped, but caches must still learn that
    // the representation varies by it.
    let plain = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (received, _) = raw_exchange(app.addr, plain, Duration::from_secs(10)).await;
    let head = received.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding\r\n"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    app.stop().await;
}
