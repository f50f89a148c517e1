//! Settings: every crate's section, assembled and layered as docs/configuration.md documents:
//! built-in defaults < `config/default.toml` < `config/{environment}.toml` < environment variables
//! (`PALISADE_<SECTION>__<KEY>`, plus the well-known `DATABASE_URL`, `REDIS_URL`, `SENTRY_DSN` and
//! `OTEL_EXPORTER_OTLP_ENDPOINT`).

use std::{collections::HashMap, path::PathBuf};

use palisade_auth::AuthConfig;
use palisade_edge::{ClientIpConfig, CompressionConfig, CorsConfig, RateLimitConfig, SecurityHeadersConfig};
use palisade_jobs::JobsConfig;
use palisade_ops::{
    ReadinessConfig, ServerConfig,
    sentry::SentryConfig,
    telemetry::{LogConfig, ServiceInfo, TelemetryConfig},
};
use palisade_store::{Backend, DatabaseConfig, RedisConfig};
use palisade_tenancy::TenancyConfig;

use crate::webhooks::WebhooksConfig;
use serde::{Deserialize, Serialize};

use crate::data_rights::ExportsConfig;

/// Where the process runs. Anything but `development` is treated as production: insecure
/// settings are refused at startup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn is_development(self) -> bool {
        self == Self::Development
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `development`, `staging` or `production` (`PALISADE_ENVIRONMENT`).
    pub environment: Environment,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub readiness: ReadinessConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub sentry: SentryConfig,
    pub auth: AuthConfig,
    pub tenancy: TenancyConfig,
    pub security_headers: SecurityHeadersConfig,
    pub cors: CorsConfig,
    pub client_ip: ClientIpConfig,
    pub rate_limit: RateLimitConfig,
    pub compression: CompressionConfig,
    pub api_docs: ApiDocsConfig,
    pub jobs: JobsConfig,
    pub webhooks: WebhooksConfig,
    pub exports: ExportsConfig,
}

/// `[api_docs]`: the API reference page (Swagger UI) at `/docs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiDocsConfig {
    /// Serve the page. Unset: on in development, off elsewhere (the document itself,
    /// `/api/v1/openapi.json`, is always served).
    pub enabled: Option<bool>,
}

/// Settings could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    /// Variables or config-file keys that name no setting: a typo must not silently leave the
    /// default in place (a misspelt `PALISADE_ENVIRONMENT` would run production as development).
    #[error("configuration error: {} name(s) no setting:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Unknown(Vec<String>),
}

/// `PALISADE_*` variables that are not settings but belong to the project's own tooling (the
/// test harness, the smoke test, the Compose file and the image build), so they may be present
/// in the server's environment.
const NOT_SETTINGS: &[&str] = &[
    "PALISADE_CONFIG_DIR",
    "PALISADE_BIN",
    "PALISADE_GIT_SHA",
    "PALISADE_VERSION",
    "PALISADE_PUBLISH_ADDR",
    "PALISADE_PUBLISH_PORT",
];

/// Env vars whose well-known names are honoured, and the keys they fill in. A
/// `PALISADE_<SECTION>__<KEY>` variable for the same key wins.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SENTRY_DSN", "sentry.dsn"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// `PALISADE_ENVIRONMENT` and `PALISADE_<SECTION>__<KEY>` are settings; other `PALISADE_*`
/// variables (`PALISADE_CONFIG_DIR`, the test harness's `PALISADE_TEST_*`) are not.
fn is_setting_variable(name: &str) -> bool {
    name == "PALISADE_ENVIRONMENT" || name.strip_prefix("PALISADE_").is_some_and(|rest| rest.contains("__"))
}

impl Settings {
    /// Reads settings from the process environment and `./config` (or `PALISADE_CONFIG_DIR`).
    pub fn load() -> Result<Self, LoadError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = env.get("PALISADE_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        Self::load_from(&env, &dir)
    }

    /// As [`Settings::load`], from an explicit environment (tests) and config directory.
    pub fn load_from(env: &HashMap<String, String>, config_dir: &std::path::Path) -> Result<Self, LoadError> {
        let environment = env.get("PALISADE_ENVIRONMENT").map_or("development", String::as_str).to_lowercase();
        let known = known_keys();
        let mut unknown = unknown_variables(env, &known);
        let files = [config_dir.join("default"), config_dir.join(&environment)];
        for file in &files {
            unknown.extend(unknown_file_keys(file, &known)?);
        }
        if !unknown.is_empty() {
            return Err(LoadError::Unknown(unknown));
        }
        if let Some(problem) = invalid_environment(&environment) {
            return Err(LoadError::Unknown(vec![problem]));
        }
        let palisade_env: config::Map<String, String> =
            env.iter().filter(|(k, _)| is_setting_variable(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut builder = config::Config::builder()
            .add_source(config::File::from(config_dir.join("default")).required(false))
            .add_source(config::File::from(config_dir.join(&environment)).required(false))
            .add_source(
                config::Environment::with_prefix("PALISADE")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("cors.allowed_origins")
                    .with_list_parse_key("cors.allowed_methods")
                    .with_list_parse_key("cors.allowed_headers")
                    .with_list_parse_key("cors.exposed_headers")
                    .with_list_parse_key("client_ip.trusted_proxies")
                    .with_list_parse_key("auth.algorithms")
                    .with_list_parse_key("tenancy.resolution_order")
                    .with_list_parse_key("webhooks.allow_networks")
                    .source(Some(palisade_env)),
            );
        for (name, key) in WELL_KNOWN {
            let specific = format!("PALISADE_{}", key.replace('.', "__").to_uppercase());
            if let Some(value) = env.get(*name).filter(|_| !env.contains_key(&specific)) {
                builder = builder.set_override(*key, value.as_str())?;
            }
        }
        Ok(builder.build()?.try_deserialize()?)
    }

    /// Every problem with these settings, all at once. Outside development this includes each
    /// insecure setting; the server refuses to start while the list is not empty. Each problem
    /// names the environment variable of the first setting it mentions, since that is what an
    /// operator of a container sets.
    pub fn problems(&self) -> Vec<String> {
        let known = known_keys();
        self.raw_problems().into_iter().map(|problem| with_variable(problem, &known)).collect()
    }

    fn raw_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.server.body_limit_bytes == 0 {
            problems.push("server.body_limit_bytes must be greater than 0".to_owned());
        }
        if self.database.max_connections == Some(0) {
            problems.push("database.max_connections must be greater than 0".to_owned());
        }
        let backend = match self.database.backend() {
            Ok(backend) => Some(backend),
            Err(error) => {
                problems.push(format!("database.url: {error}"));
                None
            }
        };
        if let Some(backend) = backend
            && self.database.min_connections > self.database.pool_size(backend)
        {
            problems.push("database.min_connections exceeds database.max_connections".to_owned());
        }
        problems.extend(self.auth.problems());
        problems.extend(self.tenancy.problems());
        problems.extend(self.jobs.problems());
        problems.extend(self.webhooks.problems());
        // A delivery attempt must end before its job's lease does, or another worker would start
        // the same attempt while the first is still sending.
        if self.webhooks.request_timeout >= self.jobs.job_timeout {
            problems.push("webhooks.request_timeout must be shorter than jobs.job_timeout".to_owned());
        }
        problems.extend(self.exports.problems());
        problems.extend(self.log.problems());
        problems.extend(self.telemetry.problems());
        problems.extend(self.sentry.problems());
        let production = !self.environment.is_development();
        problems.extend(self.security_headers.problems());
        problems.extend(self.cors.problems(production));
        problems.extend(self.client_ip.problems(production));
        problems.extend(self.rate_limit.problems(self.redis.url.is_some(), production));
        if self.environment.is_development() {
            return problems;
        }
        let env = self.environment.as_str();
        problems.extend(self.auth.production_problems());
        if backend == Some(Backend::Sqlite) && !self.database.allow_sqlite_in_production {
            problems.push(format!(
                "database.url is SQLite in {env}: use PostgreSQL (DATABASE_URL=postgres://…) or set \
                 database.allow_sqlite_in_production=true for a single-instance deployment"
            ));
        }
        if self.redis.url.is_none() {
            problems.push(format!(
                "redis.url is not set in {env}: rate limits and token revocations would not be shared \
                 between replicas (set REDIS_URL)"
            ));
        }
        problems
    }

    /// The running service as telemetry and Sentry name it.
    pub fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            name: self.telemetry.service_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            environment: self.environment.as_str().to_owned(),
        }
    }

    /// Whether `/docs` is served (see `api_docs.enabled`).
    pub fn api_docs(&self) -> bool {
        self.api_docs.enabled.unwrap_or(self.environment.is_development())
    }

    /// Whether migrations run at startup (see `database.auto_migrate`).
    pub fn auto_migrate(&self) -> bool {
        self.database.auto_migrate.unwrap_or(self.environment.is_development())
    }

    /// The effective settings as TOML, secrets redacted (`palisade config check`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# cannot render settings: {error}\n"))
    }
}

/// Every setting's key (`environment`, `server.addr`, …), with whether it holds a table of
/// names the operator chooses (e.g. `rate_limit.policies`), below which any key is accepted.
fn known_keys() -> std::collections::BTreeMap<String, bool> {
    let mut keys = std::collections::BTreeMap::new();
    let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(Settings::default()) else { return keys };
    for (section, value) in sections {
        match value {
            serde_json::Value::Object(fields) => {
                for (field, value) in fields {
                    keys.insert(format!("{section}.{field}"), value.is_object());
                }
            }
            _ => {
                keys.insert(section, false);
            }
        }
    }
    keys
}

/// `server.addr` → `PALISADE_SERVER__ADDR`.
fn variable_for(key: &str) -> String {
    format!("PALISADE_{}", key.replace('.', "__").to_uppercase())
}

/// Whether `key` (dotted, lowercase) is a setting or lies below a table of chosen names.
fn is_known(key: &str, known: &std::collections::BTreeMap<String, bool>) -> bool {
    if known.contains_key(key) {
        return true;
    }
    let mut parts = key.splitn(3, '.');
    let (Some(section), Some(field), Some(_)) = (parts.next(), parts.next(), parts.next()) else { return false };
    known.get(&format!("{section}.{field}")).copied().unwrap_or(false)
}

/// The closest of `candidates` to `name`, if any is close enough to be the one meant.
fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (strsim::levenshtein(&name.to_lowercase(), &candidate.to_lowercase()), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(2))
        .min()
        .map(|(_, candidate)| candidate)
}

fn suggestion(nearest: Option<&str>) -> String {
    nearest.map_or_else(String::new, |name| format!(" (did you mean `{name}`?)"))
}

/// `PALISADE_*` variables that map to no setting, each with the nearest valid name.
fn unknown_variables(env: &HashMap<String, String>, known: &std::collections::BTreeMap<String, bool>) -> Vec<String> {
    let variables: Vec<String> = known.keys().map(|key| variable_for(key)).collect();
    let mut unknown: Vec<String> = env
        .keys()
        .filter(|name| name.starts_with("PALISADE_"))
        .filter(|name| !NOT_SETTINGS.contains(&name.as_str()) && !name.starts_with("PALISADE_TEST_"))
        .filter(|name| {
            let key = name["PALISADE_".len()..].to_lowercase().replace("__", ".");
            !(name.as_str() == "PALISADE_ENVIRONMENT" || (name.contains("__") && is_known(&key, known)))
        })
        .map(|name| {
            let near = nearest(name, variables.iter().map(String::as_str));
            format!("environment variable {name} is not a setting{}", suggestion(near))
        })
        .collect();
    unknown.sort();
    unknown
}

/// Keys of a config file (`config/default.toml`, …) that map to no setting.
fn unknown_file_keys(
    file: &std::path::Path,
    known: &std::collections::BTreeMap<String, bool>,
) -> Result<Vec<String>, config::ConfigError> {
    let table = config::Config::builder()
        .add_source(config::File::from(file.to_path_buf()).required(false))
        .build()?
        .try_deserialize::<serde_json::Map<String, serde_json::Value>>()?;
    let mut keys = Vec::new();
    for (section, value) in &table {
        match value {
            serde_json::Value::Object(fields) if !known.contains_key(section.as_str()) => {
                keys.extend(fields.keys().map(|field| format!("{section}.{field}")));
            }
            _ => keys.push(section.clone()),
        }
    }
    let mut unknown = Vec::new();
    for key in keys {
        if !is_known(&key, known) {
            let near = nearest(&key, known.keys().map(String::as_str));
            unknown.push(format!("key `{key}` in {} is not a setting{}", file.display(), suggestion(near)));
        }
    }
    Ok(unknown)
}

/// The environment's name, when it is none of the valid ones: listed, with the variable.
fn invalid_environment(name: &str) -> Option<String> {
    let valid = [Environment::Development, Environment::Staging, Environment::Production].map(Environment::as_str);
    (!valid.contains(&name)).then(|| {
        format!(
            "PALISADE_ENVIRONMENT (environment) is `{name}`; valid values: {}{}",
            valid.join(", "),
            suggestion(nearest(name, valid.into_iter()))
        )
    })
}

/// Appends the environment variable of the first setting key `problem` names, unless it names
/// a `PALISADE_` variable already.
fn with_variable(problem: String, known: &std::collections::BTreeMap<String, bool>) -> String {
    if problem.contains("PALISADE_") {
        return problem;
    }
    let key = problem
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|word| word.trim_end_matches('.'))
        .find(|word| word.contains('.') && known.contains_key(*word));
    match key {
        Some(key) => format!("{problem} [{}]", variable_for(key)),
        None => problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(vars: &[(&str, &str)]) -> Settings {
        let env = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::load_from(&env, std::path::Path::new("/nonexistent")).expect("settings load")
    }

    #[test]
    fn with_nothing_set_the_defaults_serve_locally_on_sqlite() {
        let settings = load(&[]);
        assert_eq!(settings.environment, Environment::Development);
        assert_eq!(settings.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database.backend().ok(), Some(Backend::Sqlite));
        assert!(settings.problems().is_empty());
        assert!(settings.auto_migrate());
    }

    #[test]
    fn section_variables_and_well_known_names_are_read() {
        let settings = load(&[
            ("PALISADE_SERVER__ADDR", "0.0.0.0:9000"),
            ("PALISADE_SERVER__REQUEST_TIMEOUT", "5s"),
            ("DATABASE_URL", "postgres://app@db/palisade"),
            ("REDIS_URL", "redis://cache:6379"),
        ]);
        assert_eq!(settings.server.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.server.request_timeout.as_secs(), 5);
        assert_eq!(settings.database.url.expose_secret(), "postgres://app@db/palisade");
        assert!(settings.redis.url.is_some());
    }

    #[test]
    fn the_api_reference_page_is_on_in_development_and_off_elsewhere_unless_enabled() {
        assert!(load(&[]).api_docs());
        assert!(!load(&[("PALISADE_API_DOCS__ENABLED", "false")]).api_docs());
        assert!(!load(&[("PALISADE_ENVIRONMENT", "production")]).api_docs());
        assert!(load(&[("PALISADE_ENVIRONMENT", "staging"), ("PALISADE_API_DOCS__ENABLED", "true")]).api_docs());
        let typo = load_error(&[("PALISADE_API_DOCS__ENABLE", "true")]);
        assert!(typo.contains("PALISADE_API_DOCS__ENABLED"), "{typo}");
    }

    #[test]
    fn a_palisade_variable_wins_over_the_well_known_name() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://generic@db/x"),
            ("PALISADE_DATABASE__URL", "postgres://specific@db/x"),
        ]);
        assert_eq!(settings.database.url.expose_secret(), "postgres://specific@db/x");
    }

    #[test]
    fn production_lists_every_insecure_setting_at_once() {
        let settings = load(&[("PALISADE_ENVIRONMENT", "production")]);
        let problems = settings.problems();
        assert!(problems.iter().any(|p| p.contains("SQLite")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("redis.url")), "{problems:?}");
        assert!(!settings.auto_migrate());
    }

    #[test]
    fn webhook_settings_are_read_from_variables_and_checked_against_the_job_lease() {
        let settings = load(&[
            ("PALISADE_WEBHOOKS__ALLOW_NETWORKS", "127.0.0.0/8,10.20.0.0/16"),
            ("PALISADE_WEBHOOKS__REQUEST_TIMEOUT", "2m"),
        ]);
        assert_eq!(settings.webhooks.allow_networks.len(), 2);
        let problems = settings.problems();
        assert!(problems.iter().any(|p| p.contains("webhooks.request_timeout must be shorter")), "{problems:?}");
    }

    #[test]
    fn palisade_variables_that_are_not_settings_are_left_alone() {
        let settings = load(&[("PALISADE_TEST_DATABASE_URL", "postgres://x"), ("PALISADE_CONFIG_DIR", "/etc/p")]);
        assert_eq!(settings.database.backend().ok(), Some(Backend::Sqlite));
    }

    #[test]
    fn an_unknown_key_is_an_error_not_ignored() {
        let env = [("PALISADE_SERVER__ADRR".to_owned(), "x".to_owned())].into_iter().collect();
        assert!(Settings::load_from(&env, std::path::Path::new("/nonexistent")).is_err());
    }

    fn load_error(vars: &[(&str, &str)]) -> String {
        let env = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::load_from(&env, std::path::Path::new("/nonexistent")).expect_err("refused").to_string()
    }

    #[test]
    fn a_misspelt_variable_is_refused_with_the_nearest_valid_name() {
        let error = load_error(&[("PALISADE_SERVER_ADDR", "0.0.0.0:1"), ("PALISADE_ENVIROMENT", "production")]);
        assert!(
            error.contains("PALISADE_SERVER_ADDR is not a setting (did you mean `PALISADE_SERVER__ADDR`?)"),
            "{error}"
        );
        assert!(
            error.contains("PALISADE_ENVIROMENT is not a setting (did you mean `PALISADE_ENVIRONMENT`?)"),
            "{error}"
        );
        let error = load_error(&[("PALISADE_SERVER__ADRR", "x")]);
        assert!(error.contains("did you mean `PALISADE_SERVER__ADDR`?"), "{error}");
        let error = load_error(&[("PALISADE_WHATEVER", "x")]);
        assert!(error.contains("PALISADE_WHATEVER is not a setting"), "{error}");
    }

    #[test]
    fn chosen_names_below_a_table_are_settings() {
        let settings = load(&[("PALISADE_RATE_LIMIT__POLICIES__ANONYMOUS__BURST", "7")]);
        assert_eq!(settings.rate_limit.policies["anonymous"].burst, 7);
    }

    #[test]
    fn a_misspelt_config_file_key_is_refused_with_the_nearest_valid_name() {
        let dir = std::env::temp_dir().join(format!("palisade-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("default.toml"), "enviroment = \"production\"\n[server]\nadrr = \"x\"\n")
            .expect("write");
        let error = Settings::load_from(&HashMap::new(), &dir).expect_err("refused").to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(error.contains("key `enviroment`") && error.contains("did you mean `environment`?"), "{error}");
        assert!(error.contains("key `server.adrr`") && error.contains("did you mean `server.addr`?"), "{error}");
    }

    #[test]
    fn an_invalid_environment_lists_the_valid_values() {
        let error = load_error(&[("PALISADE_ENVIRONMENT", "prod")]);
        assert!(error.contains("PALISADE_ENVIRONMENT"), "{error}");
        assert!(error.contains("development, staging, production"), "{error}");
    }

    #[test]
    fn problems_name_the_environment_variable_as_well_as_the_key() {
        let problems = load(&[("PALISADE_ENVIRONMENT", "production")]).problems();
        let redis = problems.iter().find(|p| p.contains("redis.url")).expect("redis problem");
        assert!(redis.contains("PALISADE_REDIS__URL"), "{redis}");
    }

    #[test]
    fn the_printed_config_hides_secrets() {
        let settings = load(&[("DATABASE_URL", "postgres://app:hunter2@db/p"), ("REDIS_URL", "redis://:pw@c:6379")]);
        let printed = settings.to_redacted_toml();
        assert!(!printed.contains("hunter2") && !printed.contains(":pw@"), "{printed}");
    }

    #[test]
    fn the_well_known_sentry_and_otlp_variables_are_read_and_the_dsn_is_never_printed() {
        let settings = load(&[
            ("SENTRY_DSN", "https://k3y@o1.ingest.sentry.io/42"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        assert!(settings.sentry.enabled());
        assert_eq!(settings.telemetry.endpoint(), Some("http://collector:4318"));
        assert!(settings.problems().is_empty(), "{:?}", settings.problems());
        let printed = settings.to_redacted_toml();
        assert!(!printed.contains("k3y"), "{printed}");
    }

    #[test]
    fn a_malformed_dsn_or_sampling_ratio_is_a_problem() {
        let settings = load(&[("SENTRY_DSN", "not a dsn"), ("PALISADE_TELEMETRY__SAMPLING_RATIO", "2")]);
        let problems = settings.problems();
        assert!(problems.iter().any(|p| p.contains("sentry.dsn")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("sampling_ratio")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("not a dsn")), "{problems:?}");
    }
}
