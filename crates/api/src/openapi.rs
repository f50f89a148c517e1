//! The OpenAPI document's shared parts: its info, the bearer scheme and the error responses every
//! API route may give. The operations come from the routes themselves (`routes!` in each module,
//! collected by [`crate::routes::documented`]), and the schemas from the real types they take and
//! return, so the document cannot drift from what the router serves.

use std::collections::BTreeSet;

use palisade_ops::Problem;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr, Schema, Type,
        schema::{ArrayItems, SchemaType},
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

/// The error responses any API route may give.
#[derive(Debug, utoipa::IntoResponses)]
pub enum ErrorResponses {
    #[response(
        status = 400,
        description = "Malformed request (bad JSON, header or cursor)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Missing or invalid token",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "RFC 6750 Bearer challenge with error and error_description"))
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Insufficient scope, suspended tenant, or tenant mismatch",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such resource in this tenant",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Conflict (slug taken, idempotent request in progress, export not ready, tenant not deleted)",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 410,
        description = "The tenant was deleted (erasure requested; docs/data-rights.md)",
        content_type = "application/problem+json"
    )]
    Gone(Problem),
    #[response(
        status = 412,
        description = "If-Match did not match the current ETag",
        content_type = "application/problem+json"
    )]
    PreconditionFailed(Problem),
    #[response(status = 413, description = "Body larger than the limit", content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    #[response(status = 415, description = "Body is not JSON", content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    #[response(
        status = 422,
        description = "Validation failed (field errors)",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
    #[response(
        status = 429,
        description = "Rate limited",
        content_type = "application/problem+json",
        headers(
            ("Retry-After" = u32, description = "Seconds until a retry can succeed"),
            ("RateLimit-Policy" = String, description = "IETF draft: the policies that applied"),
            ("RateLimit" = String, description = "IETF draft: requests left and seconds until full")
        )
    )]
    TooManyRequests(Problem),
    #[response(
        status = 500,
        description = "Server error (details in logs, by request id)",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    #[response(
        status = 503,
        description = "A dependency is unavailable; retry",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document's frame; [`crate::routes::documented`] adds the operations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "palisade", description = "Multi-tenant SaaS API. Errors are RFC 9457 problem+json."),
    // `routes!` collects every schema the operations name except the one the shared error
    // responses use. The contract tests fail on any `$ref` left dangling.
    components(schemas(Problem)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Final touches on the document the router produced.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // utoipa 5.5 renders `#[schema(min_properties = ..)]` as `maxProperties`, so it is set here.
    if let Some(RefOr::T(Schema::Object(patch))) =
        doc.components.as_mut().and_then(|components| components.schemas.get_mut("TodoPatch"))
    {
        patch.min_properties = Some(1);
    }
    crate::routes::conditional::document(&mut doc);
    document_control_characters(&mut doc);
    doc
}

/// What every JSON body string must match: no control characters but tab and newline, which
/// `ValidatedJson` refuses anywhere in a body (`crate::extract`).
const NO_CONTROL_CHARACTERS: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";

/// Says in the document what `ValidatedJson` enforces on every request body: each string property
/// of a request body's schema (and each string item of an array property) that has no pattern of
/// its own gets [`NO_CONTROL_CHARACTERS`], so clients, generators and schemathesis know that such
/// strings are refused.
fn document_control_characters(doc: &mut utoipa::openapi::OpenApi) {
    let bodies: BTreeSet<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|item| [&item.post, &item.put, &item.patch].into_iter().flatten())
        .filter_map(|operation| operation.request_body.as_ref())
        .flat_map(|body| body.content.values())
        .filter_map(|content| match &content.schema {
            Some(RefOr::Ref(reference)) => reference.ref_location.rsplit('/').next().map(str::to_owned),
            _ => None,
        })
        .collect();
    let Some(components) = doc.components.as_mut() else { return };
    for name in bodies {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) {
            for property in object.properties.values_mut() {
                if let RefOr::T(schema) = property {
                    restrict_strings(schema);
                }
            }
        }
    }
}

fn restrict_strings(schema: &mut Schema) {
    let is_string = |kind: &SchemaType| matches!(kind, SchemaType::Type(Type::String));
    match schema {
        Schema::Object(object)
            if is_string(&object.schema_type) && object.pattern.is_none() && object.enum_values.is_none() =>
        {
            object.pattern = Some(NO_CONTROL_CHARACTERS.to_owned());
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items
                && let RefOr::T(items) = items.as_mut()
            {
                restrict_strings(items);
            }
        }
        _ => {}
    }
}

/// The API's OpenAPI document, as `GET /api/v1/openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    finish(crate::routes::documented().into_openapi())
}
