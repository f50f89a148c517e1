//! RFC 9457 problem details: the one error shape every palisade response uses.
//!
//! Handlers and extractors return [`Problem`]s; [`Normalize`] then makes sure that *every* error
//! response, including the ones axum and tower-http produce on their own (404, 405, 413, 415,
//! timeouts), leaves the server as `application/problem+json` carrying the request id.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    hook::{After, Hook},
    request_id::RequestId,
};

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Error bodies larger than this are not rewritten (nothing of ours is this big).
const MAX_REWRITE_BYTES: usize = 64 * 1024;

/// An RFC 9457 problem. `type` is a relative URI naming the kind of problem
/// (documented in docs/problems.md); `about:blank` when the status says it all.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(flatten)]
    extensions: Map<String, Value>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of a named kind (`slug` becomes the `type` URI `/problems/{slug}`).
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    /// A problem that the status code describes completely (`type` is `about:blank`).
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// The generic 500: the body never says what went wrong; logs and Sentry do.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
            "The server could not complete the request. Quote the request id when reporting this.",
        )
    }

    /// A dependency the request needs is down; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
    }

    /// 422 with one message per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-error", "Validation failed", detail)
            .with_extension("errors", serde_json::to_value(errors).unwrap_or_default())
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn with_extension(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// Adds a response header (e.g. `WWW-Authenticate`, `Retry-After`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_request_id(mut self, id: &RequestId) -> Self {
        self.request_id = Some(id.as_str().to_owned());
        self
    }
}

/// One invalid field of a request body or query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name (empty when the problem is the body as a whole).
    pub field: String,
    pub message: String,
}

/// The document's `Problem` schema. Written out rather than derived because the body is open:
/// extensions are flattened into it, and `errors` (422) is the one every client should know.
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let string = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
        ObjectBuilder::new()
            .description(Some("An RFC 9457 problem: every error response has this shape."))
            .property("type", string("A URI naming the kind of problem (`/problems/<slug>` or `about:blank`)."))
            .required("type")
            .property("title", string("A short summary of the kind of problem."))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int32)))
                    .minimum(Some(100))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", string("What went wrong with this request."))
            .required("detail")
            .property(
                "request_id",
                string("Quote this when reporting a problem; it is in the logs and the `x-request-id` header."),
            )
            .required("request_id")
            .property(
                "errors",
                ArrayBuilder::new()
                    .items(utoipa::openapi::Ref::from_schema_name("FieldError"))
                    .description(Some("Validation problems (422) only: one entry per invalid field.")),
            )
            .into()
    }
}

impl utoipa::ToSchema for Problem {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((
            <FieldError as utoipa::ToSchema>::name().into_owned(),
            <FieldError as utoipa::PartialSchema>::schema(),
        ));
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// Middleware: every response with an error status leaves as problem+json with the request id.
///
/// Responses that already are problems get the request id added; anything else (axum's plain-text
/// rejections, tower-http's empty 408/413) is rewritten from its status. Only error bodies are
/// buffered, and they are small.
#[derive(Debug, Clone, Copy)]
pub struct Normalize;

impl Hook for Normalize {
    type Carry = Option<RequestId>;

    fn before(&self, request: &mut Request) -> Result<Self::Carry, Response> {
        Ok(RequestId::from_extensions(request.extensions()))
    }

    fn after(&self, request_id: Self::Carry, response: Response) -> After {
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return After::Done(response);
        }
        After::Later(Box::pin(rewrite(request_id, response)))
    }
}

async fn rewrite(request_id: Option<RequestId>, response: Response) -> Response {
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let is_problem =
        parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    let too_big = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_REWRITE_BYTES);
    if too_big {
        return Response::from_parts(parts, body);
    }
    let bytes = match http_body_util::Limited::new(body, MAX_REWRITE_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let mut value =
        if is_problem { serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null) } else { Value::Null };
    if !value.is_object() {
        let detail = plain_detail(status, &bytes);
        value = serde_json::to_value(Problem::from_status(status, detail)).unwrap_or_default();
    }
    if let (Some(object), Some(id)) = (value.as_object_mut(), &request_id) {
        object.entry("request_id").or_insert_with(|| Value::String(id.as_str().to_owned()));
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The detail for a non-problem error response: axum's rejection text is safe and useful for 4xx
/// (it names the missing field or the bad content type); 5xx bodies are never passed on.
fn plain_detail(status: StatusCode, body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    if status.is_client_error() && !text.is_empty() && text.len() <= 1024 {
        return text.to_owned();
    }
    match status {
        StatusCode::NOT_FOUND => "No resource at this path.".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this resource.".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is larger than the server accepts.".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "The request took too long.".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "The request body's content type is not supported.".to_owned(),
        s if s.is_server_error() => {
            "The server could not complete the request. Quote the request id when reporting this.".to_owned()
        }
        s => s.canonical_reason().unwrap_or("Error").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_body_is_never_passed_on() {
        let detail = plain_detail(StatusCode::INTERNAL_SERVER_ERROR, b"connection to db at 10.0.0.3 failed");
        assert!(!detail.contains("10.0.0.3"));
    }

    #[test]
    fn a_client_error_text_becomes_the_detail() {
        let detail = plain_detail(StatusCode::UNPROCESSABLE_ENTITY, b"missing field `title`");
        assert_eq!(detail, "missing field `title`");
    }

    #[test]
    fn a_validation_problem_lists_its_fields() {
        let problem = Problem::validation(vec![FieldError { field: "title".into(), message: "too long".into() }]);
        let json = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["field"], "title");
        assert_eq!(json["detail"], "title: too long");
    }
}
