//! The `[auth]` configuration section.

use std::{str::FromStr, time::Duration};

use jsonwebtoken::Algorithm;
use palisade_ops::redact;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// What to do with a request when the revocation list (Redis) cannot be read.
/// The reasoning behind the default is in docs/adr/0002-revocation-when-redis-is-unreachable.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationFailureMode {
    /// Let the request through (the token's signature and expiry were still checked), count the
    /// Redis error and log a warning: a Redis outage does not take the API down.
    #[default]
    Open,
    /// Refuse the request with 503: no revoked token is ever honoured, at the price of Redis
    /// becoming a hard dependency of every authenticated request.
    Closed,
}

/// The `[auth]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The OpenID Connect issuer URL, exactly as it appears in the tokens' `iss` claim. Setting it
    /// switches verification to the issuer's published keys (OIDC mode); leaving it unset means
    /// development mode, where only HS256 tokens signed with the development secret are accepted,
    /// and only when the environment is `development`.
    pub issuer: Option<String>,
    /// The audience (`aud`) tokens must be issued for; required outside development so that a
    /// token the issuer minted for another API is not accepted here. In development mode it
    /// defaults to `palisade`.
    pub audience: Option<String>,
    /// Where the issuer publishes its signing keys. Unset: discovered from
    /// `{issuer}/.well-known/openid-configuration`, which is what most providers expect.
    pub jwks_uri: Option<String>,
    /// Signature algorithms accepted from the issuer. Asymmetric only: `none` and the HS family are
    /// refused outside development because a shared secret cannot come from a public key set.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim holding the tenant (a slug or a uuid); providers name custom claims differently
    /// (e.g. `https://example.com/tenant_id` on Auth0).
    pub tenant_claim: String,
    /// The HS256 secret of development tokens. Unset: a built-in secret, which is fine because
    /// development tokens are never accepted outside the `development` environment.
    #[serde(serialize_with = "redact::optional_secret")]
    pub dev_secret: Option<SecretString>,
    /// How often the issuer's keys are refetched in the background, so that a rotated key is
    /// known before the first token signed with it arrives.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// Tokens naming an unknown key id trigger at most this many refetches in any minute: enough
    /// to follow a key rotation (even two in quick succession) at once, while a flood of made-up
    /// key ids cannot be turned into a flood of requests to the provider. 0: only the background
    /// refresh learns new keys.
    pub jwks_unknown_kid_refetches_per_minute: u32,
    /// Each request to the provider (discovery, key set) gives up after this long, so a hanging
    /// provider delays neither startup nor requests for long.
    #[serde(with = "humantime_serde")]
    pub jwks_fetch_timeout: Duration,
    /// `open` or `closed`: whether a request is let through or refused (503) when the shared
    /// revocation list in Redis cannot be read. See docs/adr/0002-revocation-when-redis-is-unreachable.md.
    pub revocation_failure_mode: RevocationFailureMode,
    /// In OIDC mode, `/ready` fails until the issuer's signing keys have been loaded once: an
    /// instance that cannot verify any token should take no traffic.
    pub ready_requires_signing_keys: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            jwks_uri: None,
            algorithms: ["RS256", "PS256", "ES256", "EdDSA"].map(String::from).to_vec(),
            leeway: Duration::from_secs(30),
            tenant_claim: "tenant_id".to_owned(),
            dev_secret: None,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_unknown_kid_refetches_per_minute: 6,
            jwks_fetch_timeout: Duration::from_secs(5),
            revocation_failure_mode: RevocationFailureMode::Open,
            ready_requires_signing_keys: true,
        }
    }
}

/// Development secrets shorter than this make HS256 tokens guessable offline.
const MIN_DEV_SECRET_BYTES: usize = 32;

/// More clock skew than this lets an expired token live on noticeably.
const MAX_PRODUCTION_LEEWAY: Duration = Duration::from_secs(300);

/// Above this (one a second), unknown key ids can make the server hammer the provider.
const MAX_PRODUCTION_REFETCHES_PER_MINUTE: u32 = 60;

impl AuthConfig {
    /// Mistakes that make the section unusable in any environment; [`crate::Authenticator::new`]
    /// refuses to start with any of them.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.algorithms.is_empty() {
            problems.push("auth.algorithms is empty: no token could ever be accepted".to_owned());
        }
        for name in &self.algorithms {
            if name.eq_ignore_ascii_case("none") {
                problems.push("auth.algorithms contains `none`: unsigned tokens are never accepted".to_owned());
            } else if Algorithm::from_str(name).is_err() {
                problems.push(format!(
                    "auth.algorithms contains `{name}`, which is not a supported algorithm \
                     (RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
                ));
            }
        }
        if self.tenant_claim.trim().is_empty() {
            problems.push("auth.tenant_claim is empty".to_owned());
        }
        if self.issuer.as_deref().is_some_and(|issuer| issuer.trim().is_empty()) {
            problems.push("auth.issuer is set but empty: unset it for development mode".to_owned());
        }
        if self.jwks_refresh_interval.is_zero() {
            problems.push("auth.jwks_refresh_interval must be greater than 0".to_owned());
        }
        if self.jwks_fetch_timeout.is_zero() {
            problems.push("auth.jwks_fetch_timeout must be greater than 0".to_owned());
        }
        if self.dev_secret.as_ref().is_some_and(|secret| secret.expose_secret().len() < MIN_DEV_SECRET_BYTES) {
            problems.push(format!("auth.dev_secret must be at least {MIN_DEV_SECRET_BYTES} bytes long"));
        }
        problems
    }

    /// Every insecure setting for an environment other than development, plus [`Self::problems`];
    /// the api crate merges these into one startup error.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = self.problems();
        match self.issuer.as_deref() {
            None => problems.push(
                "auth.issuer is not set: only development tokens could be verified, and they are refused \
                 outside development (set it to your OpenID Connect provider's issuer URL)"
                    .to_owned(),
            ),
            Some(issuer) if !is_https(issuer) => problems.push(format!(
                "auth.issuer `{issuer}` is not an https URL (plain http is accepted only to 127.0.0.1, ::1 or localhost): signing keys \
                 fetched over plain HTTP can be replaced in transit"
            )),
            Some(_) => {}
        }
        if let Some(uri) = self.jwks_uri.as_deref().filter(|uri| !is_https(uri)) {
            problems.push(format!(
                "auth.jwks_uri `{uri}` is not an https URL (plain http is accepted only to 127.0.0.1, ::1 or localhost): signing keys \
                 fetched over plain HTTP can be replaced in transit"
            ));
        }
        if self.audience.as_deref().is_none_or(|audience| audience.trim().is_empty()) {
            problems.push(
                "auth.audience is not set: tokens the issuer minted for any other API would be accepted".to_owned(),
            );
        }
        if self.dev_secret.is_some() {
            problems.push(
                "auth.dev_secret is set: development tokens are never accepted outside development, so a \
                 secret here only risks leaking (remove it)"
                    .to_owned(),
            );
        }
        for name in &self.algorithms {
            if name.to_ascii_uppercase().starts_with("HS") {
                problems.push(format!(
                    "auth.algorithms contains `{name}`: HMAC needs a shared secret, which an OpenID Connect \
                     issuer does not publish (use RS256, PS256, ES256 or EdDSA)"
                ));
            }
        }
        if self.leeway > MAX_PRODUCTION_LEEWAY {
            problems.push(format!(
                "auth.leeway is {}: more than {} lets expired tokens through for too long",
                humantime::format_duration(self.leeway),
                humantime::format_duration(MAX_PRODUCTION_LEEWAY)
            ));
        }
        if self.jwks_unknown_kid_refetches_per_minute > MAX_PRODUCTION_REFETCHES_PER_MINUTE {
            problems.push(format!(
                "auth.jwks_unknown_kid_refetches_per_minute is above {MAX_PRODUCTION_REFETCHES_PER_MINUTE}: tokens \
                 with made-up key ids could make the server hammer the identity provider"
            ));
        }
        problems
    }

    /// The accepted algorithms, parsed. Call only after [`Self::problems`] came back empty.
    pub(crate) fn parsed_algorithms(&self) -> Vec<Algorithm> {
        self.algorithms.iter().filter_map(|name| Algorithm::from_str(name).ok()).collect()
    }
}

/// Whether keys fetched from `url` cannot be replaced in transit: https, or plain http to this
/// machine's loopback interface (no network in between, as RFC 8252 §8.3 reasons for loopback
/// redirects), which is what a local issuer for trying production mode uses.
fn is_https(url: &str) -> bool {
    if url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")) {
        return true;
    }
    let Some(rest) = url.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("http://")).and(url.get(7..)) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_accepted_only_to_the_loopback_interface() {
        for url in
            ["https://id.example.com", "http://127.0.0.1:9400", "http://localhost/keys", "http://[::1]:8080/jwks"]
        {
            assert!(is_https(url), "{url}");
        }
        for url in
            ["http://id.example.com", "http://127.0.0.1.evil.com/", "http://localhost@evil.com/", "http://10.0.0.1"]
        {
            assert!(!is_https(url), "{url}");
        }
    }

    fn production_ready() -> AuthConfig {
        AuthConfig {
            issuer: Some("https://id.example.com/realms/palisade".into()),
            audience: Some("palisade".into()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_production_ready_section_has_no_problems() {
        assert_eq!(production_ready().production_problems(), Vec::<String>::new());
    }

    #[test]
    fn the_defaults_are_usable_in_development_but_refused_in_production() {
        let config = AuthConfig::default();
        assert!(config.problems().is_empty());
        let problems = config.production_problems();
        assert!(problems.iter().any(|p| p.starts_with("auth.issuer is not set")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("auth.audience is not set")), "{problems:?}");
    }

    #[test]
    fn every_insecure_production_setting_is_listed_at_once() {
        let config = AuthConfig {
            issuer: Some("http://id.example.com".into()),
            jwks_uri: Some("http://id.example.com/keys".into()),
            audience: None,
            algorithms: vec!["RS256".into(), "HS256".into(), "none".into()],
            dev_secret: Some(SecretString::from("x".repeat(40))),
            leeway: Duration::from_secs(3600),
            jwks_unknown_kid_refetches_per_minute: 1000,
            ..AuthConfig::default()
        };
        let problems = config.production_problems().join("\n");
        for expected in [
            "auth.issuer `http://id.example.com` is not an https URL",
            "auth.jwks_uri `http://id.example.com/keys` is not an https URL",
            "auth.audience is not set",
            "auth.dev_secret is set",
            "auth.algorithms contains `HS256`",
            "auth.algorithms contains `none`",
            "auth.leeway is 1h",
            "auth.jwks_unknown_kid_refetches_per_minute is above 60",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in\n{problems}");
        }
    }

    #[test]
    fn unknown_algorithm_names_and_short_dev_secrets_are_problems_everywhere() {
        let config = AuthConfig {
            algorithms: vec!["RS256".into(), "XS999".into()],
            dev_secret: Some(SecretString::from("short")),
            ..AuthConfig::default()
        };
        let problems = config.problems().join("\n");
        assert!(problems.contains("`XS999`, which is not a supported algorithm"), "{problems}");
        assert!(problems.contains("auth.dev_secret must be at least 32 bytes"), "{problems}");
    }

    #[test]
    fn the_dev_secret_never_appears_when_the_config_is_printed() {
        let config = AuthConfig { dev_secret: Some(SecretString::from("s".repeat(40))), ..AuthConfig::default() };
        let json = serde_json::to_string(&config).unwrap_or_default();
        assert!(!json.contains("ssss"), "{json}");
        assert!(json.contains(redact::REDACTED), "{json}");
        assert!(!format!("{config:?}").contains("ssss"));
    }

    #[test]
    fn the_section_reads_durations_in_human_form_and_rejects_unknown_keys() {
        let config: AuthConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://id.example.com",
            "leeway": "10s",
            "jwks_refresh_interval": "2m",
            "revocation_failure_mode": "closed",
        }))
        .expect("valid section");
        assert_eq!(config.leeway, Duration::from_secs(10));
        assert_eq!(config.jwks_refresh_interval, Duration::from_secs(120));
        assert_eq!(config.revocation_failure_mode, RevocationFailureMode::Closed);
        assert_eq!(config.tenant_claim, "tenant_id");
        let unknown = serde_json::from_value::<AuthConfig>(serde_json::json!({ "isuer": "typo" }));
        assert!(unknown.is_err());
    }
}
