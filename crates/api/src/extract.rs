//! `ValidatedJson`: a JSON body that is well-formed, of the right type and valid, or a precise
//! problem: 415 for a wrong content type, 400 for malformed JSON, 413 for an oversized body, 422
//! with field errors for a body of the wrong shape or failing validation.

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::StatusCode,
};
use palisade_ops::{Problem, problem::FieldError};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatedJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidatedJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|error| rejection_problem(JsonRejection::BytesRejection(error)))?;
        Self::from_bytes(&parts.headers, &body)
    }
}

impl<T: DeserializeOwned + Validate> ValidatedJson<T> {
    /// For handlers that also need the raw body (e.g. to fingerprint it for idempotency).
    pub fn from_bytes(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<Self, Problem> {
        let is_json = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(rejection_problem(JsonRejection::MissingJsonContentType(Default::default())));
        }
        let Json(value) = Json::<T>::from_bytes(body).map_err(rejection_problem)?;
        // Parses again (the body is small: the body limit bounds it) to see every string the
        // client sent, whatever the target type: one rule for every text field, on both backends.
        if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(body) {
            let mut errors = Vec::new();
            control_characters(&raw, "", &mut errors);
            if !errors.is_empty() {
                return Err(Problem::validation(errors));
            }
        }
        value.validate().map_err(|errors| Problem::validation(field_errors(&errors, "")))?;
        Ok(Self(value))
    }
}

fn rejection_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as JSON with `Content-Type: application/json`.",
        ),
        JsonRejection::JsonSyntaxError(error) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!(
                "The body is not valid JSON: {}",
                error.body_text().trim_start_matches("Failed to parse the request body as JSON: ")
            ),
        ),
        JsonRejection::JsonDataError(error) => {
            let text = error.body_text();
            let message = text.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
            let (field, message) = match message.split_once(": ") {
                Some((path, rest)) if !path.contains(' ') && !path.is_empty() => (path.to_owned(), rest.to_owned()),
                _ => (named_field(message).unwrap_or_default(), message.to_owned()),
            };
            Problem::validation(vec![FieldError { field, message }])
        }
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            "The request body is larger than the server accepts.",
        ),
        other => Problem::bad_request(other.body_text()),
    }
}

/// The field serde names in "missing field `title`" or "unknown field `titel`, expected …".
fn named_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

/// Whether text may hold `c`: tab and newline yes, other control characters (NUL, escape, DEL,
/// the C1 range…) no. PostgreSQL cannot store NUL in text at all, and the others only ever come
/// from a broken or hostile client.
fn is_forbidden_control(c: char) -> bool {
    c.is_control() && c != '\t' && c != '\n'
}

/// Collects a field error for every string in `value` (at any depth) that holds a forbidden
/// control character, named by its path (`title`, `items[0].name`).
fn control_characters(value: &serde_json::Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        serde_json::Value::String(text) if text.chars().any(is_forbidden_control) => errors.push(FieldError {
            field: path.to_owned(),
            message: "must not contain control characters (tab and newline are allowed)".to_owned(),
        }),
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                control_characters(item, &format!("{path}[{index}]"), errors);
            }
        }
        serde_json::Value::Object(fields) => {
            for (name, item) in fields {
                let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                control_characters(item, &path, errors);
            }
        }
        _ => {}
    }
}

/// Flattens validator's nested errors into `field.path: message` pairs.
fn field_errors(errors: &ValidationErrors, prefix: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
        match kind {
            ValidationErrorsKind::Field(list) => out.extend(list.iter().map(|e| FieldError {
                field: path.clone(),
                message: e.message.as_ref().map_or_else(|| e.code.to_string(), ToString::to_string),
            })),
            ValidationErrorsKind::Struct(nested) => out.extend(field_errors(nested, &path)),
            ValidationErrorsKind::List(items) => {
                for (index, nested) in items {
                    out.extend(field_errors(nested, &format!("{path}[{index}]")));
                }
            }
        }
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// Deserializes a string with surrounding whitespace removed, so validation sees what is stored
/// (`"   "` is an empty title, refused with 422, not stored as "").
pub fn trimmed<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = <String as serde::Deserialize>::deserialize(deserializer)?;
    Ok(value.trim().to_owned())
}

/// [`trimmed`] for optional fields (use with `#[serde(default)]`).
pub fn trimmed_option<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(value.map(|v| v.trim().to_owned()))
}

/// [`trimmed`] for optional fields that may be absent but not `null` (use with `#[serde(default)]`).
pub fn trimmed_present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    trimmed(deserializer).map(Some)
}

/// An optional field that may be absent but not `null` (use with `#[serde(default)]`).
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offending(json: &str) -> Vec<String> {
        let mut errors = Vec::new();
        control_characters(&serde_json::from_str(json).expect("json"), "", &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn control_characters_are_found_in_any_string_and_named_by_path() {
        assert_eq!(offending(r#"{"title":"a\u0000b"}"#), ["title"]);
        assert_eq!(offending(r#"{"a":{"b":["ok","\u001b[31m"]}}"#), ["a.b[1]"]);
        assert_eq!(offending(r#"{"name":"x\u007f","c1":"\u0085"}"#), ["c1", "name"]);
        assert!(offending(r#"{"title":"tab\tand\nnewline, ünïcödé ✓","n":0}"#).is_empty());
    }
}
