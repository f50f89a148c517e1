//! `Idempotency-Key` for POST: a client retrying after a timeout must not create a second todo.
//! The first request with a key records its response in the same transaction as its write; a
//! repeat with the same key and the same body gets that response again; the same key with a
//! different body is a client error (422). Keys are per caller and remembered for 24 hours.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use palisade_ops::Problem;
use palisade_store::{Tx, on_tx};
use palisade_tenancy::TenancyError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered; older keys are swept per tenant on every keyed POST and by the
/// `cleanup.idempotency_keys` job (crate::background).
pub const RETENTION: Duration = Duration::hours(24);

/// What to do with a request carrying a key.
#[derive(Debug)]
pub enum Replay {
    /// First time: go ahead, then call [`finish`].
    Fresh,
    /// Seen before with the same body: answer this.
    Stored(Response),
}

/// The request's key, if any (1–255 visible ASCII characters), scoped to the caller: another
/// user of the tenant choosing the same key neither collides with it nor replays its response.
pub fn key(headers: &HeaderMap, subject: &str) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key =
        value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(format!("{}:{subject}:{k}", subject.len())))
        .ok_or_else(|| Problem::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters."))
}

/// A fingerprint of the body that ignores formatting and member order.
fn fingerprint(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|value| value.to_string().into_bytes())
        .unwrap_or_else(|_| body.to_vec());
    Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(sqlx::FromRow)]
struct Stored {
    request_hash: String,
    status: i16,
    body: String,
    etag: Option<String>,
}

/// Claims `key` for this request, or finds the earlier request that claimed it. On PostgreSQL a
/// concurrent request with the same key waits on the unique index until the first commits.
pub async fn begin(tx: &mut Tx, tenant_id: Uuid, key: &str, body: &[u8]) -> Result<Replay, ApiError> {
    let now = OffsetDateTime::now_utc();
    let hash = fingerprint(body);
    on_tx!(tx, |conn| sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND created_at < $2")
        .bind(tenant_id)
        .bind(now - RETENTION)
        .execute(conn)
        .await
        .map(drop))
    .map_err(TenancyError::from)?;
    let claimed = on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, etag, created_at) \
         VALUES ($1, $2, $3, 0, '', NULL, $4) ON CONFLICT (tenant_id, key) DO NOTHING"
    )
    .bind(tenant_id)
    .bind(key)
    .bind(&hash)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
    .map_err(TenancyError::from)?;
    if claimed == 1 {
        return Ok(Replay::Fresh);
    }
    let stored: Stored = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT request_hash, status, body, etag FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_one(conn)
    .await)
    .map_err(TenancyError::from)?;
    if stored.request_hash != hash {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            "This Idempotency-Key was already used with a different request body.",
        )
        .into());
    }
    let status =
        u16::try_from(stored.status).ok().and_then(|s| StatusCode::from_u16(s).ok()).filter(|s| s.as_u16() >= 200);
    let Some(status) = status else {
        return Err(
            Problem::conflict("A request with this Idempotency-Key is still being processed; retry shortly.").into()
        );
    };
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], stored.body).into_response();
    if let Some(etag) = stored.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Replay::Stored(response))
}

/// Records the response of the request that claimed `key`.
pub async fn finish(
    tx: &mut Tx,
    tenant_id: Uuid,
    key: &str,
    status: StatusCode,
    body: &impl Serialize,
    etag: &str,
) -> Result<(), ApiError> {
    let body = serde_json::to_string(body).map_err(|_| Problem::internal())?;
    on_tx!(tx, |conn| sqlx::query(
        "UPDATE idempotency_keys SET status = $1, body = $2, etag = $3 WHERE tenant_id = $4 AND key = $5"
    )
    .bind(i16::try_from(status.as_u16()).unwrap_or(500))
    .bind(body)
    .bind(etag)
    .bind(tenant_id)
    .bind(key)
    .execute(conn)
    .await
    .map(drop))
    .map_err(TenancyError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_formatting_and_member_order() {
        assert_eq!(fingerprint(br#"{"a":1,"b":2}"#), fingerprint(b"{ \"b\": 2,\n \"a\": 1 }"));
        assert_ne!(fingerprint(br#"{"a":1}"#), fingerprint(br#"{"a":2}"#));
    }
}
