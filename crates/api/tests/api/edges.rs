//! Hostile edges: idle and half-open connections, a connection flood beyond the cap, request heads
//! over the documented limits, PostgreSQL connections lost under load, and a database that is
//! down when the server starts.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{Backend, proxy};
use axum::Router;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The client half of an HTTP/2 connection preface, then an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// How many idle sockets the flood holds: 2,000, or fewer when this process may not open that
/// many descriptors (each socket costs two here: the client's and the server's end).
fn flood_size() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok())
        .unwrap_or(4096);
    let size = 2000.min(soft.saturating_sub(300) / 2);
    if size < 2000 {
        eprintln!("NOTICE: open-file limit {soft}: holding {size} idle sockets instead of 2000");
    }
    size
}

/// Resolves when the server closed `stream` (EOF or reset), draining whatever it sent first.
async fn closed_by_server(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Sockets that send nothing, part of an HTTP/2 preface, or a whole preface and then nothing do
/// not starve `/health`, and each is closed once `header_read_timeout` passes without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_neither_starve_health_nor_outlive_the_first_request_timeout() {
    let timeout = Duration::from_secs(3);
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |s| s.server.header_read_timeout = timeout).await else {
        return;
    };
    let size = flood_size();
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(size);
    for i in 0..size {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect idle socket");
        match i % 3 {
            0 => {}
            1 => stream.write_all(&H2_PREFACE[..10]).await.expect("partial preface"),
            _ => {
                stream.write_all(H2_PREFACE).await.expect("preface");
                stream.write_all(H2_EMPTY_SETTINGS).await.expect("settings");
            }
        }
        idle.push(stream);
    }
    // A fresh connection per probe: the flood must not stop the server from accepting.
    let probe = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut latencies = Vec::new();
    while latencies.len() < 100 && opened.elapsed() < timeout - Duration::from_millis(500) {
        let started = Instant::now();
        let response = probe.get(app.url("/health")).send().await.expect("health");
        assert_eq!(response.status(), StatusCode::OK);
        latencies.push(started.elapsed());
    }
    assert!(latencies.len() >= 20, "only {} probes before the timeout", latencies.len());
    latencies.sort();
    let p99 = percentile(&latencies, 0.99);
    assert!(p99 < Duration::from_millis(50), "p99 of /health with {size} idle sockets: {p99:?}");
    let open = app.state.metrics.http_connections_open.get();
    assert!(open >= i64::try_from(size).unwrap(), "http_connections_open {open} while {size} sockets are held");

    let all_closed = futures::future::join_all(idle.into_iter().map(closed_by_server));
    tokio::time::timeout(timeout + Duration::from_secs(5), all_closed)
        .await
        .expect("every idle socket is closed by the server after the timeout");
    assert!(opened.elapsed() >= timeout, "closed before the timeout: {:?}", opened.elapsed());
    app.stop().await;
}

/// A keep-alive connection that served a request and then idles is closed after `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let Some(app) =
        crate::support::spawn_app(Backend::Sqlite, |s| s.server.idle_timeout = Duration::from_secs(1)).await
    else {
        return;
    };
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: palisade\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..read]));
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), closed_by_server(stream)).await.expect("closed when idle");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());
    app.stop().await;
}

/// A keep-alive connection whose requests come more often than `idle_timeout` stays open for
/// longer than `idle_timeout`, and is closed one idle period after its last request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_in_use_outlives_the_idle_timeout_and_closes_after_its_last_request() {
    let idle = Duration::from_secs(1);
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |s| s.server.idle_timeout = idle).await else {
        return;
    };
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let mut buffer = [0u8; 4096];
    let opened = Instant::now();
    let mut last = opened;
    while opened.elapsed() < idle * 3 {
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: palisade\r\n\r\n").await.unwrap();
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(
            buffer[..read].starts_with(b"HTTP/1.1 200"),
            "after {:?}: {}",
            opened.elapsed(),
            String::from_utf8_lossy(&buffer[..read])
        );
        last = Instant::now();
        tokio::time::sleep(idle * 2 / 5).await;
    }
    tokio::time::timeout(idle * 5, closed_by_server(stream)).await.expect("closed when idle");
    let waited = last.elapsed();
    assert!(waited >= idle * 9 / 10, "closed {waited:?} after the last request");
    app.stop().await;
}

/// An HTTP/2 peer that made a request and then stops answering pings (a dead client, a
/// vanished NAT entry) is dropped after the keep-alive timeout, long before `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_peer_that_stops_answering_pings_is_dropped() {
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |s| {
        s.server.idle_timeout = Duration::from_secs(60);
        s.server.http2_keep_alive_interval = Duration::from_millis(500);
        s.server.http2_keep_alive_timeout = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(H2_PREFACE).await.unwrap();
    stream.write_all(H2_EMPTY_SETTINGS).await.unwrap();
    // HEADERS on stream 1, END_STREAM | END_HEADERS: `GET /` over http, from the static table.
    stream.write_all(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84]).await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), closed_by_server(stream)).await.expect("dropped");
    assert!(started.elapsed() < Duration::from_secs(5), "dropped only after {:?}", started.elapsed());
    app.stop().await;
}

/// Beyond `max_connections` a connection gets an immediate 503 problem with `Connection: close`,
/// counted in `http_connections_refused_total`; once connections close, new ones are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_cap_is_refused_with_a_503_problem() {
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |s| s.server.max_connections = 3).await else { return };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    extra.write_all(b"GET /health HTTP/1.1\r\nHost: palisade\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("content-type: application/problem+json"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(answer.contains("x-request-id: "), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(app.state.metrics.http_connections_refused_total.get(), 1);
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        if app.client.get(app.url("/health")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "served again once the held connections closed");
    app.stop().await;
}

/// Shutdown is not held up by an idle HTTP/2 connection (one that served a request and one that
/// sent only the preface): it ends within the drain delay plus a second, not at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_idle_http2_connections_ends_within_the_drain_delay_plus_a_second() {
    let drain = Duration::from_secs(1);
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |s| {
        s.server.shutdown_drain_delay = drain;
        s.server.shutdown_timeout = Duration::from_secs(20);
    })
    .await
    else {
        return;
    };
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let mut raw = TcpStream::connect(app.addr).await.unwrap();
    raw.write_all(H2_PREFACE).await.unwrap();
    raw.write_all(H2_EMPTY_SETTINGS).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), app.stop()).await.expect("stopped");
    let took = started.elapsed();
    assert!(took < drain + Duration::from_secs(1), "shutdown took {took:?}");
    drop((h2, raw));
}

/// A request head over `max_header_bytes` or `max_header_count` (but under hyper's own, larger
/// limits) is refused with 431 in the shape of every other error: problem+json, request id and
/// security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_gets_a_431_problem_with_request_id_and_security_headers() {
    let Some(app) = crate::support::spawn_app(Backend::Sqlite, |_| {}).await else { return };
    let limit = app.state.settings.server.max_header_bytes;
    let long_header = app.client.get(app.url("/health")).header("x-padding", "a".repeat(limit + 1000));
    let long_url = app.client.get(app.url(&format!("/health?pad={}", "b".repeat(limit + 1000))));
    let mut many = app.client.get(app.url("/health"));
    for i in 0..=app.state.settings.server.max_header_count {
        many = many.header(format!("x-field-{i}"), "1");
    }
    for (what, request) in [("a long header", long_header), ("a long URL", long_url), ("many headers", many)] {
        let response = request.send().await.expect(what);
        assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{what}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json", "{what}");
        assert!(headers.contains_key("x-request-id"), "{what}: {headers:?}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 431, "{what}");
        assert_eq!(body["type"], "/problems/request-head-too-large", "{what}");
        assert!(body["request_id"].is_string(), "{what}: {body}");
    }
    assert_eq!(app.get("/health").await.status(), StatusCode::OK, "a normal head still passes");
    app.stop().await;
}

/// PostgreSQL backends of the app role terminated under load (`pg_terminate_backend`, as in a
/// restart or failover): requests get a 2xx or a 503 problem with `Retry-After`, never a 500, and
/// the service recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_terminated_backends_under_load_give_503_with_retry_after_and_recover() {
    let Some(app) = crate::support::spawn_app(Backend::Postgres, |s| s.rate_limit.enabled = false).await else {
        return;
    };
    app.create_tenant("acme").await;
    let token = app.token(Some("acme"), "alice", &["todos:read", "todos:write"]);
    let admin_url = crate::support::service_url(crate::support::DATABASE_VAR).unwrap();
    let database = url::Url::parse(&app.database.url).unwrap().path().trim_start_matches('/').to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (client, url, token, stop) =
                (app.client.clone(), app.url("/api/v1/todos"), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen: Vec<(StatusCode, bool)> = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let request = if n % 2 == 0 {
                        client.get(&url)
                    } else {
                        client.post(&url).json(&json!({"title": format!("w{worker}-{n}")}))
                    };
                    let response = request.bearer_auth(&token).send().await.expect("request");
                    let retry_after = response.headers().contains_key(header::RETRY_AFTER);
                    seen.push((response.status(), retry_after));
                }
                seen
            })
        })
        .collect();
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let mut terminated = 0i64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = 'palisade_test_app' AND datname = $1) t",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        terminated += killed;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for worker in workers {
        for (status, retry_after) in worker.await.unwrap() {
            *by_status.entry(status.as_u16()).or_default() += 1;
            assert!(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE, "status {status}");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(retry_after, "a 503 without Retry-After");
            }
        }
    }
    eprintln!("terminated {terminated} backends; statuses {by_status:?}");
    assert!(terminated > 0, "no backend was terminated");
    let after = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(&token)
        .json(&json!({"title": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::CREATED, "recovered without a restart");
    app.stop().await;
}

/// PostgreSQL down at startup: the server starts, `/health` answers, `/ready` says 503 (naming
/// `startup`) until the database is reachable, and then it becomes ready and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_database_down_at_startup_delays_readiness_instead_of_exiting() {
    let Some(database) = crate::support::TestDatabase::create(Backend::Postgres).await else { return };
    let mut settings = crate::support::settings_for(Backend::Postgres, &database).unwrap();
    let pg = proxy::Proxy::start(proxy::host_port(&database.url)).await;
    pg.cut().await;
    settings.database.url = proxy::through(&database.url, &pg).into();
    settings.database.acquire_timeout = Duration::from_millis(500);
    let app = crate::support::start(settings, Router::new(), Backend::Postgres, database).await;
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_ne!(body["checks"]["startup"], "ok", "{body}");
    pg.restore();
    let started = Instant::now();
    loop {
        if app.get("/ready").await.status() == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.create_tenant("late").await;
    app.stop().await;
}

/// An unsafe role found only once a database that was down at startup comes back still stops a
/// production server: it drains and `run_until` fails with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_production_refuses_a_superuser_found_after_a_late_database() {
    let Some(database) = crate::support::TestDatabase::create(Backend::Postgres).await else { return };
    let mut settings = crate::support::settings_for(Backend::Postgres, &database).unwrap();
    settings.environment = palisade_api::Environment::Production;
    settings.auth.issuer = Some("https://issuer.example.com".to_owned());
    settings.auth.audience = Some("palisade".to_owned());
    let owner = database.admin_url.clone().unwrap();
    let pg = proxy::Proxy::start(proxy::host_port(&owner)).await;
    pg.cut().await;
    settings.database.url = proxy::through(&owner, &pg).into();
    settings.database.acquire_timeout = Duration::from_millis(500);
    let application = palisade_api::Application::build(settings).await.expect("starts while the database is down");
    let running = tokio::spawn(application.run_until(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.restore();
    let result = tokio::time::timeout(Duration::from_secs(20), running).await.expect("stops").unwrap();
    let message = result.expect_err("a superuser is refused").to_string();
    assert!(message.contains("superuser"), "{message}");
}

on_both_backends!(an_exhausted_pool_answers_503_with_retry_after_and_counts_the_acquire_timeout);

/// A pool of one connection, held by the test: the next request waits `database.acquire_timeout`,
/// gets the busy 503 problem, and `db_pool_acquire_timeouts_total` counts it. Once the connection
/// is back, the same request succeeds.
async fn an_exhausted_pool_answers_503_with_retry_after_and_counts_the_acquire_timeout(backend: Backend) {
    let Some(app) = crate::support::spawn_app(backend, |settings| {
        settings.database.max_connections = Some(1);
        settings.database.min_connections = 0;
        settings.database.acquire_timeout = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    app.create_tenant("pool").await;
    let token = app.token(Some("pool"), "alice", &["todos:read"]);
    let counted = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("db_pool_acquire_timeouts_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("db_pool_acquire_timeouts_total is exported")
    };
    let before = counted(&app.get("/metrics").await.text().await.unwrap());

    let held = app.state.db.begin().await.expect("the pool's only connection");
    let response = app.client.get(app.url("/api/v1/todos")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 503, "{problem}");
    assert_eq!(problem["detail"], "The database is busy; retry shortly.", "{problem}");
    assert!(problem["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{problem}");
    drop(held);

    let after = counted(&app.get("/metrics").await.text().await.unwrap());
    assert!(after > before, "db_pool_acquire_timeouts_total did not count the timeout ({before} -> {after})");
    let retried = app.client.get(app.url("/api/v1/todos")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::OK, "the connection is back");
    app.stop().await;
}
