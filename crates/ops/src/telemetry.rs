//! Logging: one subscriber, pretty for people in development and JSON for machines in production.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The `[log]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` or `json`; unset means pretty in development and JSON elsewhere.
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: None, filter: "info".to_owned() }
    }
}

/// Installs the global subscriber. A second call (tests starting several servers) is a no-op.
pub fn init(config: &LogConfig, default_format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format.unwrap_or(default_format) {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("a global subscriber is already installed");
    }
}
