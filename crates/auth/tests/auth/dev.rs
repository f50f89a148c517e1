//! Development tokens: minted by `palisade token`, accepted only in development.

use std::time::Duration;

use palisade_auth::{AuthConfig, AuthError, Authenticator, DEV_ISSUER, DevTokenRequest, mint_dev_token, scopes};
use secrecy::SecretString;
use serde_json::json;

use crate::support::{KEYS, Provider, assert_refused, authenticator, hs256, metrics, now};

fn request() -> DevTokenRequest {
    DevTokenRequest {
        subject: "dev-user".into(),
        tenant: Some("demo".into()),
        scopes: vec!["todos:read".into(), scopes::TENANT_ADMIN.into()],
        ttl: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn a_minted_dev_token_round_trips_with_its_tenant_scopes_and_id() {
    let config = AuthConfig::default();
    let token = mint_dev_token(&config, true, &request()).expect("minted");
    let (auth, _) = authenticator(&config, true).await;
    assert!(!auth.is_oidc());
    let context = auth.authenticate(&token).await.expect("accepted in development");
    assert_eq!(context.subject, "dev-user");
    assert_eq!(context.tenant.as_deref(), Some("demo"));
    assert_eq!(context.scopes.iter().collect::<Vec<_>>(), ["tenant:admin", "todos:read"]);
    assert!(context.jti.as_deref().is_some_and(|jti| uuid::Uuid::parse_str(jti).is_ok()));
    let lifetime = context.expires_at.unix_timestamp() - now();
    assert!((3590..=3600).contains(&lifetime), "{lifetime}");

    let other = mint_dev_token(&config, true, &request()).expect("minted");
    let other = auth.authenticate(&other).await.expect("accepted");
    assert_ne!(other.jti, context.jti, "each token gets its own id");
}

#[tokio::test]
async fn dev_tokens_use_the_configured_tenant_claim_audience_and_secret() {
    let config = AuthConfig {
        tenant_claim: "org".into(),
        audience: Some("my-api".into()),
        dev_secret: Some(SecretString::from("a-team-specific-development-secret-123")),
        ..AuthConfig::default()
    };
    let token = mint_dev_token(&config, true, &request()).expect("minted");
    let (auth, metrics) = authenticator(&config, true).await;
    assert_eq!(auth.authenticate(&token).await.expect("accepted").tenant.as_deref(), Some("demo"));
    let (default_auth, default_metrics) = authenticator(&AuthConfig::default(), true).await;
    assert_refused(&default_auth, &default_metrics, &token, "invalid_signature").await;

    let mut claims = json!({ "iss": DEV_ISSUER, "aud": "palisade", "sub": "x", "exp": now() + 60 });
    let token = hs256(b"a-team-specific-development-secret-123", &json!({ "alg": "HS256" }), &claims);
    assert_refused(&auth, &metrics, &token, "wrong_audience").await;
    claims["aud"] = json!("my-api");
    claims["iss"] = json!("someone-else");
    let token = hs256(b"a-team-specific-development-secret-123", &json!({ "alg": "HS256" }), &claims);
    assert_refused(&auth, &metrics, &token, "wrong_issuer").await;
}

#[tokio::test]
async fn development_mode_only_accepts_hs256() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let claims = json!({ "iss": DEV_ISSUER, "aud": "palisade", "sub": "x", "exp": now() + 60 });
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "disallowed_algorithm").await;
}

#[tokio::test]
async fn development_mode_refuses_to_start_outside_development() {
    let result = Authenticator::new(&AuthConfig::default(), false, metrics(), None).await;
    assert!(matches!(result, Err(AuthError::DevTokensDisabled(_))), "{result:?}");
}

#[test]
fn minting_is_refused_outside_development_or_with_an_issuer() {
    let refused = mint_dev_token(&AuthConfig::default(), false, &request());
    assert!(matches!(refused, Err(AuthError::DevTokensDisabled(_))));
    let with_issuer = AuthConfig { issuer: Some("https://id.example.com".into()), ..AuthConfig::default() };
    assert!(matches!(mint_dev_token(&with_issuer, true, &request()), Err(AuthError::DevTokensDisabled(_))));
}

#[test]
fn a_dev_token_request_is_checked() {
    let config = AuthConfig::default();
    for bad in [
        DevTokenRequest { subject: " ".into(), ..request() },
        DevTokenRequest { ttl: Duration::ZERO, ..request() },
        DevTokenRequest { scopes: vec!["todos:read todos:write".into()], ..request() },
    ] {
        assert!(matches!(mint_dev_token(&config, true, &bad), Err(AuthError::InvalidDevTokenRequest(_))));
    }
}

#[tokio::test]
async fn a_dev_token_is_refused_where_an_issuer_is_configured() {
    let token = mint_dev_token(&AuthConfig::default(), true, &request()).expect("minted");
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let (auth, metrics) = authenticator(&provider.config(), false).await;
    assert_refused(&auth, &metrics, &token, "disallowed_algorithm").await;
    assert!(matches!(auth.mint_dev_token(&request()), Err(AuthError::DevTokensDisabled(_))));
}

/// Verified tokens are served again without verifying them anew (crates/auth/src/verified.rs):
/// a served-again token must still expire on time, and a copy with a changed signature must
/// never pass for it.
#[tokio::test]
async fn a_token_accepted_before_still_expires_on_time_and_a_tampered_copy_never_passes() {
    let config = AuthConfig { leeway: Duration::ZERO, ..AuthConfig::default() };
    let token =
        mint_dev_token(&config, true, &DevTokenRequest { ttl: Duration::from_secs(1), ..request() }).expect("minted");
    let (auth, metrics) = authenticator(&config, true).await;
    auth.authenticate(&token).await.expect("accepted");
    auth.authenticate(&token).await.expect("accepted again");

    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{rest}.{flipped}{}", &signature[1..]);
    assert_refused(&auth, &metrics, &tampered, "invalid_signature").await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let error = assert_refused(&auth, &metrics, &token, "expired").await;
    assert_eq!(error.to_string(), "The access token has expired.");
}
