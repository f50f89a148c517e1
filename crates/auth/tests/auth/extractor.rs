//! `AuthContext` as an axum extractor, over real HTTP.

use std::{sync::Arc, time::Duration};

use axum::{Router, http::StatusCode, routing::get};
use palisade_auth::{
    AuthConfig, AuthContext, AuthError, Authenticator, DevTokenRequest, RevocationFailureMode, mint_dev_token,
};
use palisade_store::{Redis, RedisConfig};
use secrecy::SecretString;
use serde_json::Value;

use crate::support::{authenticator, metrics};

async fn whoami(context: AuthContext) -> String {
    context.subject
}

async fn write(context: AuthContext) -> Result<&'static str, AuthError> {
    context.require_scope("todos:write")?;
    Ok("written")
}

async fn maybe(context: Option<AuthContext>) -> String {
    context.map_or_else(|| "anonymous".to_owned(), |c| c.subject)
}

/// Serves a router whose state is the authenticator; returns its base URL.
async fn serve(auth: Arc<Authenticator>) -> String {
    let router = Router::new()
        .route("/whoami", get(whoami))
        .route("/write", get(write))
        .route("/maybe", get(maybe))
        .with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

fn token(scopes: &[&str]) -> String {
    let request = DevTokenRequest {
        subject: "dev-user".into(),
        tenant: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ttl: Duration::from_secs(600),
    };
    mint_dev_token(&AuthConfig::default(), true, &request).expect("minted")
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn get_with(url: &str, authorization: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("response");
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (challenge, content_type) = (header("www-authenticate"), header("content-type"));
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    Answer { status, challenge, content_type, body: response.text().await.expect("body") }
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_whatever_the_case_of_the_scheme() {
    let (auth, _) = authenticator(&AuthConfig::default(), true).await;
    let base = serve(auth).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let answer = get_with(&format!("{base}/whoami"), Some(&format!("{scheme} {}", token(&[])))).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "dev-user"));
    }
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_401_problem_with_a_bare_challenge() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let base = serve(auth).await;
    let answer = get_with(&format!("{base}/whoami"), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge.as_deref(), Some("Bearer realm=\"palisade\""));
    assert_eq!(answer.content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(metrics.auth_failures_total.with_label_values(&["missing_token"]).get(), 1);
}

#[tokio::test]
async fn a_bad_token_gets_a_401_naming_invalid_token_and_the_reason() {
    let (auth, _) = authenticator(&AuthConfig::default(), true).await;
    let base = serve(auth).await;
    let answer = get_with(&format!("{base}/whoami"), Some("Bearer not.a.token")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer.challenge.unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm=\"palisade\", error=\"invalid_token\", error_description=\""));
    let body: Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(body["reason"], "malformed_token");
    assert_eq!(body["status"], 401);
    assert!(!answer.body.contains("not.a.token"));
}

#[tokio::test]
async fn a_missing_scope_gets_a_403_with_an_insufficient_scope_challenge() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let base = serve(auth).await;
    let answer = get_with(&format!("{base}/write"), Some(&format!("Bearer {}", token(&["todos:read"])))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let challenge = answer.challenge.unwrap_or_default();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"todos:write\""));
    assert_eq!(metrics.auth_failures_total.with_label_values(&["insufficient_scope"]).get(), 1);
    let answer = get_with(&format!("{base}/write"), Some(&format!("Bearer {}", token(&["todos:write"])))).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "written"));
}

#[tokio::test]
async fn an_optional_context_is_none_without_a_token_but_a_bad_token_is_still_refused() {
    let (auth, _) = authenticator(&AuthConfig::default(), true).await;
    let base = serve(auth).await;
    assert_eq!(get_with(&format!("{base}/maybe"), None).await.body, "anonymous");
    let answer = get_with(&format!("{base}/maybe"), Some(&format!("Bearer {}", token(&[])))).await;
    assert_eq!(answer.body, "dev-user");
    assert_eq!(get_with(&format!("{base}/maybe"), Some("Bearer junk")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreadable_revocation_list_in_closed_mode_gets_a_503_problem() {
    let metrics = metrics();
    let redis_config = RedisConfig {
        url: Some(SecretString::from("redis://127.0.0.1:1")),
        connect_timeout: Duration::from_millis(300),
        command_timeout: Duration::from_millis(300),
        key_prefix: "palisade-test-down".into(),
    };
    let redis = Redis::connect(&redis_config, metrics.clone()).expect("url").expect("configured");
    let config = AuthConfig { revocation_failure_mode: RevocationFailureMode::Closed, ..AuthConfig::default() };
    let auth = Authenticator::new(&config, true, metrics, Some(redis)).await.expect("authenticator");
    let base = serve(auth).await;
    let answer = get_with(&format!("{base}/whoami"), Some(&format!("Bearer {}", token(&[])))).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.content_type.as_deref(), Some("application/problem+json"));
    assert!(answer.body.contains("revocation"), "{}", answer.body);
}
