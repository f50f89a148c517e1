//! Standard Webhooks signatures: the spec's known answer, verification, rotation, and agreement
//! with the reference `standardwebhooks` crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use palisade_webhooks::{DEFAULT_TOLERANCE, SecretError, SigningSecret, VerifyError, sign, signature_header, verify};

const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn spec_secret() -> SigningSecret {
    SigningSecret::parse(SPEC_SECRET).expect("the spec's secret parses")
}

fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).expect("id"));
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", HeaderValue::from_str(signature).expect("signature"));
    headers
}

fn now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

#[test]
fn signing_the_spec_example_gives_the_spec_signature() {
    assert_eq!(sign(&spec_secret(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
}

#[test]
fn the_spec_example_verifies_within_the_tolerance() {
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    verify(&spec_secret(), &headers, SPEC_BODY, SPEC_TIMESTAMP + 10, DEFAULT_TOLERANCE).expect("verifies");
}

#[test]
fn a_different_secret_does_not_verify() {
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    let other = SigningSecret::generate();
    assert_eq!(
        verify(&other, &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn a_tampered_body_does_not_verify() {
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    assert_eq!(
        verify(&spec_secret(), &headers, br#"{"test": 2432232315}"#, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn a_changed_id_or_timestamp_does_not_verify() {
    let secret = spec_secret();
    let other_id = headers("msg_other", SPEC_TIMESTAMP, SPEC_SIGNATURE);
    assert_eq!(
        verify(&secret, &other_id, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_time = headers(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_SIGNATURE);
    assert_eq!(
        verify(&secret, &other_time, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn a_timestamp_outside_the_tolerance_is_refused_in_both_directions() {
    let secret = spec_secret();
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    let tolerance = Duration::from_secs(300);
    let verify_at = |now| verify(&secret, &headers, SPEC_BODY, now, tolerance);
    assert_eq!(verify_at(SPEC_TIMESTAMP + 300), Ok(()));
    assert_eq!(verify_at(SPEC_TIMESTAMP - 300), Ok(()));
    assert_eq!(verify_at(SPEC_TIMESTAMP + 301), Err(VerifyError::TooOld));
    assert_eq!(verify_at(SPEC_TIMESTAMP - 301), Err(VerifyError::TooNew));
}

#[test]
fn each_missing_header_is_named() {
    let full = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = full.clone();
        headers.remove(name);
        assert_eq!(
            verify(&spec_secret(), &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
            Err(VerifyError::MissingHeader(name)),
            "{name}"
        );
    }
}

#[test]
fn a_timestamp_that_is_not_a_number_is_refused() {
    let mut headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
    headers.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
    assert_eq!(
        verify(&spec_secret(), &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::InvalidTimestamp)
    );
}

#[test]
fn during_rotation_either_secret_verifies_the_header() {
    let old = spec_secret();
    let new = SigningSecret::generate();
    let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
    assert_eq!(header.split(' ').count(), 2);
    assert!(header.ends_with(SPEC_SIGNATURE), "{header}");
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, &header);
    for secret in [&old, &new] {
        verify(secret, &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE).expect("verifies");
    }
    let stranger = SigningSecret::generate();
    assert_eq!(
        verify(&stranger, &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn unknown_versions_and_garbage_signatures_are_skipped() {
    let header = format!("v1a,c2lnbmF0dXJl v2,AAAA v1,not*base64 nonsense {SPEC_SIGNATURE}");
    let headers = headers(SPEC_ID, SPEC_TIMESTAMP, &header);
    verify(&spec_secret(), &headers, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE)
        .expect("the v1 signature at the end matches");
    let only_other_versions = headers_without_v1();
    assert_eq!(
        verify(&spec_secret(), &only_other_versions, SPEC_BODY, SPEC_TIMESTAMP, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

fn headers_without_v1() -> HeaderMap {
    let v2 = SPEC_SIGNATURE.replacen("v1,", "v2,", 1);
    headers(SPEC_ID, SPEC_TIMESTAMP, &v2)
}

#[test]
fn secrets_round_trip_through_their_text_form() {
    let secret = SigningSecret::generate();
    let text = secret.expose();
    assert!(text.starts_with("whsec_"), "{text}");
    let again = SigningSecret::parse(&text).expect("parses");
    assert_eq!(again.expose(), text);
    assert_eq!(sign(&secret, "m", 1, b"x"), sign(&again, "m", 1, b"x"));
    assert_ne!(SigningSecret::generate().expose(), text, "generated secrets differ");
    assert_eq!(spec_secret().expose(), SPEC_SECRET);
}

#[test]
fn malformed_secrets_are_refused_with_a_reason() {
    assert_eq!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(), Some(SecretError::MissingPrefix));
    assert_eq!(SigningSecret::parse("whsec_not base64!").err(), Some(SecretError::NotBase64));
    assert_eq!(SigningSecret::parse("whsec_AAAA").err(), Some(SecretError::Length { len: 3 }));
    let too_long = format!("whsec_{}", "A".repeat(88));
    assert_eq!(SigningSecret::parse(&too_long).err(), Some(SecretError::Length { len: 66 }));
}

#[test]
fn debug_output_hides_the_secret() {
    let secret = spec_secret();
    let debug = format!("{secret:?}");
    assert!(!debug.contains("MfKQ9r8G"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn the_reference_library_verifies_our_signatures() {
    let secret = SigningSecret::generate();
    let timestamp = now();
    let body = br#"{"type":"todo.created","id":42}"#;
    let header = signature_header(&[&secret], "msg_ours", timestamp, body);
    let reference = standardwebhooks::Webhook::new(&secret.expose()).expect("reference accepts");
    reference
        .verify(body, &headers("msg_ours", timestamp, &header))
        .expect("the reference library verifies our signature");
    assert!(reference.verify(b"{}", &headers("msg_ours", timestamp, &header)).is_err(), "and rejects a tampered body");
}

#[test]
fn we_verify_the_reference_librarys_signatures() {
    let secret = SigningSecret::generate();
    let timestamp = now();
    let body = br#"{"type":"todo.deleted"}"#;
    let reference = standardwebhooks::Webhook::new(&secret.expose()).expect("reference accepts");
    let theirs = reference.sign("msg_theirs", timestamp, body).expect("reference signs");
    assert_eq!(theirs, sign(&secret, "msg_theirs", timestamp, body));
    verify(&secret, &headers("msg_theirs", timestamp, &theirs), body, now(), DEFAULT_TOLERANCE)
        .expect("we verify the reference signature");
}
