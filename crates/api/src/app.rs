//! Assembling the application from settings, and running it.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use palisade_auth::{AuthError, Authenticator};
use palisade_edge::{Edge, RateLimiter};
use palisade_ops::{Metrics, Readiness, ReadinessCheck, metrics::BuildInfo, sentry::Sentry, serve};
use palisade_store::{Database, Redis, StoreError, database::DatabaseCheck, redis::RedisCheck};
use palisade_tenancy::{
    Memberships, RequestMeta, Tenancy, TenancyError, api_keys::ApiKeyDirectory, tenants::TenantDirectory, write,
};
use tokio::net::TcpListener;

use crate::{
    AppState, Settings, background, middleware, routes,
    state::{self, EdgeCallerLimits},
};

/// How often Redis is pinged in the background so `redis_up` is current between probes.
const REDIS_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Why the server did not start. `Config` lists every problem at once.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("authentication setup failed: {0}")]
    Auth(AuthError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A built application: dependencies connected, router assembled, listener bound.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    sentry: Option<Sentry>,
    setup: Arc<DatabaseSetup>,
    /// The background job runner (docs/jobs.md), unless `jobs.enabled` is off.
    jobs: Option<palisade_jobs::Runner>,
}

impl Application {
    /// Validates settings (refusing insecure ones outside development), connects the stores,
    /// migrates when configured to, checks the database role, and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Router::new()).await
    }

    /// As [`Application::build`], with `extra` routes mounted under the same middleware stack.
    pub async fn build_with(settings: Settings, extra: Router<AppState>) -> Result<Self, StartupError> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(StartupError::Config(problems));
        }
        let metrics = Metrics::new(build_info())?;
        let db = Database::connect(&settings.database, metrics.clone()).await?;
        let setup = Arc::new(DatabaseSetup::new(db.clone(), &settings));
        match setup.run().await {
            Ok(()) => {}
            Err(SetupError::Transient(error)) => tracing::warn!(
                %error,
                "database unreachable at startup; serving with /ready at 503 until it is reachable and set up"
            ),
            Err(SetupError::Fatal(error)) => return Err(error),
        }
        let redis = Redis::connect(&settings.redis, metrics.clone())?;
        let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(DatabaseCheck(db.clone())), setup.clone()];
        if let Some(redis) = &redis {
            checks.push(Arc::new(RedisCheck(redis.clone())));
        }
        let auth =
            Authenticator::new(&settings.auth, settings.environment.is_development(), metrics.clone(), redis.clone())
                .await
                .map_err(|error| match error {
                    AuthError::Config(problems) => StartupError::Config(problems),
                    other => StartupError::Auth(other),
                })?;
        checks.extend(auth.readiness_check());
        let readiness = Readiness::new(settings.readiness.clone(), checks);
        let tenancy = Tenancy {
            config: Arc::new(settings.tenancy.clone()),
            directory: TenantDirectory::new(db.clone(), &settings.tenancy),
            memberships: Memberships::new(&settings.tenancy, redis.clone()),
        };
        auth.set_tenant_ids(Arc::new(tenancy.directory.clone()));
        auth.set_api_keys(Arc::new(ApiKeyDirectory::new(db.clone())));
        let sentry = Sentry::from_config(&settings.sentry, &settings.service_info())
            .map_err(|error| StartupError::Config(vec![error.to_string()]))?;
        let edge = Edge::build(&settings.security_headers, &settings.cors, &settings.client_ip, &settings.compression)
            .map_err(StartupError::Config)?;
        let rate_limiter =
            RateLimiter::new(&settings.rate_limit, redis.clone(), metrics.clone()).map_err(StartupError::Config)?;
        let addr = settings.server.addr;
        if settings.environment.is_development() && settings.auth.issuer.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "development tokens (a public secret) are accepted on a non-loopback address: anyone who can \
                 reach it can mint any token; set PALISADE_ENVIRONMENT=production for a shared deployment"
            );
        }
        let jobs = match settings.jobs.enabled {
            true => Some(
                background::runner(&db, &settings, metrics.clone())
                    .map_err(|error| StartupError::Config(vec![format!("webhooks: {error}")]))?,
            ),
            false => None,
        };
        let caller_limits = Arc::new(EdgeCallerLimits { limiter: rate_limiter.clone(), auth: auth.clone() });
        let state = AppState::new(state::Parts {
            settings: Arc::new(settings),
            metrics,
            readiness,
            db,
            redis,
            auth,
            tenancy,
            edge,
            rate_limiter,
            caller_limits,
        });
        let router = build_router(state.clone(), extra, sentry.clone());
        let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self { listener, router, state, sentry, setup, jobs })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The Sentry client, when `sentry.dsn` is set.
    pub fn sentry(&self) -> Option<&Sentry> {
        self.sentry.as_ref()
    }

    /// Serves until `shutdown` resolves, drains, then closes the pools. When the database setup
    /// deferred at startup is refused (an unsafe role outside development, a failing migration),
    /// the server drains and stops, and this returns the reason as an error.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let Self { listener, router, state, sentry, setup, jobs } = self;
        tracing::info!(addr = %listener.local_addr()?, environment = state.settings.environment.as_str(), "listening");
        let pinger = state.redis.clone().map(|redis| tokio::spawn(keep_redis_up_current(redis)));
        let retrier = tokio::spawn(setup.clone().retry_until_done());
        let jobs = jobs.map(palisade_jobs::Runner::start);
        let stop = async {
            tokio::select! {
                () = shutdown => {}
                () = setup.refused() => {}
            }
            // Jobs drain alongside the HTTP connections: running ones get jobs.drain_timeout.
            if let Some(jobs) = &jobs {
                jobs.begin_drain();
            }
        };
        let mut result =
            serve(listener, router, &state.settings.server, state.readiness.clone(), state.metrics.clone(), stop).await;
        if let Some(jobs) = jobs {
            jobs.drained().await;
        }
        retrier.abort();
        if let Some(pinger) = pinger {
            pinger.abort();
        }
        if let Some(reason) = setup.refusal() {
            result = result.and(Err(std::io::Error::other(format!("refusing to serve: {reason}"))));
        }
        // Connections still checked out by requests abandoned at the deadline would hold this
        // up; the process is exiting, so give closing a bound of its own.
        if tokio::time::timeout(Duration::from_secs(5), state.db.close()).await.is_err() {
            tracing::warn!("database pool did not close in time; exiting anyway");
        }
        if let Some(sentry) = sentry {
            sentry.close().await;
        }
        tracing::info!("stopped");
        result
    }
}

/// The router with every route and the whole middleware stack, separate from serving.
/// [`Application::build_with`] calls it once; `extra` routes (tests mount a panicking or a slow
/// handler this way) are merged in before the middleware is applied, so they run under the real
/// stack.
pub fn build_router(state: AppState, extra: Router<AppState>, sentry: Option<Sentry>) -> Router {
    let metrics = state.metrics.clone();
    let server = state.settings.server.clone();
    let access_log = palisade_ops::AccessLog::new(&state.settings.log);
    let (edge, rate_limiter) = (state.edge.clone(), state.rate_limiter.clone());
    let router = routes::router(state.settings.api_docs()).merge(extra).fallback(routes::fallback).with_state(state);
    middleware::apply(router, metrics, &server, access_log, sentry, &edge, rate_limiter)
}

fn build_info() -> BuildInfo {
    BuildInfo { version: env!("CARGO_PKG_VERSION"), git_sha: option_env!("PALISADE_GIT_SHA").unwrap_or("unknown") }
}

/// The `demo` tenant of development, so `palisade token --tenant demo` works on a fresh clone.
pub const DEMO_TENANT: &str = "demo";

async fn seed_demo_tenant(db: &Database) -> Result<(), StartupError> {
    match write::create_tenant(db, DEMO_TENANT, "Demo", "system", &RequestMeta::default()).await {
        Ok(_) => tracing::info!("created the demo tenant"),
        Err(TenancyError::SlugTaken(_)) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// The work that needs the database before this instance may take traffic: migrations (when
/// configured), the check of the role it connects as, and the development demo tenant. Run at
/// startup; when the database is unreachable then, retried in the background while `/ready`
/// answers 503 (check `startup`), so an outage at deploy time delays readiness instead of
/// crash-looping the pods. A refusal (an unsafe role outside development, a failing migration)
/// is final: the check fails for good and [`Application::run_until`] stops the server.
#[derive(Debug)]
struct DatabaseSetup {
    db: Database,
    auto_migrate: bool,
    development: bool,
    seed_demo_tenant: bool,
    state: std::sync::Mutex<SetupState>,
    refused: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
enum SetupState {
    Pending,
    Done,
    Refused(String),
}

#[derive(Debug)]
enum SetupError {
    /// The database could not be reached; try again later.
    Transient(StoreError),
    Fatal(StartupError),
}

impl From<StoreError> for SetupError {
    fn from(error: StoreError) -> Self {
        StartupError::Store(error).into()
    }
}

impl From<StartupError> for SetupError {
    fn from(error: StartupError) -> Self {
        match error {
            StartupError::Store(store) if store.is_transient() => Self::Transient(store),
            StartupError::Tenancy(TenancyError::Store(store)) if store.is_transient() => Self::Transient(store),
            other => Self::Fatal(other),
        }
    }
}

/// Pause between attempts while the database is unreachable (each attempt also waits up to
/// `database.acquire_timeout`).
const SETUP_RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl DatabaseSetup {
    fn new(db: Database, settings: &Settings) -> Self {
        Self {
            db,
            auto_migrate: settings.auto_migrate(),
            development: settings.environment.is_development(),
            seed_demo_tenant: settings.environment.is_development() && settings.tenancy.seed_demo_tenant,
            state: std::sync::Mutex::new(SetupState::Pending),
            refused: tokio::sync::Notify::new(),
        }
    }

    fn current(&self) -> SetupState {
        self.state.lock().map_or(SetupState::Pending, |state| state.clone())
    }

    fn set(&self, state: SetupState) {
        if let Ok(mut current) = self.state.lock() {
            *current = state;
        }
    }

    async fn run(&self) -> Result<(), SetupError> {
        self.db.ping().await?;
        if self.auto_migrate {
            self.db.migrate().await?;
        }
        let role_problems = self.db.role_problems().await?;
        if !role_problems.is_empty() {
            if !self.development {
                return Err(SetupError::Fatal(StartupError::Config(role_problems)));
            }
            for problem in role_problems {
                tracing::warn!("{problem} (tolerated in development only)");
            }
        }
        if self.seed_demo_tenant {
            seed_demo_tenant(&self.db).await?;
        }
        self.set(SetupState::Done);
        Ok(())
    }

    /// Retries a setup deferred at startup until it is done or refused.
    async fn retry_until_done(self: Arc<Self>) {
        while matches!(self.current(), SetupState::Pending) {
            match self.run().await {
                Ok(()) => tracing::info!("database reachable; setup done, instance may become ready"),
                Err(SetupError::Transient(error)) => {
                    tracing::debug!(%error, "database still unreachable");
                    tokio::time::sleep(SETUP_RETRY_INTERVAL).await;
                }
                Err(SetupError::Fatal(error)) => {
                    tracing::error!(%error, "refusing to serve");
                    self.set(SetupState::Refused(error.to_string()));
                    self.refused.notify_one();
                }
            }
        }
    }

    /// Resolves when the setup has been refused.
    async fn refused(&self) {
        self.refused.notified().await;
    }

    fn refusal(&self) -> Option<String> {
        match self.current() {
            SetupState::Refused(reason) => Some(reason),
            _ => None,
        }
    }
}

impl ReadinessCheck for DatabaseSetup {
    fn name(&self) -> &'static str {
        "startup"
    }

    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        let outcome = match self.current() {
            SetupState::Done => Ok(()),
            SetupState::Pending => Err("database setup (migrations, role check) not done yet".to_owned()),
            SetupState::Refused(reason) => Err(format!("refused: {reason}")),
        };
        Box::pin(std::future::ready(outcome))
    }
}

async fn keep_redis_up_current(redis: Redis) {
    let mut interval = tokio::time::interval(REDIS_PING_INTERVAL);
    loop {
        interval.tick().await;
        if let Err(error) = redis.ping().await {
            tracing::debug!(%error, "background redis ping failed");
        }
    }
}
