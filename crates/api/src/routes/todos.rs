//! `/api/v1/todos`: the example resource's HTTP surface.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_auth::scopes;
use palisade_ops::Problem;
use palisade_store::{Page, PageRequest};
use palisade_tenancy::{TenantContext, audit::Change};
use serde::Deserialize;
use uuid::Uuid;
use validator::Validate;

use crate::{
    error::ApiError,
    extract::ValidatedJson,
    idempotency::{self, Replay},
    routes::{conditional, not_found},
    todos::{self, Changes, Conditional, Todo},
};

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTodo {
    /// 1 to 500 characters (surrounding whitespace is removed first).
    #[serde(deserialize_with = "crate::extract::trimmed")]
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub title: String,
}

/// At least one field (`minProperties` is set in [`crate::openapi::document`]); an absent field
/// stays as it is, and `null` is refused: it would mean nothing.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TodoPatch {
    #[serde(default, deserialize_with = "crate::extract::trimmed_present")]
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(nullable = false)]
    pub done: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only todos with this `done` state.
    pub done: Option<bool>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 22, max_length = 22, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

fn with_etag(status: StatusCode, todo: &Todo) -> Response {
    let mut response = (status, Json(todo)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&todo.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// List the tenant's todos, oldest first.
#[utoipa::path(get, path = "/api/v1/todos", tag = "todos", params(ListQuery),
    responses((status = 200, body = inline(crate::openapi::TodoPage)), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:read"])))]
pub async fn list(mut ctx: TenantContext, Query(query): Query<ListQuery>) -> Result<Json<Page<Todo>>, ApiError> {
    ctx.auth.require_scope(scopes::TODOS_READ).map_err(Problem::from)?;
    let page = PageRequest { limit: query.limit, cursor: query.cursor };
    let tenant_id = ctx.tenant_id();
    Ok(Json(todos::list(ctx.session.tx().await?, tenant_id, query.done, &page).await?))
}

/// Create a todo. With `Idempotency-Key`, a retry with the same body replays the first answer.
#[utoipa::path(post, path = "/api/v1/todos", tag = "todos", request_body = NewTodo,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]+$",
        description = "Makes retries safe: same key and body replay the first response (1 to 255 visible ASCII characters)")),
    responses((status = 201, body = Todo, headers(("ETag" = String), ("Location" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn create(mut ctx: TenantContext, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::TODOS_WRITE).map_err(Problem::from)?;
    let ValidatedJson(new) = ValidatedJson::<NewTodo>::from_bytes(&headers, &body)?;
    let key = idempotency::key(&headers, &ctx.auth.subject)?;
    let tenant_id = ctx.tenant_id();
    if let Some(key) = &key {
        match idempotency::begin(ctx.session.tx().await?, tenant_id, key, &body).await? {
            Replay::Fresh => {}
            Replay::Stored(response) => return Ok(response),
        }
    }
    let todo = todos::create(ctx.session.tx().await?, tenant_id, &new.title, ctx.user.id).await?;
    let id = todo.id.to_string();
    ctx.audit(Change { action: "todo.created", resource_type: "todo", resource_id: &id }).await?;
    let mut response = with_etag(StatusCode::CREATED, &todo);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/todos/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(key) = &key {
        idempotency::finish(ctx.session.tx().await?, tenant_id, key, StatusCode::CREATED, &todo, &todo.etag()).await?;
    }
    ctx.session.commit().await?;
    Ok(response)
}

/// Fetch one todo.
#[utoipa::path(get, path = "/api/v1/todos/{id}", tag = "todos", params(("id" = Uuid, Path)),
    responses((status = 200, body = Todo, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:read"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::TODOS_READ).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    match todos::get(ctx.session.tx().await?, tenant_id, id).await? {
        Some(todo) => Ok(with_etag(StatusCode::OK, &todo)),
        None => Err(not_found("todo").into()),
    }
}

/// Change a todo. Send `If-Match` with the ETag you read to avoid overwriting someone else's change.
#[utoipa::path(patch, path = "/api/v1/todos/{id}", tag = "todos", request_body = TodoPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 200, body = Todo, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn update(
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ValidatedJson(patch): ValidatedJson<TodoPatch>,
) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::TODOS_WRITE).map_err(Problem::from)?;
    if patch.title.is_none() && patch.done.is_none() {
        return Err(Problem::validation(vec![palisade_ops::problem::FieldError {
            field: String::new(),
            message: "send at least one of title, done".into(),
        }])
        .into());
    }
    let expected = conditional::if_match_version(&headers, id)?;
    let changes = Changes { title: patch.title, done: patch.done };
    let tenant_id = ctx.tenant_id();
    match todos::update(ctx.session.tx().await?, tenant_id, id, expected, &changes).await? {
        Conditional::Done(todo) => {
            ctx.audit(Change { action: "todo.updated", resource_type: "todo", resource_id: &id.to_string() }).await?;
            ctx.session.commit().await?;
            Ok(with_etag(StatusCode::OK, &todo))
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("todo").into()),
    }
}

/// Delete a todo (`If-Match` honoured).
#[utoipa::path(delete, path = "/api/v1/todos/{id}", tag = "todos",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 204, description = "Deleted"), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn delete(mut ctx: TenantContext, Path(id): Path<Uuid>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    ctx.auth.require_scope(scopes::TODOS_WRITE).map_err(Problem::from)?;
    let expected = conditional::if_match_version(&headers, id)?;
    let tenant_id = ctx.tenant_id();
    match todos::delete(ctx.session.tx().await?, tenant_id, id, expected).await? {
        Conditional::Done(()) => {
            ctx.audit(Change { action: "todo.deleted", resource_type: "todo", resource_id: &id.to_string() }).await?;
            ctx.session.commit().await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("todo").into()),
    }
}
