//! Every forged, stale or misdirected token is refused, each with the reason that says why.

use palisade_auth::{AuthConfig, AuthError};
use serde_json::json;

use crate::support::{KEYS, Provider, TestKey, assert_refused, authenticator, claims, hs256, now, unsigned};

async fn setup() -> (Provider, std::sync::Arc<palisade_auth::Authenticator>, std::sync::Arc<palisade_ops::Metrics>) {
    let provider = Provider::start(&[&KEYS.rsa, &KEYS.ec]).await;
    let (auth, metrics) = authenticator(&provider.config(), false).await;
    (provider, auth, metrics)
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let (provider, auth, metrics) = setup().await;
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(&json!({ "alg": alg, "kid": KEYS.rsa.kid }), &claims(&provider.issuer));
        let error = assert_refused(&auth, &metrics, &token, "disallowed_algorithm").await;
        assert!(error.to_string().contains("alg none"), "{error}");
    }
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_refused_even_when_hs256_is_allowed() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let header = json!({ "alg": "HS256", "kid": KEYS.rsa.kid });
    let jwk_text = KEYS.rsa.jwk.to_string();
    let forgeries = [
        hs256(&KEYS.rsa.public_bytes, &header, &claims(&provider.issuer)),
        hs256(jwk_text.as_bytes(), &header, &claims(&provider.issuer)),
    ];
    let (auth, metrics) = authenticator(&provider.config(), false).await;
    for token in &forgeries {
        assert_refused(&auth, &metrics, token, "disallowed_algorithm").await;
    }
    let careless = AuthConfig { algorithms: vec!["RS256".into(), "HS256".into()], ..provider.config() };
    let (auth, metrics) = authenticator(&careless, false).await;
    for token in &forgeries {
        assert_refused(&auth, &metrics, token, "disallowed_algorithm").await;
    }
}

#[tokio::test]
async fn a_token_whose_algorithm_does_not_match_the_key_it_names_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let claims = claims(&provider.issuer);
    let rsa_signed_naming_ec_key = KEYS.rsa.sign("RS256", &json!({ "alg": "RS256", "kid": KEYS.ec.kid }), &claims);
    let error = assert_refused(&auth, &metrics, &rsa_signed_naming_ec_key, "disallowed_algorithm").await;
    assert!(error.to_string().contains("does not match"), "{error}");
    let ec_signed_naming_rsa_key = KEYS.ec.sign("ES256", &json!({ "alg": "ES256", "kid": KEYS.rsa.kid }), &claims);
    assert_refused(&auth, &metrics, &ec_signed_naming_rsa_key, "disallowed_algorithm").await;
}

#[tokio::test]
async fn a_token_without_a_key_id_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let token = KEYS.rsa.sign("RS256", &json!({ "alg": "RS256" }), &claims(&provider.issuer));
    let error = assert_refused(&auth, &metrics, &token, "unknown_key").await;
    assert!(matches!(error, AuthError::MissingKeyId));
}

#[tokio::test]
async fn a_token_naming_a_key_the_issuer_does_not_publish_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let stranger = TestKey::ed25519("stranger");
    let error = assert_refused(&auth, &metrics, &stranger.token(&claims(&provider.issuer)), "unknown_key").await;
    assert!(matches!(error, AuthError::UnknownKey));
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let mut claims = claims(&provider.issuer);
    claims["iss"] = json!("https://evil.example.com");
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "wrong_issuer").await;
    claims.as_object_mut().expect("object").remove("iss");
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "missing_claim").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let mut claims = claims(&provider.issuer);
    claims["aud"] = json!("some-other-api");
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "wrong_audience").await;
    claims["aud"] = json!(["some-other-api", crate::support::AUDIENCE]);
    auth.authenticate(&KEYS.rsa.token(&claims)).await.expect("one of several audiences is enough");
}

#[tokio::test]
async fn an_expired_token_is_refused_once_the_leeway_has_passed() {
    let (provider, auth, metrics) = setup().await;
    let mut claims = claims(&provider.issuer);
    claims["exp"] = json!(now() - 10);
    auth.authenticate(&KEYS.rsa.token(&claims)).await.expect("within the 30 s leeway");
    claims["exp"] = json!(now() - 60);
    let error = assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "expired").await;
    assert_eq!(error.to_string(), "The access token has expired.");
}

#[tokio::test]
async fn a_token_without_an_expiry_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let mut claims = claims(&provider.issuer);
    claims.as_object_mut().expect("object").remove("exp");
    let error = assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "missing_claim").await;
    assert!(error.to_string().contains("`exp`"), "{error}");
}

#[tokio::test]
async fn a_token_that_is_not_valid_yet_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let mut claims = claims(&provider.issuer);
    claims["nbf"] = json!(now() + 120);
    assert_refused(&auth, &metrics, &KEYS.rsa.token(&claims), "not_yet_valid").await;
}

#[tokio::test]
async fn an_algorithm_outside_the_allow_list_is_refused() {
    let provider = Provider::start(&[&KEYS.rsa]).await;
    let config = AuthConfig { algorithms: vec!["RS256".into()], ..provider.config() };
    let (auth, metrics) = authenticator(&config, false).await;
    let claims = claims(&provider.issuer);
    auth.authenticate(&KEYS.rsa.token_as("RS256", &claims)).await.expect("RS256 is allowed");
    let error = assert_refused(&auth, &metrics, &KEYS.rsa.token_as("PS256", &claims), "disallowed_algorithm").await;
    assert!(error.to_string().contains("PS256"), "{error}");
    let unheard_of = KEYS.rsa.sign("RS256", &json!({ "alg": "XS999", "kid": KEYS.rsa.kid }), &claims);
    assert_refused(&auth, &metrics, &unheard_of, "disallowed_algorithm").await;
}

#[tokio::test]
async fn a_token_with_a_bad_signature_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let token = KEYS.rsa.token(&claims(&provider.issuer));
    let (signed, _) = token.rsplit_once('.').expect("three parts");
    let (header, _) = signed.split_once('.').expect("three parts");
    let mut elevated = claims(&provider.issuer);
    elevated["scope"] = json!("platform:admin");
    let tampered = format!(
        "{header}.{}.{}",
        crate::support::b64(elevated.to_string().as_bytes()),
        token.rsplit_once('.').map(|(_, s)| s).unwrap_or_default()
    );
    assert_refused(&auth, &metrics, &tampered, "invalid_signature").await;

    let impostor = TestKey::rsa(&KEYS.rsa.kid);
    assert_refused(&auth, &metrics, &impostor.token(&claims(&provider.issuer)), "invalid_signature").await;
}

#[tokio::test]
async fn garbage_is_refused_as_malformed() {
    let (_provider, auth, metrics) = setup().await;
    for garbage in ["", "garbage", "a.b.c", "bm90IGpzb24.e30.c2ln", "....", "Bearer x.y.z"] {
        assert_refused(&auth, &metrics, garbage, "malformed_token").await;
    }
}

#[tokio::test]
async fn a_header_with_critical_extensions_is_refused() {
    let (provider, auth, metrics) = setup().await;
    let header = json!({ "alg": "RS256", "kid": KEYS.rsa.kid, "crit": ["b64"], "b64": false });
    let token = KEYS.rsa.sign("RS256", &header, &claims(&provider.issuer));
    assert_refused(&auth, &metrics, &token, "malformed_token").await;
}

#[tokio::test]
async fn a_key_url_in_the_token_header_is_ignored() {
    let (provider, auth, metrics) = setup().await;
    let attacker = TestKey::rsa("attacker");
    let header = json!({ "alg": "RS256", "kid": "attacker", "jku": "http://127.0.0.1:9/jwks", "jwk": attacker.jwk });
    let token = attacker.sign("RS256", &header, &claims(&provider.issuer));
    assert_refused(&auth, &metrics, &token, "unknown_key").await;
}
