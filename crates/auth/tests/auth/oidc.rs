//! Verification with the issuer's published keys: discovery, rotation, outages, floods.

use std::time::{Duration, Instant};

use palisade_auth::{AuthConfig, AuthError, Authenticator, FailureReason};

use crate::support::{KEYS, Provider, assert_refused, authenticator, claims, eventually, metrics};

#[tokio::test]
async fn tokens_signed_with_rsa_ec_and_ed25519_keys_are_accepted_after_discovery() {
    let keys = &*KEYS;
    let provider = Provider::start(&[&keys.rsa, &keys.ec, &keys.ed]).await;
    let (auth, _) = authenticator(&provider.config(), false).await;
    assert!(auth.is_oidc());
    assert_eq!(auth.signing_key_count(), 3);
    assert_eq!(provider.discovery_requests(), 1, "the jwks_uri came from discovery");

    for (key, alg) in [(&keys.rsa, "RS256"), (&keys.rsa, "PS256"), (&keys.ec, "ES256"), (&keys.ed, "EdDSA")] {
        let claims = claims(&provider.issuer);
        let context = auth.authenticate(&key.token_as(alg, &claims)).await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(context.subject, "user-1");
        assert_eq!(context.tenant.as_deref(), Some("acme"));
        assert!(context.has_scope("todos:read") && context.has_scope("todos:write"));
        assert_eq!(context.jti.as_deref(), claims["jti"].as_str());
        assert_eq!(Some(context.expires_at.unix_timestamp()), claims["exp"].as_i64());
    }
}

#[tokio::test]
async fn a_configured_jwks_uri_is_used_without_discovery() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let config = AuthConfig { jwks_uri: Some(provider.jwks_uri()), ..provider.config() };
    let (auth, _) = authenticator(&config, false).await;
    auth.authenticate(&KEYS.rsa.token(&claims(&provider.issuer))).await.expect("accepted");
    assert_eq!(provider.discovery_requests(), 0);
    assert_eq!(provider.jwks_requests(), 1);
}

#[tokio::test]
async fn a_discovery_document_about_another_issuer_is_not_trusted() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    provider.claim_issuer("https://evil.example.com");
    let (auth, metrics) = authenticator(&provider.config(), false).await;
    assert_eq!(auth.signing_key_count(), 0);
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims(&provider.issuer)), "keys_unavailable").await;
    assert_eq!(provider.jwks_requests(), 0, "keys were never fetched from the untrusted document");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_restart_and_the_retired_key_stops_working() {
    let keys = &*KEYS;
    let provider = Provider::start(&[&keys.rsa]).await;
    let (auth, metrics) = authenticator(&provider.config(), false).await;
    let old_token = keys.rsa.token(&claims(&provider.issuer));
    auth.authenticate(&old_token).await.expect("the current key works");

    provider.publish(&[&keys.rsa_next]);
    let new_token = keys.rsa_next.token(&claims(&provider.issuer));
    auth.authenticate(&new_token).await.expect("the new kid triggers a refetch and is accepted");

    assert_refused(&auth, &metrics, &old_token, "unknown_key").await;
    auth.authenticate(&new_token).await.expect("the new key keeps working");
}

#[tokio::test]
async fn the_background_refresh_learns_new_keys_before_any_token_needs_them() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let config = AuthConfig { jwks_refresh_interval: Duration::from_millis(100), ..provider.config() };
    let (auth, _) = authenticator(&config, false).await;
    assert_eq!(auth.signing_key_count(), 1);

    provider.publish(&[&KEYS.rsa, &KEYS.ec]);
    assert!(eventually(Duration::from_secs(5), || async { auth.signing_key_count() == 2 }).await);
    let requests = provider.jwks_requests();
    auth.authenticate(&KEYS.ec.token(&claims(&provider.issuer))).await.expect("already known");
    assert_eq!(provider.jwks_requests(), requests, "no on-demand refetch was needed");
}

#[tokio::test]
async fn a_provider_down_at_startup_is_waited_for_and_its_last_good_keys_outlive_the_next_outage() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    provider.set_up(false);
    let config = AuthConfig { jwks_refresh_interval: Duration::from_millis(100), ..provider.config() };
    let (auth, metrics) = authenticator(&config, false).await;
    let token = KEYS.rsa.token(&claims(&provider.issuer));

    let error = assert_refused(&auth, &metrics, &token, "keys_unavailable").await;
    assert!(error.to_string().contains("not available yet"), "{error}");

    provider.set_up(true);
    assert!(
        eventually(Duration::from_secs(5), || async { auth.authenticate(&token).await.is_ok() }).await,
        "the background retry fetched the keys once the provider came up"
    );

    provider.set_up(false);
    let requests = provider.requests();
    assert!(eventually(Duration::from_secs(5), || async { provider.requests() > requests + 2 }).await);
    auth.authenticate(&token).await.expect("the last good keys still verify while the provider is down");
}

#[tokio::test]
async fn a_hanging_provider_delays_startup_by_no_more_than_the_fetch_timeout() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    provider.set_delay(Duration::from_secs(30));
    let config = AuthConfig { jwks_fetch_timeout: Duration::from_millis(300), ..provider.config() };
    let started = Instant::now();
    let (auth, metrics) = authenticator(&config, false).await;
    assert!(started.elapsed() < Duration::from_secs(3), "startup took {:?}", started.elapsed());
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims(&provider.issuer)), "keys_unavailable").await;
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_costs_the_provider_at_most_the_refetch_budget() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let config = AuthConfig { jwks_unknown_kid_refetches_per_minute: 3, ..provider.config() };
    let (auth, metrics) = authenticator(&config, false).await;
    assert_eq!(provider.jwks_requests(), 1, "the startup fetch");
    let claims = claims(&provider.issuer);
    let forged = |n: usize| {
        KEYS.rsa.sign("RS256", &serde_json::json!({ "alg": "RS256", "kid": format!("made-up-{n}") }), &claims)
    };

    let flood = (0..100).map(|n| {
        let (auth, token) = (auth.clone(), forged(n));
        tokio::spawn(async move { auth.authenticate(&token).await })
    });
    for result in futures::future::join_all(flood).await {
        assert!(matches!(result.expect("task"), Err(AuthError::UnknownKey)));
    }
    assert!(provider.jwks_requests() <= 1 + 3, "a concurrent flood: {} fetches", provider.jwks_requests());
    assert_eq!(metrics.auth_failures_total.with_label_values(&["unknown_key"]).get(), 100);

    for n in 100..150 {
        assert!(matches!(auth.authenticate(&forged(n)).await, Err(AuthError::UnknownKey)));
    }
    assert_eq!(provider.jwks_requests(), 1 + 3, "one after another, the flood spends the budget and no more");
}

#[tokio::test]
async fn two_key_rotations_within_seconds_are_both_followed_at_once() {
    let keys = &*KEYS;
    let provider = Provider::start(&[&keys.rsa]).await;
    let (auth, _) = authenticator(&provider.config(), false).await;
    auth.authenticate(&keys.rsa.token(&claims(&provider.issuer))).await.expect("the first key");

    provider.publish(&[&keys.rsa_next]);
    auth.authenticate(&keys.rsa_next.token(&claims(&provider.issuer))).await.expect("the first rotation");

    provider.publish(&[&keys.ec]);
    let started = Instant::now();
    auth.authenticate(&keys.ec.token(&claims(&provider.issuer))).await.expect("the second rotation, at once");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn dropping_the_authenticator_stops_the_background_refresh() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let config = AuthConfig { jwks_refresh_interval: Duration::from_millis(50), ..provider.config() };
    let (auth, _) = authenticator(&config, false).await;
    assert!(eventually(Duration::from_secs(5), || async { provider.jwks_requests() >= 3 }).await);
    drop(auth);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let requests = provider.jwks_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.jwks_requests(), requests);
}

#[tokio::test]
async fn keys_of_unsupported_kinds_are_skipped_without_losing_the_rest() {
    let provider = Provider::start(&[]).await;
    provider.publish_raw(vec![
        serde_json::json!({ "kty": "oct", "kid": "shared", "k": "c2VjcmV0" }),
        serde_json::json!({ "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" }),
        serde_json::json!({ "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" }),
        serde_json::json!({ "kty": "whatever" }),
        KEYS.rsa.jwk.clone(),
    ]);
    let (auth, _) = authenticator(&provider.config(), false).await;
    assert_eq!(auth.signing_key_count(), 1);
    auth.authenticate(&KEYS.rsa.token(&claims(&provider.issuer))).await.expect("the usable key works");
}

#[tokio::test]
async fn every_failure_reason_is_exported_at_zero_from_the_start() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let metrics = metrics();
    let _auth = Authenticator::new(&provider.config(), false, metrics.clone(), None).await.expect("authenticator");
    let text = metrics.render();
    for reason in FailureReason::ALL {
        let series = format!("auth_failures_total{{reason=\"{}\"}} 0", reason.as_str());
        assert!(text.contains(&series), "missing {series}");
    }
}

#[tokio::test]
async fn an_invalid_section_refuses_to_build_an_authenticator() {
    let config = AuthConfig { algorithms: vec!["none".into()], ..AuthConfig::default() };
    let result = Authenticator::new(&config, true, metrics(), None).await;
    assert!(matches!(result, Err(AuthError::Config(problems)) if problems.iter().any(|p| p.contains("none"))));
}

#[tokio::test]
async fn readiness_waits_for_the_signing_keys_to_be_loaded_once() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    provider.set_up(false);
    let (auth, _) = authenticator(&provider.config(), false).await;
    let check = auth.readiness_check().expect("a check in OIDC mode");
    assert_eq!(check.name(), "signing_keys");
    assert!(check.check().await.is_err(), "ready although no key was ever loaded");

    provider.set_up(true);
    assert!(eventually(Duration::from_secs(20), || async { check.check().await.is_ok() }).await);

    let optional = AuthConfig { ready_requires_signing_keys: false, ..provider.config() };
    assert!(authenticator(&optional, false).await.0.readiness_check().is_none());
    let development = AuthConfig::default();
    assert!(authenticator(&development, true).await.0.readiness_check().is_none());
}
