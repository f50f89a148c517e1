//! Observability as operators rely on it: JSON logs that carry the request span and never a secret,
//! OpenTelemetry traces exported over OTLP/HTTP that continue the caller's trace, Sentry events for
//! panics and 5xx responses that are tagged and scrubbed, and Prometheus metrics whose series stay
//! bounded and cover every name the alert rules and dashboards query.
//!
//! Logs and traces are process-wide (one subscriber, one exporter), so those tests run the real
//! binary and read its output; Sentry is per application, so those tests run in-process with extra
//! routes that panic or fail. Local HTTP servers stand in for the OTLP collector and for Sentry.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{Backend, REDIS_VAR, TestDatabase, service_url, spawn_app, unique_name};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::mpsc,
    task::JoinHandle,
};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

// Distinctive credentials: none of them may ever appear in logs or in a Sentry envelope.
const BEARER_SECRET: &str = "bearer-7c1f0e4b2a9d5e83";
const COOKIE_SECRET: &str = "cookie-5d2e8a0f6b3c9e14";
const API_KEY_SECRET: &str = "apikey-9b4f1c7e2d8a6f05";
const QUERY_SECRET: &str = "query-3e6a9d0c5b2f8e71";
const DB_PASSWORD_SECRET: &str = "dbpass-8f2c6a1e9d4b7c30";
const SENTRY_KEY_SECRET: &str = "sentrysecret-1a7e4c9f2b6d";
const OTLP_HEADER_SECRET: &str = "otlpheader-6c0b3f8e5a2d9e47";

on_both_backends!(
    logs_are_json_lines_carrying_the_request_span_and_never_a_credential,
    an_api_keys_secret_never_reaches_the_logs,
    a_thousand_random_paths_add_no_metric_series,
    every_metric_the_alert_rules_and_dashboards_query_is_exported,
);

// ------------------------------------------------------------------------------------------ logs

async fn logs_are_json_lines_carrying_the_request_span_and_never_a_credential(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let Some(mut env) = server_env(backend, &database, true) else { return };
    let closed = closed_port().await;
    env.extend(vars(&[
        ("PALISADE_LOG__FORMAT", "json"),
        ("RUST_LOG", "trace"),
        ("SENTRY_DSN", &format!("http://public:{SENTRY_KEY_SECRET}@{closed}/1")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_HEADERS", &format!("authorization=Bearer%20{OTLP_HEADER_SECRET}")),
    ]));
    let server = Server::start(env).await;
    let request_id = unique_name("obs-log");
    for path in ["/health", "/api/v1/auth/me", &format!("/no/such/path?access_token={QUERY_SECRET}")] {
        let response = with_credentials(server.client.get(server.url(path)))
            .header("x-request-id", &request_id)
            .send()
            .await
            .expect("request");
        assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
    }
    let output = server.stop().await;

    let everything = format!("{}\n{}", output.stdout.join("\n"), output.stderr.join("\n"));
    for secret in [
        BEARER_SECRET,
        COOKIE_SECRET,
        API_KEY_SECRET,
        QUERY_SECRET,
        DB_PASSWORD_SECRET,
        SENTRY_KEY_SECRET,
        OTLP_HEADER_SECRET,
    ] {
        assert!(!everything.contains(secret), "{secret} leaked into the logs");
    }
    let lines: Vec<Value> = output
        .stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}")))
        .collect();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request finished" && line["span"]["request_id"] == request_id.as_str())
        .collect();
    assert_eq!(finished.len(), 2, "one `request finished` line per request, none for the probe: {finished:#?}");
    assert!(!finished.iter().any(|line| line["span"]["route"] == "/health"), "probes are not access-logged");
    let me = finished.iter().find(|line| line["span"]["route"] == "/api/v1/auth/me").expect("the /auth/me line");
    assert_eq!(me["span"]["name"], "request");
    assert_eq!(me["span"]["method"], "GET");
    assert_eq!(me["span"]["status"], 401);
    assert!(me["span"]["latency_ms"].is_number(), "{me}");
    assert!(me["spans"].as_array().is_some_and(|spans| !spans.is_empty()), "{me}");
    let trace_id = me["span"]["trace_id"].as_str().unwrap_or_default();
    assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "{me}");
    let unmatched = finished.iter().find(|line| line["span"]["route"] == "unmatched").expect("the 404 line");
    assert_eq!(unmatched["span"]["status"], 404);
}

/// A key created, used, refused, rotated and revoked with every log level on: its secret part
/// appears in no log line (only its id and prefix may).
async fn an_api_keys_secret_never_reaches_the_logs(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let Some(mut env) = server_env(backend, &database, false) else { return };
    env.extend(vars(&[("PALISADE_LOG__FORMAT", "json"), ("RUST_LOG", "trace")]));
    let server = Server::start(env).await;
    let request = palisade_auth::DevTokenRequest {
        subject: "admin".into(),
        tenant: Some("demo".into()),
        scopes: vec!["tenant:admin".into(), "api_keys:write".into(), "todos:read".into()],
        ttl: Duration::from_secs(600),
    };
    let admin = palisade_auth::mint_dev_token(&palisade_auth::AuthConfig::default(), true, &request).expect("token");
    let created: Value = server
        .client
        .post(server.url("/api/v1/api-keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "logged", "scopes": ["todos:read"]}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let key = created["key"].as_str().expect("a key").to_owned();
    let id = created["id"].as_str().expect("an id").to_owned();
    let use_key = |key: String| server.client.get(server.url("/api/v1/todos")).bearer_auth(key).send();
    assert!(use_key(key.clone()).await.expect("use").status().is_success());
    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    assert_eq!(use_key(String::from_utf8(typo).expect("ascii")).await.expect("typo").status(), 401);
    let rotate = server.url(&format!("/api/v1/api-keys/{id}/rotate"));
    let rotated: Value =
        server.client.post(rotate).bearer_auth(&admin).send().await.expect("rotate").json().await.expect("json");
    let new_key = rotated["key"].as_str().expect("a new key").to_owned();
    let revoke = server.url(&format!("/api/v1/api-keys/{id}"));
    assert!(server.client.delete(revoke).bearer_auth(&admin).send().await.expect("revoke").status().is_success());
    assert_eq!(use_key(new_key.clone()).await.expect("revoked").status(), 401);
    let output = server.stop().await;
    let everything = format!("{}\n{}", output.stdout.join("\n"), output.stderr.join("\n"));
    assert!(everything.contains("request finished"), "the server logged nothing");
    for secret in [&key, &new_key] {
        assert!(!everything.contains(&secret[17..]), "an API key's secret leaked into the logs");
    }
}

/// `[log]` decides which requests get an access log line: probes only when asked, successful
/// requests at the sampling rate, every 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_samples_requests_and_leaves_out_probes_as_configured() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let Some(mut env) = server_env(Backend::Sqlite, &database, false) else { return };
    env.extend(vars(&[
        ("PALISADE_LOG__FORMAT", "json"),
        ("PALISADE_LOG__REQUEST_SAMPLE_RATE", "0.25"),
        ("PALISADE_LOG__ACCESS_LOG_PROBES", "true"),
    ]));
    let server = Server::start(env).await;
    for _ in 0..8 {
        let response = server.client.get(server.url("/api/v1/openapi.json")).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    for _ in 0..4 {
        let response = server.client.get(server.url("/health")).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let output = server.stop().await;
    let routes: Vec<String> = output
        .stdout
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "request finished")
        .map(|line| line["span"]["route"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(routes.len(), 3, "a quarter of 12 requests: {routes:?}");
    assert!(routes.iter().any(|route| route == "/health"), "probes are logged when asked: {routes:?}");
}

/// A tenant-scoped request's log line names its tenant (uuid) and user (subject): ids only. So
/// does the line of a request the caller's own rate limit refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_request_is_logged_with_its_tenant_and_user_ids_even_when_refused() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let Some(mut env) = server_env(Backend::Sqlite, &database, false) else { return };
    env.extend(vars(&[
        ("PALISADE_LOG__FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("PALISADE_RATE_LIMIT__ENABLED", "true"),
        ("PALISADE_RATE_LIMIT__POLICIES__AUTHENTICATED__RATE", "1"),
        ("PALISADE_RATE_LIMIT__POLICIES__AUTHENTICATED__PERIOD", "1h"),
        ("PALISADE_RATE_LIMIT__POLICIES__AUTHENTICATED__BURST", "1"),
    ]));
    let server = Server::start(env).await;
    let request = palisade_auth::DevTokenRequest {
        subject: "user-7f3e".to_owned(),
        tenant: Some("demo".to_owned()),
        scopes: vec!["todos:read".to_owned()],
        ttl: Duration::from_secs(600),
    };
    let token = palisade_auth::mint_dev_token(&palisade_auth::AuthConfig::default(), true, &request).expect("token");
    let list_todos = async |request_id: &str| {
        let request = server.client.get(server.url("/api/v1/todos")).bearer_auth(&token);
        request.header("x-request-id", request_id).send().await.expect("request").status()
    };
    let (request_id, refused_id) = (unique_name("obs-tenant"), unique_name("obs-refused"));
    assert_eq!(list_todos(&request_id).await, StatusCode::OK);
    assert_eq!(
        list_todos(&refused_id).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the caller's one request an hour is spent"
    );
    let output = server.stop().await;
    let lines: Vec<Value> = output.stdout.iter().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let line_of = |id: &str| {
        lines
            .iter()
            .find(|line| line["message"] == "request finished" && line["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no log line for {id}"))
            .clone()
    };
    let (line, refused_line) = (line_of(&request_id), line_of(&refused_id));
    assert_eq!(line["span"]["user_id"], "user-7f3e", "{line}");
    let tenant_id = line["span"]["tenant_id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(tenant_id).is_ok(), "tenant_id must be the tenant's uuid: {line}");
    assert_eq!(refused_line["span"]["status"], 429, "{refused_line}");
    assert_eq!(refused_line["span"]["user_id"], "user-7f3e", "{refused_line}");
    assert_eq!(refused_line["span"]["tenant_id"], tenant_id, "{refused_line}");
    assert!(!output.stdout.join("\n").contains(&token), "the token must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_otlp_endpoint_logs_are_pretty_in_development_and_no_trace_context_is_read() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let Some(mut env) = server_env(Backend::Sqlite, &database, false) else { return };
    env.extend(vars(&[("RUST_LOG", "info")]));
    let server = Server::start(env).await;
    let request_id = unique_name("obs-pretty");
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = server
        .client
        .get(server.url("/api/v1/openapi.json"))
        .header("x-request-id", &request_id)
        .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let output = server.stop().await;
    let line = output.stdout.iter().find(|line| line.contains(&request_id)).expect("a log line naming the request");
    assert!(serde_json::from_str::<Value>(line).is_err(), "development logs are for people: {line}");
    assert!(line.contains(r#"route="/api/v1/openapi.json""#) && line.contains("status=200"), "{line}");
    let everything = output.stdout.join("\n");
    assert!(!everything.contains("trace_id") && !everything.contains(caller_trace), "{everything}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_is_never_printed_even_when_startup_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = closed_port().await;
    let env = vars(&[
        ("PALISADE_SERVER__ADDR", "127.0.0.1:0"),
        ("PALISADE_LOG__FORMAT", "json"),
        ("RUST_LOG", "trace"),
        ("PALISADE_DATABASE__ACQUIRE_TIMEOUT", "1s"),
        ("DATABASE_URL", &format!("postgres://palisade:{DB_PASSWORD_SECRET}@{closed}/palisade")),
    ]);
    let mut process = Process::spawn(env, dir.path());
    let listening = tokio::time::timeout(Duration::from_secs(60), process.addresses.recv()).await;
    if let Ok(Some(_)) = listening {
        // PostgreSQL pools connect lazily: a server that started anyway is stopped like any other.
        process.terminate();
    }
    let output = process.wait().await;
    let everything = format!("{}\n{}", output.stdout.join("\n"), output.stderr.join("\n"));
    assert!(!everything.contains(DB_PASSWORD_SECRET), "the database password leaked: {everything}");
    // Still explained: a line says the database is unreachable, with the error that showed it.
    let explained = everything.lines().any(|line| {
        (line.contains("database unreachable at startup") || line.contains("cannot connect to the database"))
            && (line.contains("\"error\":\"") || line.contains("Error:"))
    });
    assert!(explained, "no line explains that the database is unreachable: {everything}");
}

// ---------------------------------------------------------------------------------- OpenTelemetry

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value},
        trace::v1::{Span, span::SpanKind},
    };
    use prost::Message;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_spans_reach_the_otlp_collector_at_shutdown_and_continue_the_callers_trace() {
        let collector = Recorder::start().await;
        let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
        let Some(mut env) = server_env(Backend::Sqlite, &database, true) else { return };
        env.extend(vars(&[
            ("PALISADE_LOG__FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{}", collector.addr)),
            // Nothing is exported on a timer during the test: only the flush at shutdown can deliver.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ]));
        let server = Server::start(env).await;
        let (caller_trace, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        let joined = unique_name("obs-joined");
        let fresh = unique_name("obs-fresh");
        let response = server
            .client
            .get(server.url("/api/v1/openapi.json"))
            .header("x-request-id", &joined)
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let response =
            server.client.get(server.url("/api/v1/auth/me")).header("x-request-id", &fresh).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let output = server.stop().await;

        let exports = export_requests(&collector);
        assert!(!exports.is_empty(), "no OTLP export arrived: the spans were not flushed at shutdown");
        let resource = exports[0].resource_spans[0].resource.clone().unwrap_or_default();
        assert_eq!(string_attribute(&resource.attributes, "service.name").as_deref(), Some("palisade"));
        assert_eq!(
            string_attribute(&resource.attributes, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            string_attribute(&resource.attributes, "deployment.environment.name").as_deref(),
            Some("development")
        );

        let spans = spans(&exports);
        let span = spans.iter().find(|s| request_id_of(s).as_deref() == Some(joined.as_str())).expect("the span");
        assert_eq!(hex(&span.trace_id), caller_trace, "the caller's trace is continued");
        assert_eq!(hex(&span.parent_span_id), caller_span, "the caller's span is the parent");
        assert_eq!(span.name, "GET /api/v1/openapi.json");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(string_attribute(&span.attributes, "route").as_deref(), Some("/api/v1/openapi.json"));
        assert_eq!(int_attribute(&span.attributes, "http.response.status_code"), Some(200));

        let own =
            spans.iter().find(|s| request_id_of(s).as_deref() == Some(fresh.as_str())).expect("the /auth/me span");
        assert_ne!(hex(&own.trace_id), caller_trace);
        assert!(own.parent_span_id.is_empty(), "a request without traceparent starts a trace");

        let logged = output
            .stdout
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "request finished" && line["span"]["request_id"] == joined.as_str())
            .expect("the request's log line");
        assert_eq!(logged["span"]["trace_id"], caller_trace, "logs and traces share the trace id");
    }

    /// The JWKS fetch an unknown `kid` triggers during a request is part of that request's trace:
    /// the provider receives a `traceparent` carrying the caller's trace id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_jwks_fetch_carries_the_callers_trace_context_to_the_provider() {
        let collector = Recorder::start().await;
        let provider = TraceparentRecorder::start().await;
        let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
        let Some(mut env) = server_env(Backend::Sqlite, &database, false) else { return };
        let issuer = format!("http://{}", provider.addr);
        env.extend(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{}", collector.addr)),
            ("PALISADE_AUTH__ISSUER", &issuer),
            ("PALISADE_AUTH__AUDIENCE", "palisade"),
            ("PALISADE_AUTH__JWKS_UNKNOWN_KID_REFETCHES_PER_MINUTE", "60"),
        ]));
        let server = Server::start(env).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        // Well-formed, signed by no one, naming a key the provider does not have: a refetch.
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vLXN1Y2gta2V5IiwidHlwIjoiSldUIn0.\
                     eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl";
        let response = server
            .client
            .get(server.url("/api/v1/auth/me"))
            .bearer_auth(token)
            .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        server.stop().await;
        let seen = provider.traceparents();
        assert!(seen.len() >= 2, "expected the startup fetch and the refetch, got {seen:?}");
        assert!(
            seen.iter().flatten().any(|tp| tp.split('-').nth(1) == Some(caller_trace)),
            "no JWKS fetch carried the caller's trace: {seen:?}"
        );
    }

    /// A stand-in OIDC provider recording the `traceparent` of every JWKS fetch.
    struct TraceparentRecorder {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Option<String>>>>,
        _task: JoinHandle<()>,
    }

    impl TraceparentRecorder {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            let issuer = format!("http://{addr}");
            let app = axum::Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    axum::routing::get(move || {
                        let issuer = issuer.clone();
                        async move {
                            axum::Json(serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                        }
                    }),
                )
                .route(
                    "/jwks",
                    axum::routing::get(move |headers: axum::http::HeaderMap| {
                        let record = record.clone();
                        async move {
                            let traceparent =
                                headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
                            record.lock().unwrap().push(traceparent);
                            axum::Json(serde_json::json!({"keys": []}))
                        }
                    }),
                );
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self { addr, seen, _task: task }
        }

        fn traceparents(&self) -> Vec<Option<String>> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_sampling_ratio_of_zero_only_traces_the_caller_sampled_are_exported() {
        let collector = Recorder::start().await;
        let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
        let Some(mut env) = server_env(Backend::Sqlite, &database, true) else { return };
        env.extend(vars(&[
            ("RUST_LOG", "warn,palisade_api=info"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{}/", collector.addr)),
            ("PALISADE_TELEMETRY__SAMPLING_RATIO", "0"),
        ]));
        let server = Server::start(env).await;
        let sampled = "11111111111111111111111111111111";
        let unsampled = "22222222222222222222222222222222";
        let anonymous = unique_name("obs-unsampled");
        for (traceparent, request_id) in [
            (Some(format!("00-{sampled}-1111111111111111-01")), unique_name("obs-sampled")),
            (Some(format!("00-{unsampled}-2222222222222222-00")), unique_name("obs-declined")),
            (None, anonymous.clone()),
        ] {
            let mut request = server.client.get(server.url("/api/v1/openapi.json")).header("x-request-id", request_id);
            if let Some(traceparent) = traceparent {
                request = request.header("traceparent", traceparent);
            }
            assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
        }
        server.stop().await;

        let traces: Vec<String> = spans(&export_requests(&collector)).iter().map(|s| hex(&s.trace_id)).collect();
        assert!(traces.contains(&sampled.to_owned()), "the caller sampled this trace: {traces:?}");
        assert!(!traces.contains(&unsampled.to_owned()), "the caller declined this trace: {traces:?}");
        assert_eq!(traces.len(), 1, "a new trace is not sampled at ratio 0: {traces:?}");
    }

    fn export_requests(collector: &Recorder) -> Vec<ExportTraceServiceRequest> {
        collector
            .bodies("/v1/traces")
            .iter()
            .map(|body| ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf body"))
            .collect()
    }

    fn spans(exports: &[ExportTraceServiceRequest]) -> Vec<Span> {
        exports
            .iter()
            .flat_map(|export| &export.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    fn request_id_of(span: &Span) -> Option<String> {
        string_attribute(&span.attributes, "request_id")
    }

    fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes.iter().find(|kv| kv.key == key)?.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
        match value(attributes, key)? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
        match value(attributes, key)? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

// ----------------------------------------------------------------------------------------- Sentry

#[cfg(feature = "sentry")]
mod sentry {
    use std::{
        collections::HashMap,
        sync::Once,
        time::{Duration, Instant},
    };

    use axum::{Router, http::StatusCode as AxumStatus, routing::get};
    use palisade_api::AppState;

    use super::*;
    use crate::support::spawn_app_with;

    on_both_backends!(
        a_panic_and_a_5xx_reach_sentry_tagged_with_a_stack_trace_and_without_credentials,
        an_unreachable_sentry_never_slows_or_fails_requests,
        client_addresses_and_bodies_reach_sentry_only_as_configured,
    );

    /// Each client-address header a proxy or CDN may set, with a value found nowhere else.
    const CLIENT_ADDRESSES: [(&str, &str); 6] = [
        ("x-forwarded-for", "203.0.113.71"),
        ("x-real-ip", "203.0.113.72"),
        ("forwarded", "for=203.0.113.73;proto=https"),
        ("true-client-ip", "203.0.113.74"),
        ("cf-connecting-ip", "203.0.113.75"),
        ("x-client-ip", "203.0.113.76"),
    ];
    const BODY_SECRET: &str = "body-4a8e2c6f0b1d9e37";

    fn failing_routes() -> Router<AppState> {
        Router::new()
            .route(
                "/test/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("the handler gave up");
                    }
                    "unreachable"
                }),
            )
            .route("/test/fail", get(fail).post(fail))
            .route(
                "/test/logged",
                get(|| async {
                    tracing::error!("the ledger could not be written");
                    AxumStatus::INTERNAL_SERVER_ERROR
                }),
            )
    }

    async fn fail() -> (AxumStatus, &'static str) {
        // What the auth and tenancy extractors do once they know who is calling.
        tracing::Span::current().record("tenant_id", "tenant-0f3a");
        tracing::Span::current().record("user_id", "user-42");
        (AxumStatus::INTERNAL_SERVER_ERROR, "connection to 10.0.0.3 refused")
    }

    /// Sentry's tags for tenant and user come from the request span through the global subscriber,
    /// which the binary installs at startup; in-process tests install the same one once.
    fn install_telemetry() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            use palisade_ops::telemetry::{self, LogConfig, LogFormat, ServiceInfo, TelemetryConfig, TelemetryOptions};
            let service =
                ServiceInfo { name: "palisade".into(), version: "test".into(), environment: "development".into() };
            let guard = telemetry::init(&TelemetryOptions {
                log: &LogConfig { filter: "off".to_owned(), ..Default::default() },
                default_format: LogFormat::Pretty,
                telemetry: &TelemetryConfig::default(),
                service: &service,
                sentry: true,
            });
            std::mem::forget(guard);
        });
    }

    async fn a_panic_and_a_5xx_reach_sentry_tagged_with_a_stack_trace_and_without_credentials(backend: Backend) {
        install_telemetry();
        let sentry = Recorder::start().await;
        let dsn = format!("http://public@{}/1", sentry.addr);
        let Some(app) = spawn_app_with(backend, failing_routes(), |settings| {
            settings.sentry.dsn = Some(dsn.into());
        })
        .await
        else {
            return;
        };
        let mut ids = HashMap::new();
        for path in ["/test/boom", "/test/fail", "/test/logged"] {
            let response = with_credentials(app.client.get(app.url(&format!("{path}?access_token={QUERY_SECRET}"))))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            ids.insert(path, response.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while sentry_events(&sentry).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        app.stop().await; // flushes the queue: anything still unsent (a duplicate, say) arrives now

        let raw: Vec<String> =
            sentry.bodies("/api/1/envelope/").iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        for secret in [BEARER_SECRET, COOKIE_SECRET, API_KEY_SECRET, QUERY_SECRET] {
            assert!(!raw.iter().any(|envelope| envelope.contains(secret)), "{secret} was sent to Sentry");
        }
        let events = sentry_events(&sentry);
        let for_request = |path: &str| -> Vec<Value> {
            events.iter().filter(|event| event["tags"]["request_id"] == ids[path].as_str()).cloned().collect()
        };
        for path in ["/test/boom", "/test/fail", "/test/logged"] {
            assert_eq!(for_request(path).len(), 1, "exactly one event for {path}: {events:#?}");
        }

        let panic = &for_request("/test/boom")[0];
        let exception = &panic["exception"]["values"][0];
        assert_eq!(exception["mechanism"]["type"], "panic", "{panic:#}");
        assert!(exception["value"].as_str().is_some_and(|v| v.contains("the handler gave up")), "{panic:#}");
        assert!(
            exception["stacktrace"]["frames"].as_array().is_some_and(|f| !f.is_empty()),
            "no stack trace: {panic:#}"
        );

        let failed = &for_request("/test/fail")[0];
        assert_eq!(failed["tags"]["tenant_id"], "tenant-0f3a", "{failed:#}");
        assert_eq!(failed["tags"]["user_id"], "user-42", "{failed:#}");
        assert_eq!(failed["tags"]["http.route"], "/test/fail", "{failed:#}");
        assert!(failed["message"].as_str().is_some_and(|m| m.contains("500")), "{failed:#}");
        assert!(
            failed["threads"]["values"][0]["stacktrace"]["frames"].as_array().is_some_and(|f| !f.is_empty()),
            "no stack trace: {failed:#}"
        );

        let logged = &for_request("/test/logged")[0];
        assert!(
            logged.to_string().contains("the ledger could not be written"),
            "the error log is the event: {logged:#}"
        );

        for event in [panic, failed, logged] {
            assert_eq!(event["environment"], "development", "{event:#}");
            assert_eq!(event["release"], format!("palisade@{}", env!("CARGO_PKG_VERSION")), "{event:#}");
            let request = &event["request"];
            let url = request["url"].as_str().unwrap_or_default();
            assert!(url.contains("/test/") && !url.contains('?'), "{event:#}");
            assert!(request.get("query_string").is_none_or(Value::is_null), "{event:#}");
            let headers = request["headers"].as_object().cloned().unwrap_or_default();
            assert!(
                headers
                    .keys()
                    .all(|name| !["authorization", "cookie", "x-api-key"].contains(&name.to_lowercase().as_str())),
                "{event:#}"
            );
        }
    }

    async fn client_addresses_and_bodies_reach_sentry_only_as_configured(backend: Backend) {
        for send_pii in [false, true] {
            let sentry = Recorder::start().await;
            let dsn = format!("http://public@{}/1", sentry.addr);
            let Some(app) = spawn_app_with(backend, failing_routes(), |settings| {
                settings.sentry.dsn = Some(dsn.into());
                settings.sentry.send_pii = send_pii;
            })
            .await
            else {
                return;
            };
            let request = CLIENT_ADDRESSES
                .iter()
                .fold(app.client.post(app.url(&format!("/test/fail?q={QUERY_SECRET}"))), |request, (name, value)| {
                    request.header(*name, *value)
                });
            let response = with_credentials(request)
                .header("content-type", "application/json")
                .body(format!(r#"{{"note":"{BODY_SECRET}"}}"#))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let deadline = Instant::now() + Duration::from_secs(20);
            while sentry_events(&sentry).is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            app.stop().await;
            let events = sentry_events(&sentry);
            assert_eq!(events.len(), 1, "{events:#?}");
            let raw: String =
                sentry.bodies("/api/1/envelope/").iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
            for secret in [BEARER_SECRET, COOKIE_SECRET, API_KEY_SECRET, QUERY_SECRET, BODY_SECRET] {
                assert!(!raw.contains(secret), "{secret} was sent to Sentry (send_pii={send_pii})");
            }
            let request = &events[0]["request"];
            assert_eq!(request["method"], "POST", "{request:#}");
            for (name, value) in CLIENT_ADDRESSES {
                assert_eq!(raw.contains(value), send_pii, "{name}: {value} (send_pii={send_pii})");
            }
            let remote = request["env"]["REMOTE_ADDR"].as_str();
            assert_eq!(remote, send_pii.then_some("127.0.0.1"), "{request:#}");
            assert!(events[0]["user"]["ip_address"].is_null(), "{:#}", events[0]);
        }
    }

    async fn an_unreachable_sentry_never_slows_or_fails_requests(backend: Backend) {
        let closed = closed_port().await;
        let Some(app) = spawn_app_with(backend, failing_routes(), |settings| {
            settings.sentry.dsn = Some(format!("http://public@{closed}/1").into());
        })
        .await
        else {
            return;
        };
        let started = Instant::now();
        let statuses: Vec<StatusCode> = futures::stream::iter(0..60)
            .map(|i| {
                let path = ["/test/boom", "/test/fail", "/health"][i % 3];
                let request = app.client.get(app.url(path));
                async move { request.send().await.expect("request").status() }
            })
            .buffer_unordered(6)
            .collect()
            .await;
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 20);
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR).count(), 40);
        assert!(started.elapsed() < Duration::from_secs(15), "requests waited on Sentry: {:?}", started.elapsed());
        let stopping = Instant::now();
        app.stop().await;
        assert!(stopping.elapsed() < Duration::from_secs(15), "shutdown waited on Sentry: {:?}", stopping.elapsed());
    }

    /// The event payloads of every envelope received.
    fn sentry_events(recorder: &Recorder) -> Vec<Value> {
        let mut events = Vec::new();
        for body in recorder.bodies("/api/1/envelope/") {
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut lines = text.lines().skip(1); // the envelope header
            while let Some(item_header) = lines.next() {
                let header: Value = serde_json::from_str(item_header).unwrap_or_default();
                let Some(payload) = lines.next() else { break };
                if header["type"] == "event" {
                    events.push(serde_json::from_str(payload).expect("an event payload"));
                }
            }
        }
        events
    }
}

// ---------------------------------------------------------------------------------------- metrics

async fn a_thousand_random_paths_add_no_metric_series(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    for _ in 0..2 {
        app.get(&format!("/warm/{}", uuid::Uuid::new_v4())).await;
        app.get("/metrics").await;
    }
    let before = series(&app.get("/metrics").await.text().await.unwrap());
    let statuses: Vec<StatusCode> = futures::stream::iter(0..1000)
        .map(|i| {
            let request = app.client.get(app.url(&format!("/random/{}/{i}?q={}", uuid::Uuid::new_v4(), i * 7)));
            async move { request.send().await.expect("request").status() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NOT_FOUND || *s == StatusCode::TOO_MANY_REQUESTS));
    let text = app.get("/metrics").await.text().await.unwrap();
    let after = series(&text);
    assert!(!text.contains("/random/"), "a raw path became a label value");
    assert_eq!(after.durations, before.durations, "http_request_duration_seconds series grew");
    assert_eq!(after.routes, before.routes, "new route label values appeared");
    // A status the limiter may add (429) is one more bounded value, not a series per path.
    assert!(
        after.requests <= before.requests + 1,
        "http_requests_total went from {} to {}",
        before.requests,
        after.requests
    );
    app.stop().await;
}

struct Series {
    requests: usize,
    durations: usize,
    routes: std::collections::BTreeSet<String>,
}

fn series(text: &str) -> Series {
    let requests: Vec<&str> = text.lines().filter(|l| l.starts_with("http_requests_total{")).collect();
    let routes = requests
        .iter()
        .filter_map(|line| line.split("route=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect();
    Series {
        requests: requests.len(),
        durations: text.lines().filter(|l| l.starts_with("http_request_duration_seconds_bucket{")).count(),
        routes,
    }
}

async fn every_metric_the_alert_rules_and_dashboards_query_is_exported(backend: Backend) {
    // crates/ops/tests/metric_contract.rs checks the rules and dashboards against CONTRACT.
    let names: Vec<String> = palisade_ops::metrics::CONTRACT.map(str::to_owned).to_vec();

    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    // Traffic of the kinds the rules watch: probes, a scrape, a miss, refused credentials.
    for path in ["/health", "/ready", "/metrics", "/no/such/path", "/api/v1/todos"] {
        app.get(path).await;
    }
    for token in ["not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"] {
        let response = app.client.get(app.url("/api/v1/auth/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let missing: Vec<&String> = names.iter().filter(|name| !text.contains(&format!("# TYPE {name} "))).collect();
    assert!(missing.is_empty(), "queried by alerts or dashboards but not exported: {missing:?}\n{text}");
    app.stop().await;
}

// ------------------------------------------------------------------------------------- harnesses

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Credentials of every kind a client sends.
fn with_credentials(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("authorization", format!("Bearer {BEARER_SECRET}"))
        .header("cookie", format!("session={COOKIE_SECRET}"))
        .header("x-api-key", API_KEY_SECRET)
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// The binary's environment for `backend`: port 0, the test's database (on PostgreSQL with a
/// distinctive password the trust-authenticated test server ignores, when `password`), Redis.
fn server_env(backend: Backend, database: &TestDatabase, password: bool) -> Option<Vec<(String, String)>> {
    let mut url = database.url.clone();
    if backend == Backend::Postgres && password {
        let mut parsed = url::Url::parse(&url).expect("database url");
        parsed.set_password(Some(DB_PASSWORD_SECRET)).expect("password");
        url = parsed.to_string();
    }
    let mut env = vars(&[
        ("PALISADE_SERVER__ADDR", "127.0.0.1:0"),
        ("PALISADE_SERVER__SHUTDOWN_TIMEOUT", "5s"),
        ("DATABASE_URL", &url),
    ]);
    if backend == Backend::Postgres {
        env.extend(vars(&[
            ("PALISADE_DATABASE__AUTO_MIGRATE", "false"),
            ("REDIS_URL", &service_url(REDIS_VAR)?),
            ("PALISADE_REDIS__KEY_PREFIX", &unique_name("palisade-obs")),
        ]));
    }
    Some(env)
}

/// The binary, its output collected line by line.
struct Process {
    child: Child,
    addresses: mpsc::UnboundedReceiver<SocketAddr>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

struct Output {
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Process {
    fn spawn(env: Vec<(String, String)>, dir: &std::path::Path) -> Self {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env_clear()
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn palisade");
        let (found, addresses) = mpsc::unbounded_channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let readers = vec![
            tokio::spawn(collect_lines(out, stdout.clone(), Some(found))),
            tokio::spawn(collect_lines(err, stderr.clone(), None)),
        ];
        Self { child, addresses, stdout, stderr, readers, _dir: None }
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
    }

    async fn wait(mut self) -> Output {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        assert!(status.is_ok(), "palisade did not exit within a minute");
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let take = |lines: &Arc<Mutex<Vec<String>>>| std::mem::take(&mut *lines.lock().unwrap());
        Output { stdout: take(&self.stdout), stderr: take(&self.stderr) }
    }
}

async fn collect_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    into: Arc<Mutex<Vec<String>>>,
    addresses: Option<mpsc::UnboundedSender<SocketAddr>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let (Some(addresses), Some(addr)) = (&addresses, listening_addr(&line)) {
            let _ = addresses.send(addr);
        }
        into.lock().unwrap().push(line);
    }
}

/// The address of the "listening" line, JSON (`"addr":"…"`) or pretty (`addr=…`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        return json["addr"].as_str()?.parse().ok();
    }
    line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// A running `palisade serve`.
struct Server {
    process: Process,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Server {
    async fn start(env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = Process::spawn(env, dir.path());
        process._dir = Some(dir);
        let addr = match tokio::time::timeout(Duration::from_secs(120), process.addresses.recv()).await {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = process.child.start_kill();
                let output = process.wait().await;
                panic!("palisade did not start:\n{}\n{}", output.stdout.join("\n"), output.stderr.join("\n"));
            }
        };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Self { process, addr, client }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, as Kubernetes stops a pod, then everything it printed.
    async fn stop(self) -> Output {
        self.process.terminate();
        self.process.wait().await
    }
}

/// A local HTTP server recording every POST body by path: the OTLP collector, or Sentry.
#[cfg(any(feature = "otel", feature = "sentry"))]
struct Recorder {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<(String, axum::body::Bytes)>>>,
    _task: JoinHandle<()>,
}

#[cfg(any(feature = "otel", feature = "sentry"))]
impl Recorder {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let record = bodies.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((uri.path().to_owned(), body));
                StatusCode::OK
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, bodies, _task: task }
    }

    fn bodies(&self, path: &str) -> Vec<axum::body::Bytes> {
        self.bodies.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, body)| body.clone()).collect()
    }
}
