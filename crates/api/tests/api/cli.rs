//! The `palisade` binary as operators use it: exit codes, refusal of insecure production settings,
//! `config check`, `migrate`, `healthcheck`, and serving from a fresh checkout with nothing set.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// The binary with a clean environment (no stray PALISADE_*, DATABASE_URL or REDIS_URL).
fn palisade(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `palisade serve` with JSON logs and waits for its "listening" line.
fn start_server(mut command: Command) -> (Child, SocketAddr) {
    command.env("PALISADE_LOG__FORMAT", "json").env("PALISADE_SERVER__ADDR", "127.0.0.1:0");
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn palisade");
    let stdout = child.stdout.take().expect("stdout");
    let (found, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"addr\":\"").nth(1)
                && let Some(addr) = rest.split('"').next().and_then(|a| a.parse::<SocketAddr>().ok())
            {
                let _ = found.send(addr);
            }
        }
    });
    let addr = addr.recv_timeout(Duration::from_secs(60)).expect("server reported its address");
    (child, addr)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn production_refuses_insecure_settings_listing_every_problem_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(dir.path()).env("PALISADE_ENVIRONMENT", "production").output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("SQLite"), "{stderr}");
    assert!(stderr.contains("redis.url"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing may be created before the settings are accepted");
}

#[test]
fn a_malformed_setting_is_a_configuration_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(dir.path()).env("PALISADE_SERVER__ADDR", "not-an-address").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("configuration error"), "{}", text(&output.stderr));
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(dir.path())
        .args(["config", "check"])
        .env("DATABASE_URL", "postgres://app:hunter2@db.internal/palisade")
        .env("REDIS_URL", "redis://:s3cr3t@cache:6379/0")
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(stdout.contains("[server]") && stdout.contains("[database]"), "{stdout}");
    assert!(stdout.contains("postgres://app:[REDACTED]@db.internal/palisade"), "{stdout}");
    let everything = format!("{stdout}{}", text(&output.stderr));
    assert!(!everything.contains("hunter2") && !everything.contains("s3cr3t"), "{everything}");
}

#[test]
fn config_check_in_production_exits_2_and_lists_the_problems() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        palisade(dir.path()).args(["config", "check"]).env("PALISADE_ENVIRONMENT", "production").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("configuration problem"), "{}", text(&output.stderr));
}

#[test]
fn migrate_applies_the_migrations_to_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/app.db").display());
    let output = palisade(dir.path()).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(dir.path().join("nested/dir/app.db").exists());
    let again = palisade(dir.path()).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "migrating twice must be a no-op");
}

#[tokio::test]
async fn migrate_applies_the_migrations_to_a_fresh_postgres_database() {
    let Some(admin) = crate::support::service_url(crate::support::DATABASE_VAR) else { return };
    use sqlx::Connection;
    let name = crate::support::unique_name("palisade_migrate");
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let url = crate::support::with_database(&admin, &name, None);
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(dir.path()).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let forced: Vec<(String,)> =
        sqlx::query_as("SELECT relname::text FROM pg_class WHERE relforcerowsecurity ORDER BY 1")
            .fetch_all(&mut db)
            .await
            .unwrap();
    db.close().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut conn).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let forced: Vec<String> = forced.into_iter().map(|(n,)| n).collect();
    assert_eq!(
        forced,
        [
            "api_keys",
            "audit_events",
            "idempotency_keys",
            "outbox_events",
            "tenant_exports",
            "todos",
            "users",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_endpoints"
        ]
    );
}

#[test]
fn a_fresh_start_with_nothing_configured_serves_on_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_server(palisade(dir.path()));
    let health =
        palisade(dir.path()).args(["healthcheck", "--url", &format!("http://{addr}/health")]).output().unwrap();
    assert_eq!(health.status.code(), Some(0), "{}", text(&health.stderr));
    assert!(dir.path().join("data/palisade.db").exists(), "the embedded database lives under ./data");
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output =
        palisade(dir.path()).args(["healthcheck", "--url", &format!("http://{addr}/health")]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}

/// SIGTERM while a request is in flight: /ready turns 503 at once, the in-flight request still
/// completes (its body arrives only after the listener has closed), and the process exits 0.
#[test]
fn sigterm_drains_an_in_flight_request_and_exits_0() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let configure = |mut command: Command| {
        command.env("PALISADE_SERVER__SHUTDOWN_DRAIN_DELAY", "1s").env("PALISADE_SERVER__SHUTDOWN_TIMEOUT", "20s");
        command
    };
    let token = palisade(dir.path())
        .args(["token", "--tenant", "demo", "--sub", "me", "--scopes", "todos:read,todos:write"])
        .output()
        .unwrap();
    assert_eq!(token.status.code(), Some(0), "{}", text(&token.stderr));
    let token = text(&token.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "the token alone on stdout");

    let (child, addr) = start_server(configure(palisade(dir.path())));
    let body = br#"{"title":"finish me during shutdown"}"#;
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "POST /api/v1/todos HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    slow.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    let mut probe = std::net::TcpStream::connect(addr).unwrap();
    write!(probe, "GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "during the drain /ready must say 503: {answer}");

    std::thread::sleep(Duration::from_millis(1500));
    slow.write_all(&body[10..]).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = [0u8; 64];
    let read = slow.read(&mut response).unwrap();
    let head = String::from_utf8_lossy(&response[..read]).into_owned();
    assert!(head.starts_with("HTTP/1.1 201"), "the in-flight request completes: {head}");

    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn token_is_refused_outside_development() {
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(dir.path())
        .args(["token", "--tenant", "demo", "--sub", "me", "--scopes", "todos:read"])
        .env("PALISADE_ENVIRONMENT", "production")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "no token may be printed");
}

#[test]
fn config_check_refuses_a_misspelt_variable_naming_it_and_the_nearest_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, value, suggested) in [
        ("PALISADE_SERVER_ADDR", "0.0.0.0:9000", "PALISADE_SERVER__ADDR"),
        ("PALISADE_ENVIROMENT", "production", "PALISADE_ENVIRONMENT"),
    ] {
        let output = palisade(dir.path()).args(["config", "check"]).env(variable, value).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable) && stderr.contains(&format!("did you mean `{suggested}`?")), "{stderr}");
    }
    let output = palisade(dir.path()).args(["config", "check"]).env("PALISADE_ENVIRONMENT", "prod").output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("development, staging, production"), "{stderr}");
}

#[test]
fn production_problems_name_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        palisade(dir.path()).args(["config", "check"]).env("PALISADE_ENVIRONMENT", "production").output().unwrap();
    let stderr = text(&output.stderr);
    assert!(stderr.contains("redis.url") && stderr.contains("PALISADE_REDIS__URL"), "{stderr}");
}
