//! The issuer's signing keys: fetched from its JWKS (found through OIDC discovery unless
//! configured), cached by key id, refreshed in the background, refetched on an unknown key id
//! within a budget of refetches per minute, and kept while the provider is down.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    sync::{
        Arc, Mutex, PoisonError, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    AuthError,
    http::{FetchError, ProviderClient},
};

/// Retries after a failed fetch start this soon and back off to [`MAX_RETRY_DELAY`] (or the
/// refresh interval, if shorter).
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The window of the unknown-kid refetch budget (`auth.jwks_unknown_kid_refetches_per_minute`).
const REFETCH_WINDOW: Duration = Duration::from_secs(60);

/// What a published key can verify. A key is never usable as an HMAC secret: symmetric (`oct`)
/// keys in a key set are skipped, so an HS256 token "signed" with a public key cannot verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    /// The one ECDSA algorithm the key's curve goes with (P-256: ES256, P-384: ES384).
    Ec(Algorithm),
    Ed25519,
}

/// One verification key from the key set.
#[derive(Debug)]
pub(crate) struct SigningKey {
    pub(crate) decoding: DecodingKey,
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one: the token must then use exactly that.
    alg: Option<Algorithm>,
}

impl SigningKey {
    /// Whether a token whose header says `alg` may be verified with this key.
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        let kind_matches = match self.kind {
            KeyKind::Rsa => alg.family() == AlgorithmFamily::Rsa,
            KeyKind::Ec(curve_alg) => alg == curve_alg,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        };
        kind_matches && self.alg.is_none_or(|key_alg| key_alg == alg)
    }
}

/// A JWK as published, read field by field so that one key of an unsupported kind does not make
/// the whole set unreadable (a strict enum would).
#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Turns a published JWK into a verification key, or says why it is skipped.
fn parse_jwk(value: serde_json::Value) -> Result<(String, SigningKey), String> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|e| format!("unreadable JWK: {e}"))?;
    let kid = jwk.kid.clone().filter(|kid| !kid.is_empty()).ok_or("a JWK without kid")?;
    let skip = |why: &str| format!("JWK {kid:?}: {why}");
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return Err(skip("not a signature key (use)"));
    }
    if jwk.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify")) {
        return Err(skip("not a verification key (key_ops)"));
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(name.parse::<Algorithm>().map_err(|_| skip("unsupported alg"))?),
    };
    if alg.is_some_and(|alg| alg.family() == AlgorithmFamily::Hmac) {
        return Err(skip("symmetric keys are never used"));
    }
    let component = |value: &Option<String>, name: &str| value.clone().ok_or_else(|| skip(&format!("no {name}")));
    let bad = |_| skip("invalid key material");
    let (decoding, kind) = match jwk.kty.as_str() {
        "RSA" => {
            let decoding =
                DecodingKey::from_rsa_components(&component(&jwk.n, "n")?, &component(&jwk.e, "e")?).map_err(bad)?;
            (decoding, KeyKind::Rsa)
        }
        "EC" => {
            let (curve_alg, size) = match jwk.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err(skip("unsupported curve")),
            };
            let (x, y) = (component(&jwk.x, "x")?, component(&jwk.y, "y")?);
            if [&x, &y].iter().any(|c| decoded_len(c) != Some(size)) {
                return Err(skip("coordinates do not fit the curve"));
            }
            (DecodingKey::from_ec_components(&x, &y).map_err(bad)?, KeyKind::Ec(curve_alg))
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(skip("unsupported curve"));
            }
            let x = component(&jwk.x, "x")?;
            if decoded_len(&x) != Some(32) {
                return Err(skip("not an Ed25519 public key"));
            }
            (DecodingKey::from_ed_components(&x).map_err(bad)?, KeyKind::Ed25519)
        }
        "oct" => return Err(skip("symmetric keys are never used")),
        _ => return Err(skip("unsupported key type")),
    };
    let key = SigningKey { decoding, kind, alg };
    if let Some(alg) = alg
        && !key.accepts(alg)
    {
        return Err(skip("alg does not match the key type"));
    }
    Ok((kid, key))
}

fn decoded_len(b64: &str) -> Option<usize> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok().map(|bytes| bytes.len())
}

type KeyMap = HashMap<String, Arc<SigningKey>>;

/// Where the keys come from.
#[derive(Debug)]
struct KeySource {
    client: ProviderClient,
    issuer: String,
    configured_uri: Option<String>,
    /// The discovered `jwks_uri`, kept so refreshes cost one request; forgotten when a fetch from
    /// it fails, in case the provider moved it.
    discovered_uri: Mutex<Option<String>>,
}

impl KeySource {
    async fn fetch(&self) -> Result<KeyMap, FetchError> {
        let (uri, discovered) = match &self.configured_uri {
            Some(uri) => (uri.clone(), false),
            None => (self.jwks_uri().await?, true),
        };
        let set: RawJwkSet = match self.client.get_json(&uri).await {
            Ok(set) => set,
            Err(error) => {
                if discovered {
                    *self.discovered_uri.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                return Err(error);
            }
        };
        let mut keys = KeyMap::new();
        for value in set.keys {
            match parse_jwk(value) {
                Ok((kid, key)) => match keys.entry(kid) {
                    Entry::Vacant(entry) => {
                        entry.insert(Arc::new(key));
                    }
                    Entry::Occupied(entry) => {
                        tracing::warn!(kid = %entry.key(), "the issuer publishes two keys with one kid; using the first");
                    }
                },
                Err(why) => tracing::debug!(%why, "skipping a published key"),
            }
        }
        if keys.is_empty() {
            return Err(FetchError::Invalid(format!("{uri} publishes no usable signing key")));
        }
        Ok(keys)
    }

    async fn jwks_uri(&self) -> Result<String, FetchError> {
        if let Some(uri) = self.discovered_uri.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(uri);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let discovery: Discovery = self.client.get_json(&url).await?;
        // OpenID Connect Discovery §4.3: the document must be about the issuer we asked for.
        if discovery.issuer != self.issuer {
            return Err(FetchError::Invalid(format!(
                "{url} describes issuer {:?}, not the configured {:?}",
                discovery.issuer, self.issuer
            )));
        }
        *self.discovered_uri.lock().unwrap_or_else(PoisonError::into_inner) = Some(discovery.jwks_uri.clone());
        Ok(discovery.jwks_uri)
    }
}

/// The cached keys and the policy for refreshing them.
#[derive(Debug)]
pub(crate) struct KeyStore {
    keys: RwLock<Arc<KeyMap>>,
    source: KeySource,
    /// Most refetches caused by unknown key ids in any [`REFETCH_WINDOW`]: a rotation (or two in
    /// quick succession) is picked up at once, a flood of made-up key ids costs the provider no
    /// more than this.
    budget: usize,
    /// When the refetches caused by unknown key ids in the current window started. Held across a
    /// refetch, so concurrent requests wait for its result instead of starting their own.
    on_demand: tokio::sync::Mutex<VecDeque<Instant>>,
    /// Counts finished on-demand refetches: a request that waited while one ran uses its result.
    refetches: AtomicU64,
}

impl KeyStore {
    pub(crate) fn new(
        issuer: String,
        jwks_uri: Option<String>,
        fetch_timeout: Duration,
        refetches_per_minute: u32,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            keys: RwLock::new(Arc::default()),
            source: KeySource {
                client: ProviderClient::new(fetch_timeout)?,
                issuer,
                configured_uri: jwks_uri,
                discovered_uri: Mutex::new(None),
            },
            budget: usize::try_from(refetches_per_minute).unwrap_or(usize::MAX),
            on_demand: tokio::sync::Mutex::new(VecDeque::new()),
            refetches: AtomicU64::new(0),
        })
    }

    fn current(&self) -> Arc<KeyMap> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether `key` is still the key published under `kid` (a refresh that drops or replaces
    /// it makes this false).
    pub(crate) fn publishes(&self, kid: &str, key: &Arc<SigningKey>) -> bool {
        self.current().get(kid).is_some_and(|current| Arc::ptr_eq(current, key))
    }

    pub(crate) fn key_count(&self) -> usize {
        self.current().len()
    }

    /// Fetches the key set and replaces the cached one; on failure the last good keys stay.
    pub(crate) async fn refresh(&self) -> Result<usize, FetchError> {
        match self.source.fetch().await {
            Ok(keys) => {
                let count = keys.len();
                let previous =
                    std::mem::replace(&mut *self.keys.write().unwrap_or_else(PoisonError::into_inner), Arc::new(keys));
                let current = self.current();
                if previous.len() != current.len() || previous.keys().any(|kid| !current.contains_key(kid)) {
                    tracing::info!(keys = count, "issuer signing keys updated");
                }
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(%error, cached_keys = self.key_count(), "fetching the issuer's signing keys failed");
                Err(error)
            }
        }
    }

    /// The key a token names. An unknown kid (or no keys at all yet) causes one refetch, unless
    /// one finished while this request waited for it, or the budget of the last minute is spent.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, AuthError> {
        if let Some(key) = self.current().get(kid) {
            return Ok(key.clone());
        }
        let seen = self.refetches.load(Ordering::Acquire);
        {
            let mut recent = self.on_demand.lock().await;
            if self.refetches.load(Ordering::Acquire) == seen {
                while recent.front().is_some_and(|at| at.elapsed() >= REFETCH_WINDOW) {
                    recent.pop_front();
                }
                if recent.len() < self.budget {
                    recent.push_back(Instant::now());
                    let _ = self.refresh().await;
                    self.refetches.fetch_add(1, Ordering::Release);
                } else {
                    tracing::debug!(kid, "unknown key id; the refetch budget of this minute is spent");
                }
            }
        }
        let keys = self.current();
        match keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if keys.is_empty() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::UnknownKey),
        }
    }
}

/// Refreshes the keys every `interval` until the store is dropped; after a failure retries sooner,
/// with backoff, so a provider that was down at startup is picked up quickly.
pub(crate) fn spawn_refresh(store: &Arc<KeyStore>, interval: Duration, initial_failed: bool) -> AbortHandle {
    let store: Weak<KeyStore> = Arc::downgrade(store);
    let task = tokio::spawn(async move {
        let mut failures: u32 = u32::from(initial_failed);
        loop {
            tokio::time::sleep(next_delay(failures, interval)).await;
            let Some(store) = store.upgrade() else { return };
            match store.refresh().await {
                Ok(_) => failures = 0,
                Err(_) => failures = failures.saturating_add(1),
            }
        }
    });
    task.abort_handle()
}

fn next_delay(failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    let backoff = FIRST_RETRY_DELAY.saturating_mul(1 << (failures - 1).min(10));
    backoff.min(MAX_RETRY_DELAY).min(interval)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn retries_back_off_but_never_wait_longer_than_the_refresh_interval() {
        let interval = Duration::from_secs(300);
        assert_eq!(next_delay(0, interval), interval);
        assert_eq!(next_delay(1, interval), Duration::from_secs(1));
        assert_eq!(next_delay(3, interval), Duration::from_secs(4));
        assert_eq!(next_delay(40, interval), MAX_RETRY_DELAY);
        assert_eq!(next_delay(5, Duration::from_millis(100)), Duration::from_millis(100));
    }

    #[test]
    fn a_symmetric_key_in_a_key_set_is_never_used() {
        let oct = json!({ "kty": "oct", "kid": "k", "k": "c2VjcmV0" });
        assert!(parse_jwk(oct).is_err());
        let hs = json!({ "kty": "RSA", "kid": "k", "alg": "HS256", "n": "AQAB", "e": "AQAB" });
        assert!(parse_jwk(hs).is_err());
    }

    #[test]
    fn encryption_keys_and_keys_without_kid_are_skipped() {
        let enc = json!({ "kty": "RSA", "kid": "k", "use": "enc", "n": "AQAB", "e": "AQAB" });
        assert!(parse_jwk(enc).is_err());
        let no_kid = json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" });
        assert!(parse_jwk(no_kid).is_err());
    }

    #[test]
    fn a_key_only_accepts_algorithms_of_its_own_type_and_alg() {
        let (_, rsa) = parse_jwk(json!({ "kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB" })).expect("rsa");
        assert!(rsa.accepts(Algorithm::RS256) && rsa.accepts(Algorithm::PS256));
        assert!(!rsa.accepts(Algorithm::HS256) && !rsa.accepts(Algorithm::ES256));
        let (_, pinned) =
            parse_jwk(json!({ "kty": "RSA", "kid": "r", "alg": "RS256", "n": "AQAB", "e": "AQAB" })).expect("rsa");
        assert!(pinned.accepts(Algorithm::RS256) && !pinned.accepts(Algorithm::PS256));
        let x = "A".repeat(43);
        let (_, ec) = parse_jwk(json!({ "kty": "EC", "kid": "e", "crv": "P-256", "x": x, "y": x })).expect("ec");
        assert!(ec.accepts(Algorithm::ES256) && !ec.accepts(Algorithm::ES384) && !ec.accepts(Algorithm::RS256));
        let (_, ed) = parse_jwk(json!({ "kty": "OKP", "kid": "d", "crv": "Ed25519", "x": x })).expect("ed");
        assert!(ed.accepts(Algorithm::EdDSA) && !ed.accepts(Algorithm::ES256));
    }

    #[test]
    fn a_key_whose_alg_contradicts_its_type_is_skipped() {
        let x = "A".repeat(43);
        let wrong = json!({ "kty": "EC", "kid": "e", "crv": "P-256", "alg": "RS256", "x": x, "y": x });
        assert!(parse_jwk(wrong).is_err());
    }
}
