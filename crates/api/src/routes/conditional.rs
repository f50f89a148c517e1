//! Conditional requests (RFC 9110 §13): `If-Match` against a todo's ETag.

use axum::http::{HeaderMap, StatusCode, header};
use palisade_ops::Problem;
use uuid::Uuid;

/// The version `If-Match` requires: `None` without the header or with `*`. An ETag that is not
/// this resource's can never match, so it yields a version no row has.
pub fn if_match_version(headers: &HeaderMap, id: Uuid) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let value = value.to_str().map_err(|_| Problem::bad_request("If-Match is not a valid header value."))?.trim();
    if value == "*" {
        return Ok(None);
    }
    let prefix = format!("\"{}-", id.simple());
    let version = value
        .split(',')
        .map(str::trim)
        .find_map(|tag| tag.strip_prefix(&prefix)?.strip_suffix('"')?.parse::<i64>().ok());
    Ok(Some(version.unwrap_or(-1)))
}

pub fn precondition_failed() -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
        "Precondition failed",
        "The resource changed since you read it (If-Match did not match); fetch it again and retry.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value.parse().unwrap_or_else(|_| axum::http::HeaderValue::from_static("x")));
        headers
    }

    #[test]
    fn an_etag_of_this_resource_yields_its_version() {
        let id = Uuid::now_v7();
        let tag = format!("\"{}-7\"", id.simple());
        assert_eq!(if_match_version(&headers(&tag), id).ok(), Some(Some(7)));
        assert_eq!(if_match_version(&headers("*"), id).ok(), Some(None));
        assert_eq!(if_match_version(&HeaderMap::new(), id).ok(), Some(None));
    }

    #[test]
    fn a_foreign_or_garbled_etag_never_matches() {
        let id = Uuid::now_v7();
        let other = format!("\"{}-1\"", Uuid::now_v7().simple());
        assert_eq!(if_match_version(&headers(&other), id).ok(), Some(Some(-1)));
        assert_eq!(if_match_version(&headers("W/\"abc\""), id).ok(), Some(Some(-1)));
    }
}
