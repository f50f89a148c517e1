//! Users already looked up, reused while their tenant's membership epoch is unchanged.
//!
//! Every tenant-scoped request needs its user (id and role) and proof that the tenant is live
//! ([`crate::users::find_in_live_tenant`]): on PostgreSQL a round trip and a join per request.
//! Instead, each tenant has an epoch, a counter in Redis that every write changing what that
//! lookup answers increments after it commits ([`Memberships::changed`]: a tenant suspended,
//! reactivated, deleted or restored, a user's role changed, a subject erased). The one script a
//! request already runs for its rate limits and revocation check reads the epoch too
//! (docs/adr/0004-rate-limiting.md), so a user found under the epoch the request read is served
//! from memory, and any replica's next request after a change looks the user up again.
//!
//! The epoch is read before the lookup and bumped after the commit, so a lookup that raced a
//! change is cached under the old epoch and never served after the bump is visible. Entries also
//! expire after `tenancy.membership_cache_ttl`, which bounds how long a change is missed when its
//! bump is lost (Redis unreachable at that moment, or a Redis that lost its data). Without Redis
//! nothing is cached: there is no epoch that every replica sees.

use std::sync::Arc;

use moka::sync::Cache;
use palisade_store::Redis;
use uuid::Uuid;

use crate::{TenancyConfig, users::User};

/// The `operation` label of Redis errors from bumping an epoch.
const OPERATION: &str = "membership";

/// A user as looked up under one epoch of its tenant.
#[derive(Debug)]
struct Entry {
    epoch: i64,
    user: User,
}

/// Users by (tenant, subject).
type UserCache = Cache<(Uuid, Box<str>), Arc<Entry>>;

/// The membership cache and the epochs it is checked against; cheap to clone.
#[derive(Clone)]
pub struct Memberships {
    redis: Option<Redis>,
    /// `None` when caching is off (no Redis, or a TTL of zero).
    cache: Option<UserCache>,
}

impl std::fmt::Debug for Memberships {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.cache.as_ref().map(Cache::entry_count);
        f.debug_struct("Memberships").field("entries", &entries).finish_non_exhaustive()
    }
}

impl Memberships {
    pub fn new(config: &TenancyConfig, redis: Option<Redis>) -> Self {
        let ttl = config.membership_cache_ttl;
        let cache = (redis.is_some() && !ttl.is_zero())
            .then(|| Cache::builder().max_capacity(config.cache_capacity).time_to_live(ttl).build());
        Self { redis, cache }
    }

    /// The Redis key of `tenant`'s epoch, for the request's script to read; `None` when nothing
    /// is cached.
    pub fn epoch_key(&self, tenant: Uuid) -> Option<String> {
        self.cache.as_ref()?;
        Some(epoch_key(self.redis.as_ref()?, tenant))
    }

    /// The user of `subject` in `tenant` as looked up under `epoch`, if that is still the epoch.
    pub fn get(&self, tenant: Uuid, subject: &str, epoch: i64) -> Option<User> {
        let entry = self.cache.as_ref()?.get(&(tenant, Box::from(subject)))?;
        (entry.epoch == epoch).then(|| entry.user.clone())
    }

    /// Keeps `user`, found in a live tenant by a lookup made after `epoch` was read.
    pub fn remember(&self, epoch: i64, user: &User) {
        if let Some(cache) = &self.cache {
            let key = (user.tenant_id, Box::from(user.subject.as_str()));
            cache.insert(key, Arc::new(Entry { epoch, user: user.clone() }));
        }
    }

    /// Call after committing a change to `tenant`'s status or users: every replica looks its
    /// users up again. Bumped even when this replica caches nothing (a TTL of zero): replicas
    /// configured otherwise may. If Redis cannot be told, this replica forgets everything it
    /// cached and the others catch up within the TTL; the change itself stands (it is committed).
    pub async fn changed(&self, tenant: Uuid) {
        let Some(redis) = &self.redis else { return };
        if let Err(error) = redis.incr(OPERATION, &epoch_key(redis, tenant)).await {
            if let Some(cache) = &self.cache {
                cache.invalidate_all();
            }
            tracing::warn!(
                %error,
                tenant_id = %tenant,
                "a tenant's membership epoch could not be bumped; other replicas may serve its old users and \
                 status until tenancy.membership_cache_ttl"
            );
        }
    }
}

/// `<redis.key_prefix>:membership:<tenant uuid>` (docs/adr/0005-tenant-isolation.md).
fn epoch_key(redis: &Redis, tenant: Uuid) -> String {
    redis.key(&["membership", &tenant.to_string()])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use palisade_ops::{Metrics, metrics::BuildInfo};
    use palisade_store::RedisConfig;
    use time::OffsetDateTime;

    use super::*;
    use crate::UserRole;

    /// Port 1 refuses connections: nothing here reaches a Redis (its lazy connection needs a
    /// Tokio runtime, hence the async tests).
    fn redis() -> Redis {
        let config = RedisConfig { url: Some("redis://127.0.0.1:1".into()), ..Default::default() };
        let metrics = Metrics::new(BuildInfo { version: "t", git_sha: "t" }).expect("metrics");
        Redis::connect(&config, metrics).expect("url").expect("configured")
    }

    fn user(tenant_id: Uuid, subject: &str) -> User {
        let now = OffsetDateTime::now_utc();
        User {
            id: Uuid::now_v7(),
            tenant_id,
            subject: subject.to_owned(),
            role: UserRole::Member,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn a_user_is_served_only_under_the_epoch_it_was_looked_up_under() {
        let memberships = Memberships::new(&TenancyConfig::default(), Some(redis()));
        let tenant = Uuid::now_v7();
        let alice = user(tenant, "alice");
        memberships.remember(7, &alice);
        assert_eq!(memberships.get(tenant, "alice", 7), Some(alice));
        assert_eq!(memberships.get(tenant, "alice", 8), None, "the epoch moved on");
        assert_eq!(memberships.get(tenant, "bob", 7), None);
        assert_eq!(memberships.get(Uuid::now_v7(), "alice", 7), None, "another tenant");
        let key = memberships.epoch_key(tenant).expect("caching is on");
        assert!(key.ends_with(&format!(":membership:{tenant}")), "{key}");
    }

    #[tokio::test]
    async fn nothing_is_cached_without_redis_or_with_a_zero_ttl() {
        let off = TenancyConfig { membership_cache_ttl: Duration::ZERO, ..TenancyConfig::default() };
        for memberships in [Memberships::new(&TenancyConfig::default(), None), Memberships::new(&off, Some(redis()))] {
            let tenant = Uuid::now_v7();
            memberships.remember(1, &user(tenant, "alice"));
            assert_eq!(memberships.get(tenant, "alice", 1), None, "{memberships:?}");
            assert_eq!(memberships.epoch_key(tenant), None);
        }
    }

    #[tokio::test]
    async fn a_change_that_cannot_reach_redis_empties_this_replicas_cache() {
        let memberships = Memberships::new(&TenancyConfig::default(), Some(redis()));
        let tenant = Uuid::now_v7();
        memberships.remember(3, &user(tenant, "alice"));
        memberships.changed(tenant).await;
        assert_eq!(memberships.get(tenant, "alice", 3), None);
    }
}
