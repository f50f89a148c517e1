//! The authenticator's API key path against an in-memory key store: a key is accepted only with
//! the right secret, refused as malformed, unknown, revoked or expired (each counted), and never
//! parsed as a JWT.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use palisade_auth::{ApiKeyLookup, AuthConfig, AuthError, StoredKey, api_key};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::{assert_refused, authenticator};

/// Keys by lookup id; `None` makes every lookup fail (a database outage).
#[derive(Debug, Default)]
struct Keys(Mutex<Option<HashMap<String, StoredKey>>>);

impl ApiKeyLookup for Keys {
    fn find<'a>(
        &'a self,
        lookup_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<StoredKey>, String>> + Send + 'a>> {
        let found = self.0.lock().expect("lock").as_ref().map(|keys| keys.get(lookup_id).cloned());
        Box::pin(async move { found.ok_or_else(|| "database down".to_owned()) })
    }
}

/// A generated key, stored with `edit` applied; returns the key and its stored record.
fn stored(keys: &Keys, edit: impl FnOnce(&mut StoredKey)) -> (String, StoredKey) {
    let generated = api_key::generate().expect("random");
    let mut record = StoredKey {
        id: Uuid::now_v7(),
        tenant_id: Uuid::now_v7(),
        secret_hash: generated.secret_hash,
        scopes: vec!["todos:read".into()],
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
    };
    edit(&mut record);
    keys.0.lock().expect("lock").get_or_insert_with(HashMap::new).insert(generated.lookup_id, record.clone());
    (generated.key, record)
}

#[tokio::test]
async fn a_stored_key_authenticates_as_its_own_subject_in_its_tenant_with_its_scopes() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let keys = Arc::new(Keys::default());
    auth.set_api_keys(keys.clone());
    let (key, record) = stored(&keys, |_| {});
    let context = auth.authenticate(&key).await.expect("accepted");
    assert_eq!(context.subject, format!("apikey:{}", record.id));
    assert_eq!(context.tenant, Some(record.tenant_id.to_string()));
    assert!(context.has_scope("todos:read") && !context.has_scope("todos:write"));
    assert_eq!(context.jti, None);
    assert_eq!(context.api_key.map(|k| k.id), Some(record.id));
    assert_eq!(metrics.api_key_authentications_total.with_label_values(&["success"]).get(), 1);
}

#[tokio::test]
async fn each_refusal_of_a_key_has_its_own_reason() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let keys = Arc::new(Keys::default());
    auth.set_api_keys(keys.clone());
    let (good, _) = stored(&keys, |_| {});
    let (revoked, _) = stored(&keys, |k| k.revoked_at = Some(OffsetDateTime::now_utc()));
    let (expired, _) = stored(&keys, |k| k.expires_at = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1)));
    // The right lookup id with another secret: the stored hash does not match.
    let (other, _) = stored(&keys, |_| {});
    let wrong_secret = {
        let (lookup_of_good, _) = good.split_at(api_key::PREFIX.len() + api_key::LOOKUP_ID_LEN);
        let body =
            format!("{lookup_of_good}{}", &other[api_key::PREFIX.len() + api_key::LOOKUP_ID_LEN..other.len() - 6]);
        let sum = api_key::checksum(&body);
        format!("{body}{sum}")
    };
    let mut typo = good.clone().into_bytes();
    typo[8] = if typo[8] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).expect("ascii");

    assert_refused(&auth, &metrics, &typo, "api_key_malformed").await;
    assert_refused(&auth, &metrics, "psk_", "api_key_malformed").await;
    assert_refused(&auth, &metrics, &api_key::generate().expect("random").key, "api_key_unknown").await;
    assert_refused(&auth, &metrics, &wrong_secret, "api_key_unknown").await;
    assert_refused(&auth, &metrics, &revoked, "api_key_revoked").await;
    assert_refused(&auth, &metrics, &expired, "api_key_expired").await;
    *keys.0.lock().expect("lock") = None;
    let error = assert_refused(&auth, &metrics, &good, "api_key_unavailable").await;
    assert_eq!(error.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    for outcome in ["malformed", "unknown", "revoked", "expired", "unavailable"] {
        assert!(metrics.api_key_authentications_total.with_label_values(&[outcome]).get() >= 1, "{outcome}");
    }
}

#[tokio::test]
async fn without_a_key_store_a_key_is_unavailable_not_a_jwt() {
    let (auth, metrics) = authenticator(&AuthConfig::default(), true).await;
    let key = api_key::generate().expect("random").key;
    let error = assert_refused(&auth, &metrics, &key, "api_key_unavailable").await;
    assert!(matches!(error, AuthError::ApiKeyUnavailable));
}
