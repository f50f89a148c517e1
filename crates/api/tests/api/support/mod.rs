//! Test harness: the real server on port 0, spoken to over HTTP.
//!
//! Every test runs once per backend: on SQLite with in-process state (the embedded default), and
//! on PostgreSQL + Redis when `PALISADE_TEST_DATABASE_URL` (an admin URL that may create databases
//! and roles) and `PALISADE_TEST_REDIS_URL` are set. Each test gets its own database and its own
//! Redis key prefix. In CI (`CI` set) a missing service fails the test instead of skipping it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use palisade_api::{AppState, Application, Settings};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};

pub const DATABASE_VAR: &str = "PALISADE_TEST_DATABASE_URL";
pub const REDIS_VAR: &str = "PALISADE_TEST_REDIS_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Defines `mod $name { sqlite(), postgres() }`, running `$name(backend)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::support::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::support::Backend::Postgres).await;
            }
        }
    )*};
}

/// The value of a service variable; `None` (with a loud notice) when unset outside CI.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("{var} must be set in CI: no test is skipped there"),
        _ => {
            eprintln!("NOTICE: {var} is not set; the PostgreSQL/Redis variant of this test did not run");
            None
        }
    }
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    pub database: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    /// A development token for `subject` in `tenant` (a slug or uuid) with `scopes`.
    pub fn token(&self, tenant: Option<&str>, subject: &str, scopes: &[&str]) -> String {
        let request = palisade_auth::DevTokenRequest {
            subject: subject.to_owned(),
            tenant: tenant.map(str::to_owned),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ttl: Duration::from_secs(3600),
        };
        palisade_auth::mint_dev_token(&self.state.settings.auth, true, &request).expect("dev token")
    }

    /// Creates a tenant through the API as a platform admin; returns its JSON.
    pub async fn create_tenant(&self, slug: &str) -> serde_json::Value {
        let admin = self.token(None, "platform-operator", &["platform:admin"]);
        let response = self
            .client
            .post(self.url("/api/v1/tenants"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"slug": slug, "name": format!("Tenant {slug}")}))
            .send()
            .await
            .expect("create tenant");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED, "creating tenant {slug}");
        response.json().await.expect("tenant json")
    }

    /// Starts graceful shutdown and waits for the server to stop.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The database a test owns. PostgreSQL databases are dropped when this is.
pub struct TestDatabase {
    pub url: String,
    pub admin_url: Option<String>,
    name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh SQLite file, or a fresh PostgreSQL database migrated by the owner (the admin) with
    /// the server's URL pointing at the non-owner login role `palisade_test_app`.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("palisade.db").display());
                Some(Self { url, admin_url: None, name: None, _dir: Some(dir) })
            }
            Backend::Postgres => {
                let admin = service_url(DATABASE_VAR)?;
                let name = unique_name("palisade_t");
                let mut conn = PgConnection::connect(&admin).await.expect("connect as admin");
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create db");
                let owner_url = with_database(&admin, &name, None);
                let metrics =
                    palisade_ops::Metrics::new(palisade_ops::metrics::BuildInfo { version: "t", git_sha: "t" })
                        .expect("metrics");
                let config =
                    palisade_store::DatabaseConfig { url: SecretString::from(owner_url.clone()), ..Default::default() };
                let db = palisade_store::Database::connect(&config, metrics).await.expect("connect owner");
                db.migrate().await.expect("migrate");
                db.close().await;
                let mut owner = PgConnection::connect(&owner_url).await.expect("connect owner");
                sqlx::raw_sql(
                    "DO $$ BEGIN CREATE ROLE palisade_test_app LOGIN IN ROLE palisade_app; \
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
                )
                .execute(&mut owner)
                .await
                .expect("create login role");
                let url = with_database(&admin, &name, Some("palisade_test_app"));
                Some(Self { url, admin_url: Some(owner_url), name: Some(name), _dir: None })
            }
        }
    }
}

impl TestDatabase {
    /// Another handle on the same database for a second server; it does not drop the database.
    pub fn shared(&self) -> Self {
        Self { url: self.url.clone(), admin_url: self.admin_url.clone(), name: None, _dir: None }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (Some(name), Some(admin)) = (self.name.take(), std::env::var(DATABASE_VAR).ok()) else {
            return;
        };
        // Drop runs outside any runtime we may block on: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// `admin` with its database (and optionally its user, without password) replaced.
pub fn with_database(admin: &str, database: &str, user: Option<&str>) -> String {
    let mut url = url::Url::parse(admin).expect("admin url");
    url.set_path(&format!("/{database}"));
    if let Some(user) = user {
        url.set_username(user).expect("set user");
        url.set_password(None).expect("set password");
    }
    url.to_string()
}

/// Settings for a test server on `backend`: port 0, its own database, its own Redis prefix.
pub fn settings_for(backend: Backend, database: &TestDatabase) -> Option<Settings> {
    let mut settings = Settings::default();
    settings.server.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.shutdown_timeout = Duration::from_secs(5);
    settings.database.url = SecretString::from(database.url.clone());
    settings.database.auto_migrate = Some(backend == Backend::Sqlite);
    if backend == Backend::Postgres {
        settings.redis.url = Some(SecretString::from(service_url(REDIS_VAR)?));
        settings.redis.key_prefix = unique_name("palisade-test");
    }
    Some(settings)
}

/// Starts a server on `backend`, after `configure` adjusts its settings. `None` when the backend's
/// services are not configured (outside CI only).
pub async fn spawn_app(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    spawn_app_with(backend, Router::new(), configure).await
}

/// As [`spawn_app`], with extra routes mounted under the real middleware stack.
pub async fn spawn_app_with(
    backend: Backend,
    extra: Router<AppState>,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let database = TestDatabase::create(backend).await?;
    let mut settings = settings_for(backend, &database)?;
    configure(&mut settings);
    Some(start(settings, extra, backend, database).await)
}

/// Starts a server from explicit settings (several instances can share one database).
pub async fn start(settings: Settings, extra: Router<AppState>, backend: Backend, database: TestDatabase) -> TestApp {
    let application = Application::build_with(settings, extra).await.expect("application builds");
    let addr = application.local_addr().expect("local addr");
    let state = application.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        base_url: format!("http://{addr}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        state,
        backend,
        database,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Sends `method path` with a bearer token and an optional JSON body.
pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// Creates a todo (the example resource) and returns its body.
pub async fn create_todo(app: &TestApp, token: &str, title: &str) -> serde_json::Value {
    let response =
        send(app, reqwest::Method::POST, "/api/v1/todos", token, Some(serde_json::json!({"title": title}))).await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    response.json().await.unwrap()
}
