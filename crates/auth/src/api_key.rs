//! API keys: the format, generation, parsing and the stored hash (docs/api-keys.md, ADR 0008).
//!
//! A key reads `psk_<lookup id>_<secret><checksum>`: the `psk_` prefix lets people and secret
//! scanners recognise it; the 12-character lookup id finds the key's row with a unique index
//! (and is shown in listings); the 32-character secret carries 190 bits from the system random
//! generator; the last 6 characters are the CRC32 of everything before them, in base62, so a
//! mistyped or truncated key is refused without a database query and scanners can drop near-miss
//! matches. Only SHA-256 of the secret is stored: the secret is random, not chosen by a person,
//! so there is nothing to brute-force and a slow password hash would only cost every request.

use std::{future::Future, pin::Pin};

use aws_lc_rs::{constant_time, digest, rand};
use time::OffsetDateTime;
use uuid::Uuid;

/// Every key starts with this.
pub const PREFIX: &str = "psk_";
/// Characters of the lookup id.
pub const LOOKUP_ID_LEN: usize = 12;
/// Characters of the secret (62^32 ≈ 2^190).
pub const SECRET_LEN: usize = 32;
/// Characters of the checksum (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// A key's total length: prefix, lookup id, `_`, secret and checksum.
pub const KEY_LEN: usize = PREFIX.len() + LOOKUP_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

/// The regular expression that matches a key (documented in docs/api-keys.md, used by the
/// gitleaks rule and GitHub's custom secret-scanning pattern).
pub const PATTERN: &str = "psk_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the full key (to show once) and what is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The whole key; returned to the caller once and never stored.
    pub key: String,
    pub lookup_id: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
}

/// The parts of a well-formed key (its checksum verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub lookup_id: &'a str,
    pub secret: &'a str,
}

/// Why a string is not an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("the API key does not have the psk_ format")]
    Format,
    #[error("the API key's checksum does not match (a mistyped or truncated key)")]
    Checksum,
}

/// Whether `token` claims to be an API key (and so takes the key path, not the JWT one).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// A new key from the system random generator.
pub fn generate() -> Result<GeneratedKey, aws_lc_rs::error::Unspecified> {
    let lookup_id = random_base62(LOOKUP_ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let body = format!("{PREFIX}{lookup_id}_{secret}");
    let key = format!("{body}{}", checksum(&body));
    Ok(GeneratedKey { key, lookup_id, secret_hash: hash_secret(&secret) })
}

/// Checks the format and the checksum; never panics, whatever `key` holds.
pub fn parse(key: &str) -> Result<ParsedKey<'_>, MalformedKey> {
    let bytes = key.as_bytes();
    let is_base62 = |part: &[u8]| part.iter().all(u8::is_ascii_alphanumeric);
    if bytes.len() != KEY_LEN || !key.starts_with(PREFIX) {
        return Err(MalformedKey::Format);
    }
    let lookup_end = PREFIX.len() + LOOKUP_ID_LEN;
    let secret_end = lookup_end + 1 + SECRET_LEN;
    if bytes[lookup_end] != b'_' || !is_base62(&bytes[PREFIX.len()..lookup_end]) || !is_base62(&bytes[lookup_end + 1..])
    {
        return Err(MalformedKey::Format);
    }
    // All ASCII from here on, so these byte offsets are character boundaries.
    let (body, sum) = key.split_at(secret_end);
    if checksum(body) != sum {
        return Err(MalformedKey::Checksum);
    }
    Ok(ParsedKey { lookup_id: &key[PREFIX.len()..lookup_end], secret: &key[lookup_end + 1..secret_end] })
}

/// SHA-256 of a key's secret: what is stored and compared.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// Compares two hashes in time independent of where they differ, so response timing does not
/// reveal how much of a guessed secret's hash matched.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The CRC32 of `body` (everything before the checksum) in 6 base62 digits, most significant
/// first: what a key ends with.
pub fn checksum(body: &str) -> String {
    let mut value = u64::from(crc32fast::hash(body.as_bytes()));
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

/// `len` uniformly random base62 characters: random bytes below 248 (4 × 62) are kept and taken
/// modulo 62, the rest drawn again, so no character is likelier than another.
fn random_base62(len: usize) -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        rand::fill(&mut buffer)?;
        for byte in buffer {
            if byte < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    Ok(out)
}

/// What authentication needs of a stored key, found by its lookup id before the tenant is known.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
}

/// Where keys are looked up: the tenancy crate's store implements it over the database (the
/// authenticator cannot depend on tenancy, which depends on it).
pub trait ApiKeyLookup: Send + Sync + std::fmt::Debug {
    /// The key with `lookup_id`; `Err` when the store could not be asked (the message is logged).
    fn find<'a>(
        &'a self,
        lookup_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<StoredKey>, String>> + Send + 'a>>;
}

/// The key an [`crate::AuthContext`] came from, with its last recorded use, so the tenant
/// extractor can record this use (at most once a minute, or at once from a new address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub id: Uuid,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
}

/// The subject of a key's requests: its audit actor and rate-limit bucket.
pub fn subject(id: Uuid) -> String {
    format!("apikey:{id}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> String {
        generate().expect("random").key
    }

    #[test]
    fn a_generated_key_parses_back_to_its_lookup_id_and_secret_hash() {
        let generated = generate().expect("random");
        let parsed = parse(&generated.key).expect("well formed");
        assert_eq!(parsed.lookup_id, generated.lookup_id);
        assert_eq!(hash_secret(parsed.secret), generated.secret_hash);
        assert_eq!(generated.key.len(), KEY_LEN);
    }

    #[test]
    fn the_documented_pattern_matches_generated_keys_and_not_near_misses() {
        let anchored = regex::Regex::new(&format!("^{PATTERN}$")).expect("pattern");
        let docs = include_str!("../../../docs/api-keys.md");
        assert!(docs.contains(&format!("`{PATTERN}`")), "docs/api-keys.md must state the pattern");
        let gitleaks = include_str!("../../../.gitleaks.toml");
        assert!(gitleaks.contains(PATTERN), ".gitleaks.toml must use the pattern");
        for _ in 0..100 {
            assert!(anchored.is_match(&key()));
        }
        let good = key();
        let near_misses = [
            good.replacen("psk_", "psk-", 1),
            good.replacen("psk_", "PSK_", 1),
            good[..good.len() - 1].to_owned(),
            format!("{good}x"),
            good.replacen('_', "", 2),
            format!("{}-{}", &good[..20], &good[21..]),
        ];
        for miss in near_misses {
            assert!(!anchored.is_match(&miss), "{miss}");
            assert!(parse(&miss).is_err(), "{miss}");
        }
    }

    #[test]
    fn secrets_carry_at_least_160_bits() {
        assert!(SECRET_LEN as f64 * 62f64.log2() >= 160.0);
    }

    #[test]
    fn two_keys_never_repeat() {
        let keys: std::collections::BTreeSet<_> = (0..1000).map(|_| key()).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn the_hash_comparison_accepts_only_equal_hashes() {
        let a = hash_secret("a");
        assert!(hashes_match(&a, &hash_secret("a")));
        assert!(!hashes_match(&a, &hash_secret("b")));
        let mut last_differs = a.clone();
        if let Some(byte) = last_differs.last_mut() {
            *byte ^= 1;
        }
        assert!(!hashes_match(&a, &last_differs));
        assert!(!hashes_match(&a, &a[..31]));
        assert!(!hashes_match(&a, &[]));
        assert!(hashes_match(&[], &[]));
    }

    #[test]
    fn a_jwt_does_not_look_like_a_key() {
        assert!(!looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(looks_like_key("psk_whatever"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_any_string(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn parsing_never_panics_on_strings_shaped_like_keys(input in "psk_[0-9A-Za-z_\u{e9}]{0,60}") {
            let _ = parse(&input);
        }

        #[test]
        fn any_single_character_change_is_refused(position in 0..KEY_LEN, replacement in any::<char>()) {
            let good = key();
            let original = good.as_bytes()[position] as char;
            prop_assume!(replacement != original);
            let mut chars: Vec<char> = good.chars().collect();
            chars[position] = replacement;
            let mutated: String = chars.into_iter().collect();
            prop_assert!(parse(&mutated).is_err(), "{} accepted", mutated);
        }

        #[test]
        fn any_single_base62_change_is_caught_by_the_checksum(position in PREFIX.len()..KEY_LEN, pick in 0usize..62) {
            let good = key();
            let replacement = ALPHABET[pick];
            prop_assume!(position != PREFIX.len() + LOOKUP_ID_LEN && good.as_bytes()[position] != replacement);
            let mut bytes = good.into_bytes();
            bytes[position] = replacement;
            let mutated = String::from_utf8(bytes).expect("ascii");
            prop_assert_eq!(parse(&mutated), Err(MalformedKey::Checksum));
        }

        #[test]
        fn generated_keys_round_trip(_seed in 0u8..255) {
            let generated = generate().expect("random");
            let parsed = parse(&generated.key).expect("well formed");
            prop_assert_eq!(parsed.lookup_id, generated.lookup_id.as_str());
            prop_assert_eq!(hash_secret(parsed.secret), generated.secret_hash);
        }
    }
}
