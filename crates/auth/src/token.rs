//! The parts of token handling that happen before and after jsonwebtoken: reading the header
//! ourselves (so `alg: none` and unknown algorithms get a precise refusal instead of a JSON error)
//! and translating jsonwebtoken's errors into [`AuthError`]s.

use std::str::FromStr;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, errors::ErrorKind};
use serde::Deserialize;

use crate::AuthError;

/// Larger tokens are refused before any parsing; real access tokens (even Entra ID's with group
/// claims) stay well below this.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The header fields this crate decides on. Header parameters that would make a verifier fetch
/// or trust a key named by the token itself (`jku`, `jwk`, `x5u`, `x5c`) are deliberately ignored:
/// keys only ever come from the configured issuer.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHeader {
    pub(crate) alg: Option<String>,
    pub(crate) kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    pub(crate) fn parse(token: &str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("it is too large"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthError::Malformed("it is not a compact JWT (three dot-separated parts)"));
        };
        let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed("its header is not base64url"))?;
        let header: Self =
            serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("its header is not a JSON object"))?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed("its header has critical extensions this API does not understand"));
        }
        Ok(header)
    }

    /// The header's algorithm, if it is one of `allowed`.
    pub(crate) fn algorithm(&self, allowed: &[Algorithm]) -> Result<Algorithm, AuthError> {
        let Some(name) = self.alg.as_deref() else {
            return Err(AuthError::Malformed("its header has no alg"));
        };
        if name.eq_ignore_ascii_case("none") {
            return Err(AuthError::DisallowedAlgorithm("Unsigned access tokens (alg none) are refused.".to_owned()));
        }
        let Ok(algorithm) = Algorithm::from_str(name) else {
            return Err(AuthError::DisallowedAlgorithm(
                "The access token's signature algorithm is not supported.".to_owned(),
            ));
        };
        if !allowed.contains(&algorithm) {
            return Err(AuthError::DisallowedAlgorithm(format!(
                "The access token's signature algorithm {algorithm:?} is not accepted here."
            )));
        }
        Ok(algorithm)
    }
}

/// jsonwebtoken's verdict in this crate's terms.
pub(crate) fn from_jwt_error(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            AuthError::DisallowedAlgorithm("The access token's signature algorithm is not accepted here.".to_owned())
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "nbf" => "nbf",
            _ => "sub",
        }),
        ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed("a time claim is not a number"),
        ErrorKind::Base64(_) => AuthError::Malformed("a part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed("its claims are not a valid JSON object"),
        _ => AuthError::Malformed("it could not be decoded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn alg_none_is_refused_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let header = RawHeader::parse(&encode(&format!(r#"{{"alg":"{alg}"}}"#))).expect("parses");
            assert!(matches!(header.algorithm(&[Algorithm::RS256]), Err(AuthError::DisallowedAlgorithm(_))));
        }
    }

    #[test]
    fn an_unsupported_algorithm_name_is_not_echoed() {
        let header = RawHeader::parse(&encode(r#"{"alg":"<script>"}"#)).expect("parses");
        let error = header.algorithm(&[Algorithm::RS256]).expect_err("refused");
        assert!(!error.to_string().contains("script"));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_malformed() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.c2ln", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(RawHeader::parse(token), Err(AuthError::Malformed(_))), "{token:.20}");
        }
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let token = encode(r#"{"alg":"RS256","kid":"k","crit":["exp"],"exp":1}"#);
        assert!(matches!(RawHeader::parse(&token), Err(AuthError::Malformed(_))));
    }
}
