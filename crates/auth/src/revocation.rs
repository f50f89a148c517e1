//! Revoked token ids: in process for a single instance, in Redis when replicas must agree.
//! An entry only lives as long as the token it revokes could still be accepted.

use std::time::{Duration, Instant};

use moka::{Expiry, sync::Cache};
use palisade_store::{Redis, redis::RedisFailure};
use time::OffsetDateTime;

/// The most revocations the in-process list holds at once (about 100 bytes each). Entries
/// expire with their tokens, so only a burst of revocations within one token lifetime fills it.
pub(crate) const MEMORY_CAPACITY: u64 = 100_000;

/// Where revocations are kept.
#[derive(Debug)]
pub(crate) enum RevocationStore {
    Memory(MemoryRevocations),
    Redis(Redis),
}

/// A revocation lookup not made yet.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Nothing to look up (no jti, an API key, or already checked).
    None,
    /// The in-process list answered.
    Known(bool),
    /// The Redis key whose existence means "revoked".
    Redis(String),
}

/// A revocation could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFailure {
    #[error(transparent)]
    Redis(#[from] RedisFailure),
    #[error("the in-process revocation list is full")]
    Full,
    /// The rate limiter's combined call that carried the lookup failed.
    #[error("{0}")]
    Combined(String),
}

impl RevocationStore {
    /// Remembers `jti` as revoked until `until`; a token already past that needs no entry.
    pub(crate) async fn revoke(&self, jti: &str, until: OffsetDateTime) -> Result<(), StoreFailure> {
        let remaining = (until - OffsetDateTime::now_utc()).whole_seconds();
        if remaining <= 0 {
            return Ok(());
        }
        match self {
            Self::Memory(memory) => memory.insert(jti, until),
            Self::Redis(redis) => {
                let key = redis.key(&["revoked", jti]);
                redis
                    .run("revocation", move |mut connection| async move {
                        ::redis::cmd("SET")
                            .arg(&key)
                            .arg(1)
                            .arg("EX")
                            .arg(remaining)
                            .query_async::<()>(&mut connection)
                            .await
                    })
                    .await?;
                Ok(())
            }
        }
    }

    /// Where `jti` is looked up: the answer when the list is in process, else the Redis key, so
    /// that the lookup can ride in another Redis call (see [`crate::Unrevoked`]).
    pub(crate) fn lookup(&self, jti: &str) -> Lookup {
        match self {
            Self::Memory(memory) => Lookup::Known(memory.contains(jti)),
            Self::Redis(redis) => Lookup::Redis(redis.key(&["revoked", jti])),
        }
    }

    pub(crate) async fn is_revoked(&self, jti: &str) -> Result<bool, StoreFailure> {
        match self {
            Self::Memory(memory) => Ok(memory.contains(jti)),
            Self::Redis(redis) => self.is_revoked_at(&redis.key(&["revoked", jti])).await,
        }
    }

    /// Looks up a key [`Self::lookup`] returned (one round trip of its own).
    pub(crate) async fn is_revoked_at(&self, key: &str) -> Result<bool, StoreFailure> {
        let Self::Redis(redis) = self else { return Ok(false) };
        let count = redis
            .run("revocation", move |mut connection| async move {
                ::redis::cmd("EXISTS").arg(key).query_async::<i64>(&mut connection).await
            })
            .await?;
        Ok(count > 0)
    }
}

/// The in-process list: a moka cache whose entries expire with their tokens (each at its own
/// time). No size bound is given to moka on purpose: evicting a live entry would silently make a
/// revoked token valid again, so when full (after expired entries are dropped) a new revocation
/// is refused instead, and the caller learns it did not happen.
#[derive(Debug)]
pub(crate) struct MemoryRevocations {
    entries: Cache<String, OffsetDateTime>,
    capacity: u64,
}

/// Each entry lives until its token's `until`, however often it is extended.
struct UntilExpiry;

impl UntilExpiry {
    fn left(until: OffsetDateTime) -> Option<Duration> {
        Some(Duration::try_from(until - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO))
    }
}

impl Expiry<String, OffsetDateTime> for UntilExpiry {
    fn expire_after_create(&self, _: &String, until: &OffsetDateTime, _: Instant) -> Option<Duration> {
        Self::left(*until)
    }

    fn expire_after_update(
        &self,
        _: &String,
        until: &OffsetDateTime,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(*until)
    }
}

impl MemoryRevocations {
    pub(crate) fn new(capacity: u64) -> Self {
        Self { entries: Cache::builder().expire_after(UntilExpiry).build(), capacity }
    }

    fn insert(&self, jti: &str, until: OffsetDateTime) -> Result<(), StoreFailure> {
        if !self.entries.contains_key(jti) {
            // moka's count lags behind its writes and drops expired entries in coarse steps;
            // revocations are rare, so settle it, and when it says full, count the live entries.
            self.entries.run_pending_tasks();
            if self.entries.entry_count() >= self.capacity && self.live() >= self.capacity {
                return Err(StoreFailure::Full);
            }
        }
        self.entries
            .entry(jti.to_owned())
            .and_upsert_with(|existing| existing.map_or(until, |entry| (*entry.value()).max(until)));
        Ok(())
    }

    /// Entries whose tokens could still be accepted (the iterator skips expired ones).
    fn live(&self) -> u64 {
        let now = OffsetDateTime::now_utc();
        u64::try_from(self.entries.iter().filter(|(_, until)| *until > now).count()).unwrap_or(u64::MAX)
    }

    fn contains(&self, jti: &str) -> bool {
        self.entries.get(jti).is_some_and(|until| until > OffsetDateTime::now_utc())
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_revoked_id_is_remembered_until_its_token_expires() {
        let store = RevocationStore::Memory(MemoryRevocations::new(10));
        let later = OffsetDateTime::now_utc() + Duration::minutes(5);
        store.revoke("a", later).await.expect("revoked");
        assert!(store.is_revoked("a").await.expect("readable"));
        assert!(!store.is_revoked("b").await.expect("readable"));
    }

    #[tokio::test]
    async fn revoking_an_already_expired_token_stores_nothing() {
        let memory = MemoryRevocations::new(1);
        let store = RevocationStore::Memory(memory);
        store.revoke("old", OffsetDateTime::now_utc() - Duration::minutes(1)).await.expect("no-op");
        let RevocationStore::Memory(memory) = &store else { unreachable!() };
        memory.entries.run_pending_tasks();
        assert_eq!(memory.entries.entry_count(), 0);
    }

    #[test]
    fn a_full_list_drops_expired_entries_and_otherwise_refuses_rather_than_forgets() {
        let memory = MemoryRevocations::new(2);
        let now = OffsetDateTime::now_utc();
        memory.insert("expiring", now + Duration::milliseconds(50)).expect("room");
        memory.insert("a", now + Duration::minutes(5)).expect("room");
        std::thread::sleep(std::time::Duration::from_millis(100));
        memory.insert("b", now + Duration::minutes(5)).expect("room after dropping the expired entry");
        assert!(matches!(memory.insert("c", now + Duration::minutes(5)), Err(StoreFailure::Full)));
        assert!(memory.contains("a") && memory.contains("b"));
        memory.insert("a", now + Duration::minutes(10)).expect("an existing entry can be extended");
    }
}
