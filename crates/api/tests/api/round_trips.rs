//! What one request costs in Redis, and that the combined check (pending anonymous check,
//! revocation lookup, per-caller policies in one script) decides exactly as before: see
//! docs/adr/0004-rate-limiting.md.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::support::{Backend, TestApp, send, spawn_app};
use palisade_api::Settings;
use palisade_edge::rate_limit::{ANONYMOUS, AUTHENTICATED, BackendChoice, Policy, WRITE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

const RW: &[&str] = &["todos:read", "todos:write"];

on_both_backends!(
    a_revoked_token_is_refused_and_does_not_spend_the_authenticated_budget,
    an_exhausted_anonymous_budget_refuses_an_authenticated_request_with_429,
    a_brute_force_of_invalid_tokens_ends_in_429,
);

/// A forwarder to Redis that counts round trips: every burst of bytes the server sends before
/// it reads a reply is one.
struct CountingForwarder {
    url: String,
    trips: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl CountingForwarder {
    async fn start(redis_url: &str) -> Self {
        let target = crate::support::proxy::host_port(redis_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
        let addr = listener.local_addr().expect("forwarder addr");
        let trips = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let trips = trips.clone();
            async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else { continue };
                    let Ok(outbound) = TcpStream::connect(&target).await else { continue };
                    tokio::spawn(relay(inbound, outbound, trips.clone()));
                }
            }
        });
        let mut url = url::Url::parse(redis_url).expect("redis url");
        url.set_port(Some(addr.port())).expect("port");
        url.set_host(Some("127.0.0.1")).expect("host");
        Self { url: url.to_string(), trips, task }
    }

    fn trips(&self) -> u64 {
        self.trips.load(Ordering::SeqCst)
    }
}

impl Drop for CountingForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection both ways, counting a round trip whenever the client writes after
/// having been answered (or for the first time).
async fn relay(inbound: TcpStream, outbound: TcpStream, trips: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let answered = Arc::new(AtomicBool::new(true));
    let upstream = {
        let answered = answered.clone();
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                if answered.swap(false, Ordering::SeqCst) {
                    trips.fetch_add(1, Ordering::SeqCst);
                }
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
            answered.store(true, Ordering::SeqCst);
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(upstream, downstream);
}

/// An authenticated tenant request with the Redis limiter and Redis revocations costs exactly one
/// Redis round trip, a read or a write: the pending anonymous check, the revocation lookup and
/// the per-caller policies travel in one script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_authenticated_tenant_request_costs_one_redis_round_trip() {
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    let forwarder = CountingForwarder::start(&redis_url).await;
    let Some(app) = spawn_app(Backend::Postgres, |s| {
        s.redis.url = Some(forwarder.url.clone().into());
        s.rate_limit.redis_timeout = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    assert!(app.state.rate_limiter.is_shared(), "the limiter must be in Redis for this test");
    let alice = app.token(Some("demo"), "alice", RW);
    // Warm up: the connection, the script's first EVALSHA (NOSCRIPT, then EVAL), the user's
    // provisioning, the tenant directory's cache.
    for n in 0..3 {
        assert_eq!(send(&app, Method::GET, "/api/v1/todos", &alice, None).await.status(), StatusCode::OK);
        let created = send(&app, Method::POST, "/api/v1/todos", &alice, Some(json!({"title": format!("w{n}")}))).await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    const N: u64 = 10;
    let before = forwarder.trips();
    for _ in 0..N {
        assert_eq!(send(&app, Method::GET, "/api/v1/todos", &alice, None).await.status(), StatusCode::OK);
    }
    assert_eq!(forwarder.trips() - before, N, "Redis round trips of {N} authenticated reads");
    let before = forwarder.trips();
    for n in 0..N {
        let created = send(&app, Method::POST, "/api/v1/todos", &alice, Some(json!({"title": format!("t{n}")}))).await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    assert_eq!(forwarder.trips() - before, N, "Redis round trips of {N} authenticated writes");
    app.stop().await;
}

/// A tenant read whose user was looked up before costs one PostgreSQL round trip fewer while the
/// tenant's membership epoch is unchanged: the user comes from memory (the epoch rides in the one
/// Redis script), and the handler's transaction begins with its first query. Compared with the
/// same reads with the membership cache off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_tenant_read_skips_the_user_lookup_while_the_membership_epoch_holds() {
    let Some(database_url) = crate::support::service_url(crate::support::DATABASE_VAR) else { return };
    const N: u64 = 10;
    let mut trips = Vec::new();
    for ttl in [Duration::ZERO, Duration::from_secs(600)] {
        let forwarder = CountingForwarder::start(&database_url).await;
        let port = url::Url::parse(&forwarder.url).expect("forwarder url").port().expect("port");
        let Some(app) = spawn_app(Backend::Postgres, |s| {
            use secrecy::ExposeSecret;
            let mut url = url::Url::parse(s.database.url.expose_secret()).expect("database url");
            url.set_port(Some(port)).expect("port");
            s.database.url = url.to_string().into();
            // Nothing else may talk to PostgreSQL while the reads are counted, and no connection
            // may be opened meanwhile (its handshake is several round trips): one connection,
            // which a read waits for while the pool checks it after the previous response.
            s.jobs.enabled = false;
            s.database.max_connections = Some(1);
            s.database.min_connections = 1;
            s.tenancy.membership_cache_ttl = ttl;
        })
        .await
        else {
            return;
        };
        let alice = app.token(Some("demo"), "alice", RW);
        let id = crate::support::create_todo(&app, &alice, "counted").await["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/todos/{id}");
        for _ in 0..3 {
            assert_eq!(send(&app, Method::GET, &path, &alice, None).await.status(), StatusCode::OK);
        }
        // A connection returning to the pool is checked (and the read's rollback flushed) after
        // the response: let those finish before and after counting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = forwarder.trips();
        for _ in 0..N {
            assert_eq!(send(&app, Method::GET, &path, &alice, None).await.status(), StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        trips.push(forwarder.trips() - before);
        app.stop().await;
    }
    let [uncached, cached] = trips[..] else { panic!("two runs: {trips:?}") };
    assert_eq!(uncached - cached, N, "one round trip fewer per read: {N} reads, {uncached} vs {cached} round trips");
}

/// A policy of `burst` requests at once and one more per minute: nothing refills during a test.
fn tiny(burst: u32) -> Policy {
    Policy { rate: 1, period: Duration::from_secs(60), burst }
}

fn limits(settings: &mut Settings, anonymous: u32, authenticated: u32, write: u32) {
    settings.rate_limit.policies.insert(ANONYMOUS.to_owned(), tiny(anonymous));
    settings.rate_limit.policies.insert(AUTHENTICATED.to_owned(), tiny(authenticated));
    settings.rate_limit.policies.insert(WRITE.to_owned(), tiny(write));
    settings.rate_limit.redis_timeout = Duration::from_secs(2);
}

async fn a_revoked_token_is_refused_and_does_not_spend_the_authenticated_budget(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| limits(s, 1000, 2, 2)).await else { return };
    let old = app.token(Some("demo"), "alice", RW);
    // Revoked by an admin (by jti), so that alice's own budget is untouched.
    let me: Value = send(&app, Method::GET, "/api/v1/auth/me", &old, None).await.json().await.unwrap();
    let admin = app.token(Some("demo"), "admin", &["tenant:admin"]);
    let revoked = send(&app, Method::POST, "/api/v1/auth/revoke", &admin, Some(json!({"jti": me["jti"]}))).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    for _ in 0..4 {
        let refused = send(&app, Method::GET, "/api/v1/todos", &old, None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.json::<Value>().await.unwrap()["reason"], "revoked");
    }
    let new = app.token(Some("demo"), "alice", RW);
    let statuses = [
        send(&app, Method::GET, "/api/v1/todos", &new, None).await.status(),
        send(&app, Method::GET, "/api/v1/todos", &new, None).await.status(),
        send(&app, Method::GET, "/api/v1/todos", &new, None).await.status(),
    ];
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS], "alice's whole budget");
    app.stop().await;
}

async fn an_exhausted_anonymous_budget_refuses_an_authenticated_request_with_429(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| limits(s, 2, 100, 100)).await else { return };
    for _ in 0..2 {
        assert_eq!(app.get("/nope").await.status(), StatusCode::NOT_FOUND);
    }
    let alice = app.token(Some("demo"), "alice", RW);
    let refused = send(&app, Method::GET, "/api/v1/todos", &alice, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"anonymous\";r=0"));
    assert_eq!(refused.json::<Value>().await.unwrap()["policy"], ANONYMOUS);
    app.stop().await;
}

async fn a_brute_force_of_invalid_tokens_ends_in_429(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| limits(s, 3, 100, 100)).await else { return };
    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(send(&app, Method::GET, "/api/v1/todos", &format!("junk-{n}"), None).await.status());
    }
    // Three within the burst, the fourth refused after its (401) answer and remembered: from then
    // on every attempt is refused up front.
    let unauthorized = statuses.iter().take_while(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(unauthorized, 4, "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    app.stop().await;
}

/// One scenario (reads, writes, a revoked token, junk tokens, anonymous calls) gives the same
/// answers and headers with everything in process, everything in Redis, and in-process limits
/// with revocations in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_and_memory_backends_agree_on_the_decision_sequence() {
    let mut sequences = Vec::new();
    for (backend, limiter) in [
        (Backend::Sqlite, BackendChoice::Memory),
        (Backend::Postgres, BackendChoice::Redis),
        (Backend::Postgres, BackendChoice::Memory),
    ] {
        let Some(app) = spawn_app(backend, |s| {
            limits(s, 12, 4, 2);
            s.rate_limit.backend = limiter;
        })
        .await
        else {
            return;
        };
        sequences.push((format!("{backend:?} with the {limiter:?} limiter"), scenario(&app).await));
        app.stop().await;
    }
    let (first, expected) = &sequences[0];
    for (name, sequence) in &sequences[1..] {
        assert_eq!(sequence, expected, "{name} disagrees with {first}");
    }
}

/// Status, reason and `RateLimit` items of each step of the scenario.
async fn scenario(app: &TestApp) -> Vec<(StatusCode, String, String)> {
    let alice = app.token(Some("demo"), "alice", RW);
    let revoked = app.token(Some("demo"), "bob", RW);
    assert_eq!(send(app, Method::POST, "/api/v1/auth/revoke", &revoked, None).await.status(), StatusCode::NO_CONTENT);
    let mut steps = Vec::new();
    let plan: [(Method, &str, &str); 14] = [
        (Method::GET, "/api/v1/todos", &alice),
        (Method::POST, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", &revoked),
        (Method::POST, "/api/v1/todos", &alice),
        (Method::POST, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", &revoked),
        (Method::GET, "/api/v1/todos", "junk"),
        (Method::GET, "/api/v1/auth/me", &alice),
        (Method::GET, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", "junk"),
        (Method::GET, "/api/v1/todos", &alice),
        (Method::GET, "/api/v1/todos", &alice),
    ];
    for (method, path, token) in plan {
        let body = (method == Method::POST).then(|| json!({"title": "t"}));
        let response = send(app, method, path, token, body).await;
        let status = response.status();
        let limits = response.headers().get_all("ratelimit").iter().map(|v| v.to_str().unwrap().to_owned());
        let limits: Vec<String> = limits.map(|v| v.split(";t=").next().unwrap_or_default().to_owned()).collect();
        let reason = response.json::<Value>().await.ok().and_then(|v| v["reason"].as_str().map(str::to_owned));
        steps.push((status, reason.unwrap_or_default(), limits.join(", ")));
    }
    steps
}

/// When the combined call fails, each part keeps its own failure mode: the limiter falls back to
/// its in-process buckets, and the revocation lookup is refused (`closed`, 503) or let through
/// (`open`), counted in `redis_errors_total{operation="revocation"}` either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_combined_call_fails_each_part_keeps_its_own_failure_mode() {
    use palisade_auth::RevocationFailureMode;
    let Some(redis_url) = crate::support::service_url(crate::support::REDIS_VAR) else { return };
    for mode in [RevocationFailureMode::Closed, RevocationFailureMode::Open] {
        let proxy = crate::support::proxy::Proxy::start(crate::support::proxy::host_port(&redis_url)).await;
        let Some(app) = spawn_app(Backend::Postgres, |s| {
            s.redis.url = Some(crate::support::proxy::through(&redis_url, &proxy).into());
            s.auth.revocation_failure_mode = mode;
            s.rate_limit.redis_timeout = Duration::from_millis(250);
        })
        .await
        else {
            return;
        };
        let alice = app.token(Some("demo"), "alice", RW);
        assert_eq!(send(&app, Method::GET, "/api/v1/todos", &alice, None).await.status(), StatusCode::OK);
        proxy.cut().await;
        let during = send(&app, Method::GET, "/api/v1/todos", &alice, None).await;
        let expected = match mode {
            RevocationFailureMode::Closed => StatusCode::SERVICE_UNAVAILABLE,
            RevocationFailureMode::Open => StatusCode::OK,
        };
        assert_eq!(during.status(), expected, "{mode:?}");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let counted = |line: &str| metrics.lines().any(|l| l.starts_with(line) && !l.ends_with(" 0"));
        assert!(counted(r#"redis_errors_total{operation="revocation"}"#), "{mode:?}: {metrics}");
        assert!(counted(r#"redis_errors_total{operation="rate_limit"}"#), "{mode:?}: {metrics}");
        assert!(counted(r#"rate_limit_decisions_total{decision="bypassed",policy="authenticated"}"#), "{mode:?}");
        proxy.restore();
        app.stop().await;
    }
}
