//! Tokens already verified. A client sends the same bearer token on every request until it
//! expires; verifying its signature and parsing its claims each time was a sixth of an
//! authenticated read (docs/performance.md). So a verified token's context is kept, keyed by the
//! exact token text, and served again after the checks that can change between two requests:
//! its expiry (with the same leeway as the first verification) and, for an issuer's token,
//! whether the key that signed it is still the one published under its key id (a retired or
//! replaced key stops working at once). Revocation is not cached: it is checked per request,
//! after this. Only tokens that passed are kept, so forged ones cannot fill the cache.

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;
use time::OffsetDateTime;

use crate::{AuthContext, jwks::SigningKey};

/// Most tokens kept (a few hundred bytes each).
const CAPACITY: u64 = 10_000;

/// How long a verified token is kept at most, whatever its expiry.
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// One verified token: its context and, for an issuer's token, the key id and key it was
/// verified with.
#[derive(Debug)]
struct Entry {
    context: AuthContext,
    signer: Option<(String, Arc<SigningKey>)>,
}

#[derive(Debug)]
pub(crate) struct VerifiedTokens {
    entries: Cache<Box<str>, Arc<Entry>>,
    leeway: time::Duration,
}

impl VerifiedTokens {
    pub(crate) fn new(leeway: Duration) -> Self {
        Self {
            entries: Cache::builder().max_capacity(CAPACITY).time_to_live(TIME_TO_LIVE).build(),
            leeway: time::Duration::try_from(leeway).unwrap_or(time::Duration::ZERO),
        }
    }

    /// The context of `token` when it was verified before and still holds: not expired, and its
    /// key still published (`published` answers for a key id and the key it was verified with).
    pub(crate) fn get(
        &self,
        token: &str,
        published: impl FnOnce(&str, &Arc<SigningKey>) -> bool,
    ) -> Option<AuthContext> {
        let entry = self.entries.get(token)?;
        let expired = OffsetDateTime::now_utc() > entry.context.expires_at + self.leeway;
        let retired = entry.signer.as_ref().is_some_and(|(kid, key)| !published(kid, key));
        if expired || retired {
            // Verified again from scratch, which refuses it with the right reason.
            self.entries.invalidate(token);
            return None;
        }
        Some(entry.context.clone())
    }

    /// Keeps a context that was just verified.
    pub(crate) fn insert(&self, token: &str, context: &AuthContext, signer: Option<(String, Arc<SigningKey>)>) {
        self.entries.insert(token.into(), Arc::new(Entry { context: context.clone(), signer }));
    }
}
