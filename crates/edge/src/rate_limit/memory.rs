//! The in-process store: one TAT per key in a bounded moka cache. A key idle for longer than the
//! longest refill time is evicted; its bucket would be full again anyway, so eviction by idleness
//! loses nothing. The size bound keeps a flood of distinct keys (spoofed IPv6 addresses, say)
//! from growing memory without limit; past it the least recently used buckets go first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::gcra::{self, Outcome, Quota};

#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<(Arc<str>, String), Arc<AtomicU64>>,
    epoch: Instant,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("keys", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// `idle` should be the longest window of any quota used with this store.
    pub fn new(max_keys: u64, idle: Duration) -> Self {
        let cache = Cache::builder().max_capacity(max_keys).time_to_idle(idle.max(Duration::from_secs(1))).build();
        // Microsecond timestamps start at one second, so a stored 0 always means "no state yet".
        let epoch = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
        Self { cache, epoch }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn check(&self, policy: &Arc<str>, key: &str, quota: Quota) -> Outcome {
        let cell = self.cache.get_with((policy.clone(), key.to_owned()), || Arc::new(AtomicU64::new(0)));
        let now = self.now_us();
        let mut stored = cell.load(Ordering::Acquire);
        loop {
            let (new_tat, outcome) = gcra::decide(stored, now, quota);
            let Some(new_tat) = new_tat else { return outcome };
            match cell.compare_exchange_weak(stored, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return outcome,
                Err(current) => stored = current,
            }
        }
    }

    #[cfg(test)]
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    #[cfg(test)]
    pub fn key_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_policies_have_separate_buckets() {
        let store = MemoryStore::new(1000, Duration::from_secs(10));
        let quota = Quota::new(1, Duration::from_secs(60), 2).expect("quota");
        let anonymous: Arc<str> = "anonymous".into();
        let write: Arc<str> = "write".into();
        let results: Vec<bool> = (0..3).map(|_| store.check(&anonymous, "1.2.3.4", quota).allowed).collect();
        assert_eq!(results, [true, true, false]);
        assert!(store.check(&anonymous, "5.6.7.8", quota).allowed);
        assert!(store.check(&write, "1.2.3.4", quota).allowed);
    }

    #[test]
    fn concurrent_requests_never_exceed_the_burst() {
        let store = MemoryStore::new(1000, Duration::from_secs(10));
        let quota = Quota::new(1, Duration::from_secs(3600), 100).expect("quota");
        let policy: Arc<str> = "anonymous".into();
        let allowed: u32 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| (0..100).map(|_| u32::from(store.check(&policy, "k", quota).allowed)).sum::<u32>())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(allowed, 100);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let store = MemoryStore::new(100, Duration::from_secs(10));
        let quota = Quota::new(1, Duration::from_secs(1), 1).expect("quota");
        let policy: Arc<str> = "anonymous".into();
        for i in 0..10_000 {
            store.check(&policy, &format!("10.0.{}.{}", i / 256, i % 256), quota);
        }
        store.run_pending_tasks();
        assert!(store.key_count() <= 100, "{}", store.key_count());
    }
}
