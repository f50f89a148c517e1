//! Conditional requests (RFC 9110 §13): `If-Match` against a todo's ETag on writes, and
//! `If-None-Match` / `If-Modified-Since` on every API read, so a client that polls gets a bodyless
//! 304 when nothing changed.

use std::time::SystemTime;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::{
    Problem,
    hook::{After, Hook},
};
use sha2::{Digest, Sha256};
use utoipa::openapi::{
    OpenApi, RefOr, Required, ResponseBuilder, Type,
    extensions::Extensions,
    header::Header,
    link::{Link, LinkBuilder},
    path::{ParameterBuilder, ParameterIn},
    schema::ObjectBuilder,
};
use uuid::Uuid;

/// Reads vary with the caller and the tenant, so no cache may answer one caller with another's.
const VARY: HeaderValue = HeaderValue::from_static("authorization, x-tenant-id");

/// The largest body given a computed ETag; API pages are far smaller.
const MAX_HASHED_BODY: usize = 4 << 20;

/// Answers `GET`/`HEAD` requests under `/api/v1/` that carry `If-None-Match` or
/// `If-Modified-Since` with 304 when the representation is unchanged (RFC 9110 §13.2.2:
/// `If-None-Match` wins when both are sent). A 200 JSON response without its own ETag (a list page,
/// say) gets a weak one from a hash of its body; handlers with a version set a strong one and a
/// `Last-Modified`. The 304 carries the headers the 200 would have (`ETag`, `Last-Modified`,
/// `Cache-Control`, `Vary`) and no body.
///
/// A [`Hook`]: only the JSON reads without an ETag of their own wait for their body to be hashed.
#[derive(Debug, Clone, Copy)]
pub struct NotModified;

/// A read's validators, as the client sent them.
#[derive(Debug)]
pub struct Validators {
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
}

impl Hook for NotModified {
    type Carry = Option<Validators>;

    fn before(&self, request: &mut Request) -> Result<Self::Carry, Response> {
        let conditional_read =
            matches!(*request.method(), Method::GET | Method::HEAD) && request.uri().path().starts_with("/api/v1/");
        Ok(conditional_read.then(|| Validators {
            if_none_match: request.headers().get(header::IF_NONE_MATCH).cloned(),
            if_modified_since: request.headers().get(header::IF_MODIFIED_SINCE).cloned(),
        }))
    }

    fn after(&self, validators: Self::Carry, response: Response) -> After {
        let Some(validators) = validators else { return After::Done(response) };
        let is_json =
            response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        if response.status() != StatusCode::OK || !is_json {
            return After::Done(response);
        }
        if response.headers().contains_key(header::ETAG) {
            return After::Done(validators.answer(response));
        }
        After::Later(Box::pin(async move { validators.answer(with_weak_etag(response).await) }))
    }
}

impl Validators {
    /// The 200 as it is, or the 304 that replaces it when the client's copy is current.
    fn answer(&self, mut response: Response) -> Response {
        response.headers_mut().append(header::VARY, VARY);
        let headers = response.headers();
        let unchanged = match (&self.if_none_match, &self.if_modified_since) {
            (Some(tags), _) => headers.get(header::ETAG).is_some_and(|etag| none_match_fails(tags, etag)),
            (None, Some(since)) => {
                headers.get(header::LAST_MODIFIED).is_some_and(|modified| not_modified_since(modified, since))
            }
            (None, None) => false,
        };
        if !unchanged {
            return response;
        }
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        for name in
            [header::ETAG, header::LAST_MODIFIED, header::CACHE_CONTROL, header::EXPIRES, header::CONTENT_LOCATION]
        {
            if let Some(value) = headers.get(&name) {
                not_modified.headers_mut().insert(name, value.clone());
            }
        }
        for value in headers.get_all(header::VARY) {
            not_modified.headers_mut().append(header::VARY, value.clone());
        }
        not_modified
    }
}

/// `W/"<128 bits of the body's SHA-256, hex>"`: weak, because it names the JSON, not its bytes
/// under any content coding.
async fn with_weak_etag(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_HASHED_BODY).await else {
        tracing::error!("a JSON body over {MAX_HASHED_BODY} bytes could not be given an ETag");
        return Problem::internal().into_response();
    };
    let digest = Sha256::digest(&bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{hex}\"")) {
        parts.headers.insert(header::ETAG, etag);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether `If-None-Match: tags` fails for `etag`: `*`, or any listed tag equal to it under the
/// weak comparison (RFC 9110 §8.8.3.2: the `W/` prefixes are ignored).
fn none_match_fails(tags: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(tags), Ok(etag)) = (tags.to_str(), etag.to_str()) else { return false };
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    tags.trim() == "*" || tags.split(',').any(|tag| opaque(tag) == etag)
}

/// Whether a representation last modified at `modified` is unchanged since `since`. An
/// unparseable date is ignored, as RFC 9110 §13.1.3 requires.
fn not_modified_since(modified: &HeaderValue, since: &HeaderValue) -> bool {
    let parse = |value: &HeaderValue| -> Option<SystemTime> { httpdate::parse_http_date(value.to_str().ok()?).ok() };
    matches!((parse(modified), parse(since)), (Some(modified), Some(since)) if modified <= since)
}

/// Documents [`NotModified`] on every `GET` of the API: the two request headers and the 304.
pub fn document(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let Some(get) = item.get.as_mut().filter(|_| path.starts_with("/api/v1/")) else { continue };
        let header = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        };
        get.parameters.get_or_insert_with(Vec::new).extend([
            header("If-None-Match", "ETags the client holds (`*` for any): 304 when one is current"),
            header("If-Modified-Since", "An HTTP date: 304 when unchanged since (ignored with If-None-Match)"),
        ]);
        let unchanged = ResponseBuilder::new()
            .description("Not modified: the representation is the one the client holds (no body)")
            .header("ETag", Header::new(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        get.responses.responses.insert("304".to_owned(), RefOr::T(unchanged));
        if let (Some(operation_id), Some(RefOr::T(ok))) =
            (get.operation_id.clone(), get.responses.responses.get_mut("200"))
        {
            ok.headers
                .entry("ETag".to_owned())
                .or_insert_with(|| Header::new(ObjectBuilder::new().schema_type(Type::String)));
            ok.links.insert("RevalidateWithETag".to_owned(), RefOr::T(revalidate(operation_id, path)));
        }
    }
}

/// An OpenAPI link from a read's 200 back to the same read with `If-None-Match` set to the ETag it
/// returned (and the same path parameters): the request that must answer 304. Clients see how to
/// revalidate, and schemathesis's stateful phase follows the link, so the 304s are exercised
/// against the document, not only described by it.
fn revalidate(operation_id: String, path: &str) -> Link {
    let parameters = path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'));
    let mut link = parameters
        .fold(LinkBuilder::new(), |link, name| link.parameter(format!("path.{name}"), format!("$request.path.{name}")))
        .parameter("header.If-None-Match", "$response.header.ETag")
        .description("Revalidate: the same read with the ETag received answers 304 while nothing changed")
        .build();
    // utoipa 5.5 serializes `Link::operation_id` as `operation_id`, which no OpenAPI tool reads;
    // the field the specification names is set through the flattened extensions instead.
    let mut fields = Extensions::default();
    fields.insert("operationId".to_owned(), operation_id.into());
    link.extensions = Some(fields);
    link
}

/// `Last-Modified` for a timestamp, in the HTTP date format (whole seconds).
pub fn last_modified(at: time::OffsetDateTime) -> Option<HeaderValue> {
    HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::from(at))).ok()
}

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
        headers.insert(header::IF_MATCH, value.parse().unwrap_or_else(|_| HeaderValue::from_static("x")));
        headers
    }

    #[test]
    fn if_none_match_compares_weakly_and_star_matches_anything() {
        let value = HeaderValue::from_static;
        assert!(none_match_fails(&value("W/\"a\""), &value("\"a\"")));
        assert!(none_match_fails(&value("\"b\", W/\"a\""), &value("W/\"a\"")));
        assert!(none_match_fails(&value("*"), &value("\"a\"")));
        assert!(!none_match_fails(&value("\"b\""), &value("\"a\"")));
    }

    #[test]
    fn if_modified_since_holds_for_the_same_second_or_later_and_ignores_garbage() {
        let value = HeaderValue::from_static;
        let modified = value("Fri, 04 Dec 2026 07:00:00 GMT");
        assert!(not_modified_since(&modified, &value("Fri, 04 Dec 2026 07:00:00 GMT")));
        assert!(not_modified_since(&modified, &value("Sat, 05 Dec 2026 07:00:00 GMT")));
        assert!(!not_modified_since(&modified, &value("Fri, 04 Dec 2026 06:59:59 GMT")));
        assert!(!not_modified_since(&modified, &value("yesterday")));
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
