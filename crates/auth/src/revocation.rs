//! Revoked token ids: in process for a single instance, in Redis when replicas must agree.
//! An entry only lives as long as the token it revokes could still be accepted.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use palisade_store::{Redis, redis::RedisFailure};
use time::OffsetDateTime;

/// The most revocations the in-process list holds at once (about 100 bytes each). Entries
/// expire with their tokens, so only a burst of revocations within one token lifetime fills it.
pub(crate) const MEMORY_CAPACITY: usize = 100_000;

/// Where revocations are kept.
#[derive(Debug)]
pub(crate) enum RevocationStore {
    Memory(MemoryRevocations),
    Redis(Redis),
}

/// A revocation could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFailure {
    #[error(transparent)]
    Redis(#[from] RedisFailure),
    #[error("the in-process revocation list is full")]
    Full,
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

    pub(crate) async fn is_revoked(&self, jti: &str) -> Result<bool, StoreFailure> {
        match self {
            Self::Memory(memory) => Ok(memory.contains(jti)),
            Self::Redis(redis) => {
                let key = redis.key(&["revoked", jti]);
                let count = redis
                    .run("revocation", move |mut connection| async move {
                        ::redis::cmd("EXISTS").arg(&key).query_async::<i64>(&mut connection).await
                    })
                    .await?;
                Ok(count > 0)
            }
        }
    }
}

/// The in-process list. Not an evicting cache on purpose: evicting an entry would silently make
/// a revoked token valid again, so when full (after dropping expired entries) a new revocation is
/// refused instead, and the caller learns it did not happen.
#[derive(Debug)]
pub(crate) struct MemoryRevocations {
    entries: Mutex<HashMap<String, OffsetDateTime>>,
    capacity: usize,
}

impl MemoryRevocations {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn insert(&self, jti: &str, until: OffsetDateTime) -> Result<(), StoreFailure> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(jti) {
            let now = OffsetDateTime::now_utc();
            entries.retain(|_, expires| *expires > now);
            if entries.len() >= self.capacity {
                return Err(StoreFailure::Full);
            }
        }
        let entry = entries.entry(jti.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    fn contains(&self, jti: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(jti).is_some_and(|expires| *expires > OffsetDateTime::now_utc())
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
        assert_eq!(memory.entries.lock().map(|e| e.len()).unwrap_or_default(), 0);
    }

    #[test]
    fn a_full_list_drops_expired_entries_and_otherwise_refuses_rather_than_forgets() {
        let memory = MemoryRevocations::new(2);
        let now = OffsetDateTime::now_utc();
        memory.entries.lock().expect("lock").insert("expired".into(), now - Duration::seconds(1));
        memory.insert("a", now + Duration::minutes(5)).expect("room");
        memory.insert("b", now + Duration::minutes(5)).expect("room after dropping the expired entry");
        assert!(matches!(memory.insert("c", now + Duration::minutes(5)), Err(StoreFailure::Full)));
        assert!(memory.contains("a") && memory.contains("b"));
        memory.insert("a", now + Duration::minutes(10)).expect("an existing entry can be extended");
    }
}
