//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! A delivery carries three headers: `webhook-id` (the message id, stable across retries so the
//! receiver can deduplicate), `webhook-timestamp` (unix seconds, so the receiver can refuse
//! replays) and `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` values, one per
//! active secret so a receiver keeps verifying while a secret is being rotated). The signed
//! content is `<id>.<timestamp>.<body>`, which binds the id and the time to the body.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretSlice};

/// The header that carries the message id.
pub const HEADER_ID: &str = "webhook-id";
/// The header that carries the unix timestamp (seconds) of the attempt.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header that carries one or more `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a delivery's timestamp may be from the receiver's clock, either way: the window in
/// which a captured delivery could be replayed. Five minutes is the Standard Webhooks default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The text prefix that marks a webhook signing secret, so a leaked one is recognisable.
const PREFIX: &str = "whsec_";
/// The version tag of symmetric HMAC-SHA256 signatures.
const VERSION: &str = "v1";
/// Bytes of a generated secret: a full SHA-256 block of key material would be 64; 32 is what the
/// reference libraries generate and is the HMAC-SHA256 output size.
const GENERATED_LEN: usize = 32;
/// The accepted secret lengths: 24 bytes (the spec's own example) up to a full SHA-256 block.
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// A symmetric signing secret shared with one endpoint.
///
/// The bytes live in a [`SecretSlice`], which zeroes them on drop; `Debug` prints no part of
/// them, so a secret cannot leak through a log line or an error.
pub struct SigningSecret {
    bytes: SecretSlice<u8>,
}

impl SigningSecret {
    /// A fresh secret of 32 random bytes from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_LEN];
        // The system random source failing means the OS cannot provide entropy at all; no
        // secret can be made safely then, and continuing with zeroes would be far worse.
        SystemRandom::new().fill(&mut bytes).expect("the operating system's random source failed");
        Self { bytes: bytes.into() }
    }

    /// Reads the text form `whsec_<standard base64>` of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
            return Err(SecretError::Length { len: bytes.len() });
        }
        Ok(Self { bytes: bytes.into() })
    }

    /// The text form `whsec_<base64>`: shown once to the endpoint's owner and stored for signing.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(self.bytes.expose_secret()))
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.bytes.expose_secret())
    }
}

impl Clone for SigningSecret {
    fn clone(&self) -> Self {
        Self { bytes: self.bytes.expose_secret().to_vec().into() }
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a secret's text form was not accepted. Says nothing of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook signing secret starts with \"whsec_\"")]
    MissingPrefix,
    #[error("a webhook signing secret is standard base64 after \"whsec_\"")]
    NotBase64,
    #[error("a webhook signing secret holds 24 to 64 bytes, this one holds {len}")]
    Length { len: usize },
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing or not visible ASCII")]
    MissingHeader(&'static str),
    #[error("the webhook-timestamp header is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("the webhook-timestamp is older than the tolerance allows")]
    TooOld,
    #[error("the webhook-timestamp is further in the future than the tolerance allows")]
    TooNew,
    #[error("no v1 signature matches")]
    NoMatchingSignature,
}

fn tag(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(&secret.key());
    context.update(msg_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// `v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = tag(secret, msg_id, timestamp, body);
    format!("{VERSION},{}", STANDARD.encode(tag.as_ref()))
}

/// The `webhook-signature` value: one signature per secret, space-separated, so that while a
/// secret is rotated the receiver accepts a delivery with either the old or the new secret.
pub fn signature_header(secrets: &[&SigningSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| sign(secret, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

fn header<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    headers.get(name).and_then(|value| value.to_str().ok()).ok_or(VerifyError::MissingHeader(name))
}

/// Checks a received delivery: all three headers present, the timestamp within `tolerance` of
/// `now` (unix seconds) either way, and any `v1` signature matching, compared in constant time.
/// Signatures of other versions (such as the asymmetric `v1a`) are ignored, as the spec asks.
pub fn verify(
    secret: &SigningSecret,
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let msg_id = header(headers, HEADER_ID)?;
    let timestamp = header(headers, HEADER_TIMESTAMP)?;
    let signatures = header(headers, HEADER_SIGNATURE)?;
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance {
        return Err(VerifyError::TooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(VerifyError::TooNew);
    }
    let expected = tag(secret, msg_id, timestamp, body);
    let matched = signatures
        .split(' ')
        .filter_map(|token| token.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        .any(|candidate| verify_slices_are_equal(expected.as_ref(), &candidate).is_ok());
    if matched { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
}
