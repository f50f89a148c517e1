//! The `palisade` command line. Exit codes: 0 success, 1 runtime failure, 2 configuration problem.

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use palisade_auth::{DevTokenRequest, mint_dev_token};
use palisade_ops::{server::shutdown_signal, telemetry};
use palisade_store::Database;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Application, Settings, StartupError};

const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "palisade", version, about = "Multi-tenant SaaS API server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations (run with the owner role), then exit.
    Migrate,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when the server's /health answers 200 (for container HEALTHCHECKs without curl).
    Healthcheck {
        /// Defaults to /health on the configured listen address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print a development access token (development only; refused elsewhere).
    Token {
        /// The tenant claim: a tenant slug (`demo` exists in development) or uuid.
        #[arg(long)]
        tenant: Option<String>,
        /// The subject (user id at the issuer).
        #[arg(long)]
        sub: String,
        /// Comma-separated scopes, e.g. todos:read,todos:write.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every problem with it.
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("palisade: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command.unwrap_or(Command::Serve)))
}

async fn run(command: Command) -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("palisade: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Config { command: ConfigCommand::Check } => config_check(&settings),
        Command::Healthcheck { url } => healthcheck(&settings, url).await,
        Command::Token { tenant, sub, scopes, ttl } => {
            token(&settings, DevTokenRequest { subject: sub, tenant, scopes, ttl })
        }
    }
}

/// Logs, plus OpenTelemetry and Sentry's tracing layers when configured. Keep the guard until the
/// process is done: dropping it flushes the spans still buffered.
fn init_logging(settings: &Settings) -> telemetry::TelemetryGuard {
    let default_format =
        if settings.environment.is_development() { telemetry::LogFormat::Pretty } else { telemetry::LogFormat::Json };
    telemetry::init(&telemetry::TelemetryOptions {
        log: &settings.log,
        default_format,
        telemetry: &settings.telemetry,
        service: &settings.service_info(),
        sentry: settings.sentry.enabled(),
    })
}

async fn serve(settings: Settings) -> ExitCode {
    let _telemetry = init_logging(&settings);
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error @ StartupError::Config(_)) => {
            eprintln!("palisade: refusing to start: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(error) => {
            tracing::error!(%error, "startup failed");
            eprintln!("palisade: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(sentry) = application.sentry() {
        sentry.bind_to_process();
    }
    match application.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: Settings) -> ExitCode {
    let _telemetry = init_logging(&settings);
    let metrics = match palisade_ops::Metrics::new(palisade_ops::metrics::BuildInfo { version: "", git_sha: "" }) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("palisade: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = async {
        let db = Database::connect(&settings.database, metrics).await?;
        db.migrate().await?;
        db.close().await;
        Ok::<_, palisade_store::StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            eprintln!("palisade: migrations applied");
            ExitCode::SUCCESS
        }
        // StoreError::Migrate already says "migration failed"; other errors (connecting) don't.
        Err(error @ palisade_store::StoreError::Migrate(_)) => {
            eprintln!("palisade: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("palisade: migration failed: {error}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the token is the command's output")]
fn token(settings: &Settings, request: DevTokenRequest) -> ExitCode {
    match mint_dev_token(&settings.auth, settings.environment.is_development(), &request) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("palisade: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

#[allow(clippy::print_stdout, reason = "printing the configuration is the command's purpose")]
fn config_check(settings: &Settings) -> ExitCode {
    print!("{}", settings.to_redacted_toml());
    let problems = settings.problems();
    if problems.is_empty() {
        eprintln!("palisade: configuration OK for {}", settings.environment.as_str());
        return ExitCode::SUCCESS;
    }
    eprintln!("palisade: {}", StartupError::Config(problems));
    ExitCode::from(EXIT_CONFIG)
}

/// A plain HTTP/1.1 GET over TCP: the runtime image has no curl, and this needs no TLS (the
/// check runs inside the container against the local listener).
async fn healthcheck(settings: &Settings, url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let mut addr = settings.server.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        format!("http://{addr}/health")
    });
    match tokio::time::timeout(Duration::from_secs(3), http_status(&url)).await {
        Ok(Ok(200)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("palisade: {url} answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("palisade: {url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("palisade: {url}: timed out");
            ExitCode::FAILURE
        }
    }
}

async fn http_status(url: &str) -> std::io::Result<u16> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs are supported"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: palisade-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let read = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..read]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}
