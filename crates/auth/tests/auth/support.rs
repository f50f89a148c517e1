//! Test fixtures: freshly generated keys, a fake OpenID Connect provider on 127.0.0.1:0, token
//! builders (including deliberately broken ones) and small helpers.

use std::{
    future::Future,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::{
    hmac,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
        RsaKeyPair, RsaPublicKeyComponents,
    },
};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use palisade_auth::{AuthConfig, AuthError, Authenticator};
use palisade_ops::{Metrics, metrics::BuildInfo};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

/// The audience the OIDC tests configure.
pub const AUDIENCE: &str = "palisade-api";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key pair with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pub jwk: Value,
    /// The public key's bytes, as an attacker would find them (for the key confusion attack).
    pub public_bytes: Vec<u8>,
    material: Material,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa key");
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let jwk = json!({ "kty": "RSA", "kid": kid, "use": "sig", "n": b64(&components.n), "e": b64(&components.e) });
        let public_bytes = pair.public_key().as_ref().to_vec();
        Self { kid: kid.into(), alg: "RS256", jwk, public_bytes, material: Material::Rsa(pair) }
    }

    pub fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec key");
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        });
        Self { kid: kid.into(), alg: "ES256", jwk, public_bytes: point, material: Material::Ec(pair) }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pair = Ed25519KeyPair::generate().expect("ed25519 key");
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({ "kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": b64(&public) });
        Self { kid: kid.into(), alg: "EdDSA", jwk, public_bytes: public, material: Material::Ed(pair) }
    }

    /// A token with this key's algorithm and kid.
    pub fn token(&self, claims: &Value) -> String {
        self.token_as(self.alg, claims)
    }

    /// A token signed with this key under `alg` (RS256 or PS256 for RSA keys).
    pub fn token_as(&self, alg: &str, claims: &Value) -> String {
        self.sign(alg, &json!({ "alg": alg, "kid": self.kid, "typ": "JWT" }), claims)
    }

    /// Signs whatever header is given, with the signature scheme of `alg`.
    pub fn sign(&self, alg: &str, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let rng = SystemRandom::new();
        let signature = match &self.material {
            Material::Rsa(pair) => {
                let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding =
                    if alg == "PS256" { &RSA_PSS_SHA256 } else { &RSA_PKCS1_SHA256 };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, input.as_bytes(), &mut signature).expect("rsa signature");
                signature
            }
            Material::Ec(pair) => pair.sign(&rng, input.as_bytes()).expect("ecdsa signature").as_ref().to_vec(),
            Material::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// An HS256 token signed with `secret`.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// Keys generated once per test run (RSA generation is the slow part).
pub struct Keys {
    pub rsa: TestKey,
    pub rsa_next: TestKey,
    pub ec: TestKey,
    pub ed: TestKey,
}

pub static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    rsa: TestKey::rsa("rsa-1"),
    rsa_next: TestKey::rsa("rsa-2"),
    ec: TestKey::ec("ec-1"),
    ed: TestKey::ed25519("ed-1"),
});

pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Valid claims for `issuer`; tests change what they attack.
pub fn claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant_id": "acme",
        "scope": "todos:read todos:write",
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}

struct ProviderState {
    issuer: String,
    keys: Mutex<Vec<Value>>,
    up: AtomicBool,
    delay: Mutex<Duration>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    /// The issuer the discovery document claims (to test a document about another issuer).
    claimed_issuer: Mutex<Option<String>>,
}

/// A fake OpenID Connect provider: discovery at the well-known path and the key set at `/jwks`.
/// It can be taken down (503), slowed down, and its keys replaced; it counts requests.
pub struct Provider {
    pub issuer: String,
    state: Arc<ProviderState>,
    server: JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(state): State<Arc<ProviderState>>) -> Response {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    if !state.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let claimed = state.claimed_issuer.lock().expect("lock").clone().unwrap_or_else(|| state.issuer.clone());
    Json(json!({ "issuer": claimed, "jwks_uri": format!("{}/jwks", state.issuer) })).into_response()
}

async fn jwks(State(state): State<Arc<ProviderState>>) -> Response {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().expect("lock");
    tokio::time::sleep(delay).await;
    if !state.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = state.keys.lock().expect("lock").clone();
    Json(json!({ "keys": keys })).into_response()
}

impl Provider {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(ProviderState {
            issuer: issuer.clone(),
            keys: Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
            delay: Mutex::new(Duration::ZERO),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            claimed_issuer: Mutex::new(None),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let provider = Self { issuer, state, server };
        provider.publish(keys);
        provider
    }

    /// Replaces the published key set.
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().expect("lock") = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    pub fn publish_raw(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("lock") = keys;
    }

    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    pub fn claim_issuer(&self, issuer: &str) {
        *self.state.claimed_issuer.lock().expect("lock") = Some(issuer.to_owned());
    }

    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// Requests of either kind.
    pub fn requests(&self) -> usize {
        self.jwks_requests() + self.discovery_requests()
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// An OIDC configuration for this provider: a refresh interval long enough that nothing
    /// happens behind a test's back unless it asks for it.
    pub fn config(&self) -> AuthConfig {
        AuthConfig {
            issuer: Some(self.issuer.clone()),
            audience: Some(AUDIENCE.to_owned()),
            jwks_refresh_interval: Duration::from_secs(3600),
            jwks_fetch_timeout: Duration::from_secs(2),
            ..AuthConfig::default()
        }
    }
}

pub fn metrics() -> Arc<Metrics> {
    Metrics::new(BuildInfo { version: "test", git_sha: "test" }).expect("metrics")
}

pub async fn authenticator(config: &AuthConfig, is_development: bool) -> (Arc<Authenticator>, Arc<Metrics>) {
    let metrics = metrics();
    let auth = Authenticator::new(config, is_development, metrics.clone(), None).await.expect("authenticator");
    (auth, metrics)
}

pub fn failures(metrics: &Metrics, reason: &str) -> u64 {
    metrics.auth_failures_total.with_label_values(&[reason]).get()
}

/// Asserts the token is refused with `reason`, counted once under it, and that neither the
/// error nor its problem body repeats the token.
pub async fn assert_refused(auth: &Authenticator, metrics: &Metrics, token: &str, reason: &str) -> AuthError {
    let before = failures(metrics, reason);
    let error = match auth.authenticate(token).await {
        Ok(context) => panic!("expected refusal ({reason}), got {context:?}"),
        Err(error) => error,
    };
    assert_eq!(error.reason().map(|r| r.as_str()), Some(reason), "{error}");
    assert_eq!(failures(metrics, reason), before + 1, "counted under {reason}");
    let problem = serde_json::to_string(&palisade_ops::Problem::from(error.clone())).expect("problem json");
    for part in token.split('.').filter(|part| part.len() > 8) {
        assert!(!error.to_string().contains(part) && !problem.contains(part), "the token is echoed: {problem}");
    }
    error
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `PALISADE_TEST_REDIS_URL`, or `None` (with a loud notice) when unset outside CI.
pub fn redis_url() -> Option<String> {
    match std::env::var("PALISADE_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(std::env::var_os("CI").is_none(), "PALISADE_TEST_REDIS_URL must be set when CI is set");
            eprintln!(
                "\n*** SKIPPED: PALISADE_TEST_REDIS_URL is not set, so the Redis revocation test did not run.\n\
                 *** Run it with PALISADE_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo test -p palisade-auth\n"
            );
            None
        }
    }
}
