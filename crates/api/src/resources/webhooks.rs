//! `/api/v1/webhooks`: a tenant's webhook endpoints, their secrets, and their delivery logs
//! (docs/webhooks.md). Tenant admins only. The delivery machinery (relay, delivery job) is in
//! `crate::webhooks`; signing and the SSRF policy in the `palisade-webhooks` crate.

use std::net::IpAddr;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::{Problem, problem::FieldError};
use palisade_store::{Page, PageRequest};
use palisade_tenancy::{TenantContext, audit::Change};
use palisade_webhooks::{AddressPolicy, SigningSecret};
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    AppState, background,
    error::ApiError,
    extract::ValidatedJson,
    routes::{PageParams, conditional, not_found},
    webhooks::{
        events::{self, EVENT_TYPES},
        relay::{DELIVER, DeliverJob},
        store::{self, Changes, Conditional, NewEndpoint, WebhookDelivery, WebhookDeliveryDetail, WebhookEndpoint},
    },
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(event_types))
        .routes(routes!(get, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(delivery))
        .routes(routes!(redeliver))
}

/// The scopes this resource's routes require (besides the tenant admin role).
pub mod scopes {
    pub const READ: &str = "webhooks:read";
    pub const WRITE: &str = "webhooks:write";
}

/// The event types this resource's writes commit (webhooks may subscribe to them).
pub const EVENTS: &[&str] = &["webhook_endpoint.created", "webhook_endpoint.updated", "webhook_endpoint.deleted", "webhook_endpoint.secret_rotated", "webhook_endpoint.disabled", "webhook_delivery.redelivered"];

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// An `https` URL (plain `http` only in development or to an allow-listed network) whose host
    /// is public.
    #[validate(length(min = 1, max = 2000, message = "must be 1 to 2000 characters"))]
    #[schema(min_length = 1, max_length = 2000, example = "https://example.com/webhooks")]
    pub url: String,
    #[serde(default)]
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: String,
    /// Event types to deliver (see `GET /webhooks/event-types`); empty or absent: all.
    #[serde(default)]
    #[validate(length(max = 50, message = "must list at most 50 event types"))]
    #[schema(max_items = 50)]
    pub event_types: Vec<String>,
}

/// At least one field; an absent field stays as it is. `enabled: true` also clears the failure run.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[validate(length(min = 1, max = 2000, message = "must be 1 to 2000 characters"))]
    #[schema(nullable = false, min_length = 1, max_length = 2000)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(nullable = false, max_length = 500)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[validate(length(max = 50, message = "must list at most 50 event types"))]
    #[schema(nullable = false, max_items = 50)]
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveryQuery {
    /// Only deliveries in this status.
    #[param(inline)]
    pub status: Option<DeliveryStatus>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 22, max_length = 22, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

fn require(ctx: &TenantContext, scope: &str) -> Result<(), Problem> {
    ctx.require_tenant_admin()?;
    ctx.auth.require_scope(scope).map_err(Problem::from)
}

fn with_etag(status: StatusCode, endpoint: &WebhookEndpoint) -> Response {
    let mut response = (status, Json(endpoint)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&endpoint.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The endpoint URL refused, as a 422 whose detail says why.
fn url_refused(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "webhook-url-refused", "Webhook URL refused", detail)
}

/// Checks an endpoint URL: parseable, no credentials, a literal address only where the SSRF policy
/// admits it, and `https` unless in development or aimed at an allow-listed network.
fn check_url(state: &AppState, text: &str) -> Result<Url, Problem> {
    let url = Url::parse(text).map_err(|error| url_refused(format!("url: not a valid URL ({error})")))?;
    let config = &state.settings.webhooks;
    AddressPolicy::new(config.allow_networks.clone())
        .check_url(&url)
        .map_err(|refusal| url_refused(format!("url: {refusal}")))?;
    if url.scheme() == "http" && !state.settings.environment.is_development() {
        let allowed = match url.host() {
            Some(url::Host::Ipv4(ip)) => config.allow_networks.iter().any(|net| net.contains(&IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => config.allow_networks.iter().any(|net| net.contains(&IpAddr::V6(ip))),
            _ => false,
        };
        if !allowed {
            return Err(url_refused("url: must use https"));
        }
    }
    Ok(url)
}

fn check_types(types: &[String]) -> Result<(), Problem> {
    let unknown: Vec<&str> = types.iter().map(String::as_str).filter(|t| !events::is_known(t)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Problem::validation(vec![FieldError {
        field: "event_types".into(),
        message: format!("unknown event types: {} (see GET /api/v1/webhooks/event-types)", unknown.join(", ")),
    }]))
}

/// The event types an endpoint can subscribe to.
#[utoipa::path(get, path = "/webhooks/event-types", operation_id = "list_webhook_event_types", tag = "webhooks",
    responses((status = 200, body = Vec<String>), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:read"])))]
pub async fn event_types(ctx: TenantContext) -> Result<Json<Vec<&'static str>>, ApiError> {
    require(&ctx, scopes::READ)?;
    Ok(Json(EVENT_TYPES.clone()))
}

/// List the tenant's webhook endpoints, oldest first.
#[utoipa::path(get, path = "/webhooks", operation_id = "list_webhook_endpoints", tag = "webhooks", params(PageParams),
    responses((status = 200, body = Page<WebhookEndpoint>), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:read"])))]
pub async fn list(
    mut ctx: TenantContext,
    Query(query): Query<PageParams>,
) -> Result<Json<Page<WebhookEndpoint>>, ApiError> {
    require(&ctx, scopes::READ)?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(store::list(ctx.session.tx().await?, tenant_id, &query.into()).await?))
}

/// Create an endpoint. The answer holds its signing secret: the only time it is shown.
#[utoipa::path(post, path = "/webhooks", operation_id = "create_webhook_endpoint", tag = "webhooks",
    request_body = NewWebhookEndpoint,
    responses((status = 201, body = WebhookEndpoint, headers(("ETag" = String), ("Location" = String))),
        crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:write"])))]
pub async fn create(
    State(state): State<AppState>,
    mut ctx: TenantContext,
    ValidatedJson(new): ValidatedJson<NewWebhookEndpoint>,
) -> Result<Response, ApiError> {
    require(&ctx, scopes::WRITE)?;
    let url = check_url(&state, &new.url)?;
    check_types(&new.event_types)?;
    let secret = SigningSecret::generate();
    let exposed = secret.expose();
    let tenant_id = ctx.tenant_id();
    let endpoint = NewEndpoint {
        url: url.as_str(),
        description: new.description.trim(),
        event_types: &new.event_types,
        secret: &exposed,
    };
    let mut created = store::create(ctx.session.tx().await?, tenant_id, &endpoint).await?;
    let id = created.id.to_string();
    ctx.commit(Change { action: "webhook_endpoint.created", resource_type: "webhook_endpoint", resource_id: &id })
        .await?;
    created.secret = Some(exposed);
    let mut response = with_etag(StatusCode::CREATED, &created);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/webhooks/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Fetch one endpoint (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}", operation_id = "get_webhook_endpoint", tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookEndpoint, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:read"])))]
pub async fn get(mut ctx: TenantContext, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    require(&ctx, scopes::READ)?;
    let tenant_id = ctx.tenant_id();
    match store::get(ctx.session.tx().await?, tenant_id, id).await? {
        Some(endpoint) => Ok(with_etag(StatusCode::OK, &endpoint)),
        None => Err(not_found("webhook endpoint").into()),
    }
}

/// Change an endpoint (`If-Match` honoured). Re-enabling clears its failure run.
#[utoipa::path(patch, path = "/webhooks/{id}", operation_id = "update_webhook_endpoint", tag = "webhooks",
    request_body = WebhookEndpointPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 200, body = WebhookEndpoint, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:write"])))]
pub async fn update(
    State(state): State<AppState>,
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ValidatedJson(patch): ValidatedJson<WebhookEndpointPatch>,
) -> Result<Response, ApiError> {
    require(&ctx, scopes::WRITE)?;
    if patch.url.is_none() && patch.description.is_none() && patch.event_types.is_none() && patch.enabled.is_none() {
        return Err(Problem::validation(vec![FieldError {
            field: String::new(),
            message: "send at least one of url, description, event_types, enabled".into(),
        }])
        .into());
    }
    let url = patch.url.as_deref().map(|url| check_url(&state, url)).transpose()?;
    if let Some(types) = &patch.event_types {
        check_types(types)?;
    }
    let expected = conditional::if_match_version(&headers, id)?;
    let changes = Changes {
        url: url.map(String::from),
        description: patch.description.map(|d| d.trim().to_owned()),
        event_types: patch.event_types,
        enabled: patch.enabled,
    };
    let tenant_id = ctx.tenant_id();
    match store::update(ctx.session.tx().await?, tenant_id, id, expected, &changes).await? {
        Conditional::Done(endpoint) => {
            let id = id.to_string();
            ctx.commit(Change { action: "webhook_endpoint.updated", resource_type: "webhook_endpoint", resource_id: &id })
                .await?;
            Ok(with_etag(StatusCode::OK, &endpoint))
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("webhook endpoint").into()),
    }
}

/// Delete an endpoint and its delivery log (`If-Match` honoured).
#[utoipa::path(delete, path = "/webhooks/{id}", operation_id = "delete_webhook_endpoint", tag = "webhooks",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 204, description = "Deleted"), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:write"])))]
pub async fn delete(mut ctx: TenantContext, Path(id): Path<Uuid>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    require(&ctx, scopes::WRITE)?;
    let expected = conditional::if_match_version(&headers, id)?;
    let tenant_id = ctx.tenant_id();
    match store::delete(ctx.session.tx().await?, tenant_id, id, expected).await? {
        Conditional::Done(()) => {
            let id = id.to_string();
            ctx.commit(Change { action: "webhook_endpoint.deleted", resource_type: "webhook_endpoint", resource_id: &id })
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("webhook endpoint").into()),
    }
}

/// Replace the signing secret. The answer holds the new secret (shown this once); the old one
/// keeps signing alongside it for `webhooks.secret_rotation_overlap` (24 hours by default), so
/// receivers can switch without losing a delivery.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", operation_id = "rotate_webhook_secret", tag = "webhooks",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    responses((status = 200, body = WebhookEndpoint, headers(("ETag" = String))), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:write"])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require(&ctx, scopes::WRITE)?;
    let expected = conditional::if_match_version(&headers, id)?;
    let secret = SigningSecret::generate();
    let exposed = secret.expose();
    let until = OffsetDateTime::now_utc() + state.settings.webhooks.secret_rotation_overlap;
    let tenant_id = ctx.tenant_id();
    match store::rotate_secret(ctx.session.tx().await?, tenant_id, id, expected, &exposed, until).await? {
        Conditional::Done(mut endpoint) => {
            let id = id.to_string();
            let change =
                Change { action: "webhook_endpoint.secret_rotated", resource_type: "webhook_endpoint", resource_id: &id };
            ctx.commit(change).await?;
            endpoint.secret = Some(exposed);
            Ok(with_etag(StatusCode::OK, &endpoint))
        }
        Conditional::Stale => Err(conditional::precondition_failed().into()),
        Conditional::NotFound => Err(not_found("webhook endpoint").into()),
    }
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    params(("id" = Uuid, Path), DeliveryQuery),
    responses((status = 200, body = Page<WebhookDelivery>), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:read"])))]
pub async fn deliveries(
    mut ctx: TenantContext,
    Path(id): Path<Uuid>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Page<WebhookDelivery>>, ApiError> {
    require(&ctx, scopes::READ)?;
    let tenant_id = ctx.tenant_id();
    let tx = ctx.session.tx().await?;
    if store::get(tx, tenant_id, id).await?.is_none() {
        return Err(not_found("webhook endpoint").into());
    }
    let page = PageRequest { limit: query.limit, cursor: query.cursor };
    let status = query.status.map(DeliveryStatus::as_str);
    Ok(Json(store::deliveries(tx, tenant_id, id, status, &page).await?))
}

/// One delivery, with the body sent and every attempt.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery_id}", operation_id = "get_webhook_delivery",
    tag = "webhooks", params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 200, body = WebhookDeliveryDetail), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:read"])))]
pub async fn delivery(
    mut ctx: TenantContext,
    Path((id, delivery_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<WebhookDeliveryDetail>, ApiError> {
    require(&ctx, scopes::READ)?;
    let tenant_id = ctx.tenant_id();
    store::delivery(ctx.session.tx().await?, tenant_id, id, delivery_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found("webhook delivery").into())
}

/// Send a delivery again: a new attempt now (same `webhook-id`), whatever its status.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/redeliver", operation_id = "redeliver_webhook",
    tag = "webhooks", params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 202, description = "Queued"), crate::openapi::ErrorResponses),
    security(("bearer" = ["webhooks:write"])))]
pub async fn redeliver(
    State(state): State<AppState>,
    mut ctx: TenantContext,
    Path((id, delivery_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&ctx, scopes::WRITE)?;
    let tenant_id = ctx.tenant_id();
    let tx = ctx.session.tx().await?;
    if !store::reopen(tx, tenant_id, id, delivery_id).await? {
        return Err(not_found("webhook delivery").into());
    }
    let queue = background::queue(&state.db, &state.settings.jobs);
    let job = DeliverJob { tenant_id, delivery_id };
    let key = format!("{DELIVER}:{delivery_id}:redeliver:{}", Uuid::now_v7());
    queue.enqueue_in(tx, DELIVER, &key, &job, queue.now()).await.map_err(|error| {
        tracing::error!(%error, "cannot enqueue a webhook redelivery");
        Problem::internal()
    })?;
    let delivery_id = delivery_id.to_string();
    let change =
        Change { action: "webhook_delivery.redelivered", resource_type: "webhook_delivery", resource_id: &delivery_id };
    ctx.commit(change).await?;
    Ok(StatusCode::ACCEPTED)
}
