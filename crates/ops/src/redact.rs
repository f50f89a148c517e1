//! Serializers that let configuration be printed (`palisade config check`) without its secrets.
//! Use them with `#[serde(serialize_with = "…")]` on `SecretString` fields.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// What a set secret prints as.
pub const REDACTED: &str = "[REDACTED]";

pub fn secret<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(REDACTED)
}

pub fn optional_secret<S: Serializer>(value: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// A connection URL with its password (and any query string, which can carry one) hidden:
/// `postgres://app:hunter2@db/palisade` prints as `postgres://app:[REDACTED]@db/palisade`.
pub fn url<S>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
{
    serializer.serialize_str(&redact_url(value.expose_secret()))
}

pub fn optional_url<S: Serializer>(value: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(url) => serializer.serialize_str(&redact_url(url.expose_secret())),
        None => serializer.serialize_none(),
    }
}

pub fn redact_url(raw: &str) -> String {
    let without_query = raw.split_once('?').map_or(raw, |(head, _)| head);
    let suffix = if without_query.len() < raw.len() { "?[REDACTED]" } else { "" };
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return format!("{without_query}{suffix}");
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { format!("{user}:{REDACTED}") } else { user.to_owned() };
            format!("{scheme}://{hidden}@{host}{suffix}")
        }
        None => format!("{scheme}://{rest}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_hidden() {
        assert_eq!(redact_url("postgres://app:hunter2@db:5432/p"), "postgres://app:[REDACTED]@db:5432/p");
        assert_eq!(redact_url("redis://:s3cret@cache:6379/0"), "redis://:[REDACTED]@cache:6379/0");
    }

    #[test]
    fn a_query_string_is_hidden_and_a_plain_url_kept() {
        assert_eq!(redact_url("postgres://db/p?password=x"), "postgres://db/p?[REDACTED]");
        assert_eq!(redact_url("sqlite://data/palisade.db"), "sqlite://data/palisade.db");
    }
}
