//! Revocation: in process, shared through Redis, and what happens when Redis is unreachable.

use std::{sync::Arc, time::Duration};

use palisade_auth::{AuthConfig, AuthError, Authenticator, DevTokenRequest, RevocationFailureMode, mint_dev_token};
use palisade_ops::{Metrics, Problem};
use palisade_store::{Redis, RedisConfig};
use secrecy::SecretString;

use crate::support::{assert_refused, authenticator, metrics, redis_url};

fn dev_token() -> String {
    let request = DevTokenRequest {
        subject: "user-1".into(),
        tenant: Some("demo".into()),
        scopes: vec!["todos:read".into()],
        ttl: Duration::from_secs(600),
    };
    mint_dev_token(&AuthConfig::default(), true, &request).expect("minted")
}

fn redis(url: &str, metrics: &Arc<Metrics>, prefix: &str) -> Redis {
    let config = RedisConfig {
        url: Some(SecretString::from(url.to_owned())),
        connect_timeout: Duration::from_millis(300),
        command_timeout: Duration::from_millis(300),
        key_prefix: prefix.to_owned(),
    };
    Redis::connect(&config, metrics.clone()).expect("valid url").expect("configured")
}

async fn with_redis(config: &AuthConfig, url: &str, prefix: &str) -> (Arc<Authenticator>, Arc<Metrics>) {
    let metrics = metrics();
    let redis = redis(url, &metrics, prefix);
    let auth = Authenticator::new(config, true, metrics.clone(), Some(redis)).await.expect("authenticator");
    (auth, metrics)
}

#[tokio::test]
async fn a_revoked_token_is_refused_via_the_in_process_list() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let token = dev_token();
    let context = auth.authenticate(&token).await.expect("valid before revocation");
    auth.revoke_context(&context).await.expect("revoked");
    assert_refused(&auth, &metrics, &token, "revoked").await;
    auth.verify(&token).await.expect("verify skips the revocation check (revoking twice is fine)");
    auth.authenticate(&dev_token()).await.expect("other tokens are unaffected");
}

#[tokio::test]
async fn a_token_without_an_id_cannot_be_revoked() {
    let (auth, _) = authenticator(&AuthConfig::default(), true).await;
    let context = auth.authenticate(&dev_token()).await.expect("valid");
    let mut context = context;
    context.jti = None;
    assert!(matches!(auth.revoke_context(&context).await, Err(AuthError::NotRevocable)));
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_another_through_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("palisade-test-{}", uuid::Uuid::new_v4());
    let config = AuthConfig { revocation_failure_mode: RevocationFailureMode::Closed, ..AuthConfig::default() };
    let (replica_a, _) = with_redis(&config, &url, &prefix).await;
    let (replica_b, metrics_b) = with_redis(&config, &url, &prefix).await;
    let token = dev_token();
    let context = replica_b.authenticate(&token).await.expect("valid before revocation");

    replica_a.revoke_context(&context).await.expect("revoked");
    assert_refused(&replica_b, &metrics_b, &token, "revoked").await;
    replica_b.authenticate(&dev_token()).await.expect("other tokens are unaffected");

    // Revocations are keyed by tenant claim (length-prefixed) and jti.
    let tenant = context.tenant.as_deref().unwrap_or_default();
    let key = format!("{prefix}:revoked:{}:{tenant}:{}", tenant.len(), context.jti.as_deref().unwrap_or_default());
    let mut connection =
        redis::Client::open(url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("connected");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut connection).await.expect("ttl");
    assert!((600..=630).contains(&ttl), "the entry lives as long as the token plus leeway, not forever: {ttl}");

    let other_prefix = format!("palisade-test-{}", uuid::Uuid::new_v4());
    let (elsewhere, _) = with_redis(&config, &url, &other_prefix).await;
    elsewhere.authenticate(&token).await.expect("another key prefix is another deployment");
}

#[tokio::test]
async fn with_redis_unreachable_open_mode_lets_requests_through_and_counts_the_error() {
    let config = AuthConfig { revocation_failure_mode: RevocationFailureMode::Open, ..AuthConfig::default() };
    let (auth, metrics) = with_redis(&config, "redis://127.0.0.1:1", "palisade-test-down").await;
    let context = auth.authenticate(&dev_token()).await.expect("allowed in open mode");
    assert_eq!(context.subject, "user-1");
    assert!(metrics.redis_errors_total.with_label_values(&["revocation"]).get() >= 1);
    assert_eq!(metrics.auth_failures_total.with_label_values(&["revocation_unavailable"]).get(), 0);
}

#[tokio::test]
async fn with_redis_unreachable_closed_mode_refuses_with_a_503_problem() {
    let config = AuthConfig { revocation_failure_mode: RevocationFailureMode::Closed, ..AuthConfig::default() };
    let (auth, metrics) = with_redis(&config, "redis://127.0.0.1:1", "palisade-test-down").await;
    let error = assert_refused(&auth, &metrics, &dev_token(), "revocation_unavailable").await;
    assert_eq!(Problem::from(error).status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(metrics.redis_errors_total.with_label_values(&["revocation"]).get() >= 1);
}

#[tokio::test]
async fn revoking_while_redis_is_unreachable_fails_instead_of_pretending() {
    let (auth, _) = with_redis(&AuthConfig::default(), "redis://127.0.0.1:1", "palisade-test-down").await;
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(matches!(auth.revoke(None, "some-jti", expires_at).await, Err(AuthError::RevocationUnavailable)));
}
