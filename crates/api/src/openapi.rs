//! The OpenAPI document, generated from the handlers' annotations (`GET /api/v1/openapi.json`).
//! Types owned by other crates are described here by mirror schemas, checked against the real
//! responses by the API tests.

use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        RefOr, Schema,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};
use uuid::Uuid;

use crate::{
    resources::{self, todos::Todo},
    routes,
};

/// A user's role in a tenant (mirrors `palisade_tenancy::UserRole`).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
#[schema(as = Role, rename_all = "lowercase")]
pub enum RoleDoc {
    Member,
    Admin,
}

/// An RFC 9457 problem: every error response has this shape.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
pub struct ProblemDoc {
    /// A URI naming the kind of problem (`/problems/<slug>` or `about:blank`).
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Quote this when reporting a problem; it is in the logs and the `x-request-id` header.
    request_id: String,
    /// Validation problems (422) only: one entry per invalid field.
    errors: Option<Vec<FieldErrorDoc>>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
pub struct FieldErrorDoc {
    field: String,
    message: String,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
#[schema(as = Tenant)]
pub struct TenantDoc {
    id: Uuid,
    slug: String,
    name: String,
    #[schema(example = "active")]
    status: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
#[schema(as = User)]
pub struct UserDoc {
    id: Uuid,
    tenant_id: Uuid,
    subject: String,
    #[schema(example = "member")]
    role: RoleDoc,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
#[schema(as = AuditEvent)]
pub struct AuditEventDoc {
    id: Uuid,
    tenant_id: Uuid,
    actor: String,
    #[schema(example = "todo.created")]
    action: String,
    resource_type: String,
    resource_id: String,
    request_id: Option<String>,
    client_ip: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema description, never constructed")]
#[schema(as = Me)]
pub struct MeDoc {
    subject: String,
    tenant: Option<String>,
    scopes: Vec<String>,
    jti: Option<String>,
    #[schema(format = DateTime)]
    expires_at: String,
}

macro_rules! page_doc {
    ($name:ident, $item:ty) => {
        /// A page of a list; pass `next_cursor` as `cursor` for the next one.
        #[derive(Debug, ToSchema)]
        #[allow(dead_code, reason = "a schema description, never constructed")]
        pub struct $name {
            items: Vec<$item>,
            next_cursor: Option<String>,
        }
    };
}
page_doc!(TodoPage, Todo);
page_doc!(TenantPage, TenantDoc);
page_doc!(UserPage, UserDoc);
page_doc!(AuditPage, AuditEventDoc);

/// The error responses any API route may give.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code, reason = "a schema description, never constructed")]
pub enum ErrorResponses {
    #[response(
        status = 400,
        description = "Malformed request (bad JSON, header or cursor)",
        content_type = "application/problem+json"
    )]
    BadRequest(#[to_schema] ProblemDoc),
    #[response(
        status = 401,
        description = "Missing or invalid token",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "RFC 6750 Bearer challenge with error and error_description"))
    )]
    Unauthorized(ProblemDoc),
    #[response(
        status = 403,
        description = "Insufficient scope, suspended tenant, or tenant mismatch",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemDoc),
    #[response(
        status = 404,
        description = "No such resource in this tenant",
        content_type = "application/problem+json"
    )]
    NotFound(ProblemDoc),
    #[response(
        status = 409,
        description = "Conflict (slug taken, idempotent request in progress)",
        content_type = "application/problem+json"
    )]
    Conflict(ProblemDoc),
    #[response(
        status = 412,
        description = "If-Match did not match the current ETag",
        content_type = "application/problem+json"
    )]
    PreconditionFailed(ProblemDoc),
    #[response(status = 413, description = "Body larger than the limit", content_type = "application/problem+json")]
    PayloadTooLarge(ProblemDoc),
    #[response(status = 415, description = "Body is not JSON", content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    #[response(
        status = 422,
        description = "Validation failed (field errors)",
        content_type = "application/problem+json"
    )]
    Unprocessable(ProblemDoc),
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
    TooManyRequests(ProblemDoc),
    #[response(
        status = 500,
        description = "Server error (details in logs, by request id)",
        content_type = "application/problem+json"
    )]
    Internal(ProblemDoc),
    #[response(
        status = 503,
        description = "A dependency is unavailable; retry",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDoc),
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

#[derive(OpenApi)]
#[openapi(
    info(title = "palisade", description = "Multi-tenant SaaS API. Errors are RFC 9457 problem+json."),
    paths(
        routes::auth::me,
        routes::auth::revoke,
        routes::tenants::create,
        routes::tenants::list,
        routes::tenants::get,
        routes::tenants::suspend,
        routes::tenants::reactivate,
        routes::users::me,
        routes::users::list,
        routes::users::get,
        routes::users::update,
        resources::todos::list,
        resources::todos::create,
        resources::todos::get,
        resources::todos::update,
        resources::todos::delete,
        routes::audit::list,
    ),
    components(schemas(
        ProblemDoc, FieldErrorDoc, RoleDoc, TenantDoc, UserDoc, AuditEventDoc, MeDoc, Todo,
        resources::todos::NewTodo, resources::todos::TodoPatch, routes::tenants::NewTenant, routes::users::RoleChange,
        routes::auth::RevokeRequest,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // utoipa 5.5 renders `#[schema(min_properties = ..)]` as `maxProperties`, so it is set here.
    if let Some(RefOr::T(Schema::Object(patch))) =
        doc.components.as_mut().and_then(|components| components.schemas.get_mut("TodoPatch"))
    {
        patch.min_properties = Some(1);
    }
    routes::conditional::document(&mut doc);
    doc
}
