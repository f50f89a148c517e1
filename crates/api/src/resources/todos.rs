//! The example resource, end to end in one module: its scopes, its HTTP surface and schemas,
//! and its store queries. Rename it and keep its habits: every query takes the tenant, writes
//! bump a version that is the ETag, and each write appends an audit event in the same
//! transaction.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::Problem;
use palisade_store::{Page, PageRequest, Tx, on_tx};
use palisade_tenancy::{TenancyError, TenantContext, audit::Change};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use validator::Validate;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::ApiError,
    extract::ValidatedJson,
    idempotency::{self, Replay},
    routes::{conditional, not_found},
};

/// The resource's routes, each with its documentation (`routes!` reads the `#[utoipa::path]`s).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get, update, delete))
}

/// The scopes this resource's routes require.
pub mod scopes {
    pub const READ: &str = "todos:read";
    pub const WRITE: &str = "todos:write";
}

/// The event types this resource's writes commit (webhooks may subscribe to them).
pub const EVENTS: &[&str] = &["todo.created", "todo.updated", "todo.deleted"];


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

// `minProperties: 1` is set in `crate::openapi::finish` (utoipa renders the attribute wrongly).
/// At least one field; an absent field stays as it is, and `null` is refused: it would mean nothing.
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

/// The todo with its validators: a strong `ETag` (its version) and `Last-Modified`, which
/// `If-Match`, `If-None-Match` and `If-Modified-Since` compare against.
fn with_etag(status: StatusCode, todo: &Todo) -> Response {
    let mut response = (status, Json(todo)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&todo.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    if let Some(modified) = conditional::last_modified(todo.updated_at) {
        response.headers_mut().insert(header::LAST_MODIFIED, modified);
    }
    response
}

/// List the tenant's todos, oldest first.
#[utoipa::path(get, path = "/todos", operation_id = "list_todos", tag = "todos", params(ListQuery),
    responses((status = 200, body = Page<Todo>), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:read"])))]
pub async fn list(mut ctx: TenantContext, Query(query): Query<ListQuery>) -> Result<Json<Page<Todo>>, ApiError> {
    ctx.auth.require_scope(scopes::READ).map_err(Problem::from)?;
    let page = PageRequest { limit: query.limit, cursor: query.cursor };
    let tenant_id = ctx.tenant_id();
    Ok(Json(store::list(ctx.session.tx().await?, tenant_id, query.done, &page).await?))
}

/// Create a todo. With `Idempotency-Key`, a retry with the same body replays the first answer.
#[utoipa::path(post, path = "/todos", operation_id = "create_todo", tag = "todos", request_body = NewTodo,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]+$",
        description = "Makes retries safe: same key and body replay the first response (1 to 255 visible ASCII characters)")),
    responses((status = 201, body = Todo, headers(("ETag" = String), ("Location" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn create(mut ctx: TenantContext, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
    let ValidatedJson(new) = ValidatedJson::<NewTodo>::from_bytes(&headers, &body)?;
    let key = idempotency::key(&headers, &ctx.auth.subject)?;
    let tenant_id = ctx.tenant_id();
    if let Some(key) = &key {
        match idempotency::begin(ctx.session.tx().await?, tenant_id, key, &body).await? {
            Replay::Fresh => {}
            Replay::Stored(response) => return Ok(response),
        }
    }
    let todo = store::create(ctx.session.tx().await?, tenant_id, &new.title, ctx.user.id).await?;
    let id = todo.id.to_string();
    let mut response = with_etag(StatusCode::CREATED, &todo);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/todos/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(key) = &key {
        idempotency::finish(ctx.session.tx().await?, tenant_id, key, StatusCode::CREATED, &todo, &todo.etag()).await?;
    }
    ctx.commit(Change { action: "todo.created", resource_type: "todo", resource_id: &id }).await?;
    Ok(response)
}

/// Fetch one todo.
#[utoipa::path(get, path = "/todos/{id}", operation_id = "get_todo", tag = "todos", params(("id" = Uuid, Path)),
    responses((status = 200, body = Todo, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:read"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::READ).map_err(Problem::from)?;
    let tenant_id = ctx.tenant_id();
    match store::get(ctx.session.tx().await?, tenant_id, id).await? {
        Some(todo) => Ok(with_etag(StatusCode::OK, &todo)),
        None => Err(not_found("todo").into()),
    }
}

/// Change a todo. Send `If-Match` with the ETag you read to avoid overwriting someone else's change.
#[utoipa::path(patch, path = "/todos/{id}", operation_id = "update_todo", tag = "todos", request_body = TodoPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 200, body = Todo, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn update(
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ValidatedJson(patch): ValidatedJson<TodoPatch>,
) -> Result<Response, ApiError> {
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
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
    match store::update(ctx.session.tx().await?, tenant_id, id, expected, &changes).await? {
        Conditional::Done(todo) => {
            ctx.commit(Change { action: "todo.updated", resource_type: "todo", resource_id: &id.to_string() }).await?;
            Ok(with_etag(StatusCode::OK, &todo))
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("todo").into()),
    }
}

/// Delete a todo (`If-Match` honoured).
#[utoipa::path(delete, path = "/todos/{id}", operation_id = "delete_todo", tag = "todos",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 204, description = "Deleted"), crate::openapi::ErrorResponses),
    security(("bearer" = ["todos:write"])))]
pub async fn delete(mut ctx: TenantContext, Path(id): Path<Uuid>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    ctx.auth.require_scope(scopes::WRITE).map_err(Problem::from)?;
    let expected = conditional::if_match_version(&headers, id)?;
    let tenant_id = ctx.tenant_id();
    match store::delete(ctx.session.tx().await?, tenant_id, id, expected).await? {
        Conditional::Done(()) => {
            ctx.commit(Change { action: "todo.deleted", resource_type: "todo", resource_id: &id.to_string() }).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("todo").into()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub done: bool,
    /// Incremented by every change; the `ETag` is derived from it.
    pub version: i64,
    /// The user (in this tenant) who created it.
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl Todo {
    /// A strong validator: the id and version identify this exact representation.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id.simple(), self.version)
    }
}

/// A partial update; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub title: Option<String>,
    pub done: Option<bool>,
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum Conditional<T> {
    Done(T),
    /// The todo changed since the version the client had (`If-Match` failed).
    Stale,
    NotFound,
}

/// The resource's queries. Each takes the tenant, so no query can cross tenants even where
/// row-level security is not there to catch it (SQLite).
pub mod store {
    use super::*;

    /// The columns a [`Todo`] is read from. A macro, not a `const`, so that every statement below
    /// is one `&'static str` built by `concat!`: no `format!` per request, and sqlx's per-connection
    /// statement cache keeps each prepared statement.
    macro_rules! columns {
        () => {
            "id, title, done, version, created_by, created_at, updated_at"
        };
    }

    const INSERT: &str = concat!(
        "INSERT INTO todos (id, tenant_id, title, done, version, created_by, created_at, updated_at) ",
        "VALUES ($1, $2, $3, false, 1, $4, $5, $5) RETURNING ",
        columns!()
    );
    const GET: &str = concat!("SELECT ", columns!(), " FROM todos WHERE tenant_id = $1 AND id = $2");
    /// Two list statements rather than one with `($3 IS NULL OR done = $3)`: a condition that may
    /// or may not apply keeps the planner from using `todos_tenant_id_done_id`.
    const LIST: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM todos WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    const LIST_BY_DONE: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM todos WHERE tenant_id = $1 AND done = $3 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $4"
    );
    const UPDATE: &str = concat!(
        "UPDATE todos SET title = COALESCE($1, title), done = COALESCE($2, done), version = version + 1, ",
        "updated_at = $3 WHERE tenant_id = $4 AND id = $5 AND ($6 IS NULL OR version = $6) RETURNING ",
        columns!()
    );

    pub async fn create(tx: &mut Tx, tenant_id: Uuid, title: &str, created_by: Uuid) -> Result<Todo, TenancyError> {
        let now = OffsetDateTime::now_utc();
        Ok(on_tx!(tx, |conn| sqlx::query_as(INSERT)
            .bind(Uuid::now_v7())
            .bind(tenant_id)
            .bind(title)
            .bind(created_by)
            .bind(now)
            .fetch_one(conn)
            .await)?)
    }

    pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<Todo>, TenancyError> {
        Ok(on_tx!(tx, |conn| sqlx::query_as(GET).bind(tenant_id).bind(id).fetch_optional(conn).await)?)
    }

    pub async fn list(
        tx: &mut Tx,
        tenant_id: Uuid,
        done: Option<bool>,
        page: &PageRequest,
    ) -> Result<Page<Todo>, TenancyError> {
        let (limit, after) = page.parse()?;
        let fetch = i64::from(limit) + 1;
        let rows: Vec<Todo> = match done {
            None => {
                on_tx!(tx, |conn| sqlx::query_as(LIST).bind(tenant_id).bind(after).bind(fetch).fetch_all(conn).await)?
            }
            Some(done) => on_tx!(tx, |conn| sqlx::query_as(LIST_BY_DONE)
                .bind(tenant_id)
                .bind(after)
                .bind(done)
                .bind(fetch)
                .fetch_all(conn)
                .await)?,
        };
        Ok(Page::from_rows(rows, limit, |t| t.id))
    }

    /// Applies `changes` if the todo is still at `expected_version` (any version when `None`).
    /// The version check is in the UPDATE itself, so of two concurrent writers with the same ETag
    /// exactly one succeeds.
    pub async fn update(
        tx: &mut Tx,
        tenant_id: Uuid,
        id: Uuid,
        expected_version: Option<i64>,
        changes: &Changes,
    ) -> Result<Conditional<Todo>, TenancyError> {
        let updated: Option<Todo> = on_tx!(tx, |conn| sqlx::query_as(UPDATE)
            .bind(changes.title.as_deref())
            .bind(changes.done)
            .bind(OffsetDateTime::now_utc())
            .bind(tenant_id)
            .bind(id)
            .bind(expected_version)
            .fetch_optional(conn)
            .await)?;
        match updated {
            Some(todo) => Ok(Conditional::Done(todo)),
            None => missing_or_stale(tx, tenant_id, id).await,
        }
    }

    pub async fn delete(
        tx: &mut Tx,
        tenant_id: Uuid,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Conditional<()>, TenancyError> {
        let deleted = on_tx!(tx, |conn| sqlx::query(
            "DELETE FROM todos WHERE tenant_id = $1 AND id = $2 AND ($3 IS NULL OR version = $3)"
        )
        .bind(tenant_id)
        .bind(id)
        .bind(expected_version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if deleted == 1 { Ok(Conditional::Done(())) } else { missing_or_stale(tx, tenant_id, id).await }
    }

    async fn missing_or_stale<T>(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Conditional<T>, TenancyError> {
        Ok(if get(tx, tenant_id, id).await?.is_some() { Conditional::Stale } else { Conditional::NotFound })
    }

    #[cfg(test)]
    mod tests {
        use palisade_ops::{Metrics, metrics::BuildInfo};
        use palisade_store::{Database, DatabaseConfig};
        use secrecy::SecretString;

        use super::*;

        /// SQLite's plan for a statement (`EXPLAIN QUERY PLAN`), one detail line per step.
        async fn sqlite_plan(tx: &mut Tx, sql: &str) -> String {
            let Tx::Sqlite(tx) = tx else { panic!("a SQLite transaction") };
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&mut **tx)
                    .await
                    .expect("plan");
            rows.into_iter().map(|row| row.3).collect::<Vec<_>>().join("\n")
        }

        /// Every filter and sort the list offers is served by an index, so a page costs the same
        /// however many todos the tenant has: no step scans the table or sorts in a temporary tree.
        #[tokio::test]
        async fn every_list_statement_is_served_by_an_index_on_sqlite() {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("plan.db").display());
            let config = DatabaseConfig { url: SecretString::from(url), ..Default::default() };
            let metrics = Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics");
            let db = Database::connect(&config, metrics).await.expect("database");
            db.migrate().await.expect("migrations");
            let mut tx = db.begin_read().await.expect("transaction");
            let searches = [
                (LIST, "SEARCH todos USING INDEX todos_tenant_id_id (tenant_id=?"),
                (LIST_BY_DONE, "SEARCH todos USING INDEX todos_tenant_id_done_id (tenant_id=? AND done=?"),
                (GET, "SEARCH todos USING INDEX sqlite_autoindex_todos_1 (id=?)"),
            ];
            for (sql, search) in searches {
                let plan = sqlite_plan(&mut tx, sql).await;
                assert!(plan.contains(search), "{sql}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
            }
            tx.rollback().await.expect("rollback");
            db.close().await;
        }
    }
}
