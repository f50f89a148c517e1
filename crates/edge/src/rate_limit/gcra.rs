//! GCRA, the generic cell rate algorithm: a token bucket kept as one number per key, the
//! *theoretical arrival time* (TAT) of the next request at the sustained rate. The same
//! arithmetic runs here (in-process) and in `gcra.lua` (Redis); both work in microseconds.
//!
//! With emission interval `T` (period / rate) and burst `B`, a request at `now` is allowed when
//! `max(TAT, now) + T - B·T <= now`, and then `TAT := max(TAT, now) + T`.

use std::time::Duration;

/// A policy in GCRA's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Microseconds between two requests at the sustained rate.
    interval_us: u64,
    /// Requests a full bucket allows at once.
    burst: u32,
}

impl Quota {
    /// `rate` requests per `period`, `burst` at once. `None` when a parameter is zero or the rate
    /// is finer than a microsecond.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Option<Self> {
        let period_us = u64::try_from(period.as_micros()).ok()?;
        let interval_us = period_us.checked_div(u64::from(rate))?;
        (interval_us > 0 && burst > 0).then_some(Self { interval_us, burst })
    }

    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time for an empty bucket to fill up again: the window the quota is expressed over.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.tolerance_us())
    }

    fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(u64::from(self.burst))
    }

    /// The [`Outcome`] from the two numbers a decision produces (as the Lua script returns them).
    pub fn outcome(&self, allowed: bool, retry_after_us: u64, reset_after_us: u64) -> Outcome {
        let remaining = if allowed {
            let left = self.tolerance_us().saturating_sub(reset_after_us) / self.interval_us;
            u32::try_from(left).unwrap_or(self.burst).min(self.burst)
        } else {
            0
        };
        Outcome {
            allowed,
            remaining,
            retry_after: Duration::from_micros(retry_after_us),
            reset_after: Duration::from_micros(reset_after_us),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Until the next request would be allowed (zero when this one was).
    pub retry_after: Duration,
    /// Until the bucket is full again.
    pub reset_after: Duration,
}

/// Decides a request at `now_us` given the stored TAT (`0` when none). Returns the TAT to store
/// (`None`: leave it; a refused request costs nothing) and the outcome.
pub fn decide(stored_tat_us: u64, now_us: u64, quota: Quota) -> (Option<u64>, Outcome) {
    let tat = stored_tat_us.max(now_us);
    let new_tat = tat.saturating_add(quota.interval_us);
    let allow_at = new_tat.saturating_sub(quota.tolerance_us());
    if now_us < allow_at {
        (None, quota.outcome(false, allow_at - now_us, tat - now_us))
    } else {
        (Some(new_tat), quota.outcome(true, 0, new_tat - now_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn quota(rate: u32, period_secs: u64, burst: u32) -> Quota {
        Quota::new(rate, Duration::from_secs(period_secs), burst).expect("valid quota")
    }

    /// Runs `count` requests at `now`, returning how many were allowed and the final state.
    fn run(mut tat: u64, now: u64, count: u32, q: Quota) -> (u32, u64, Outcome) {
        let mut allowed = 0;
        let mut last = None;
        for _ in 0..count {
            let (new, outcome) = decide(tat, now, q);
            if let Some(new) = new {
                tat = new;
            }
            allowed += u32::from(outcome.allowed);
            last = Some(outcome);
        }
        (allowed, tat, last.expect("at least one request"))
    }

    #[test]
    fn a_full_bucket_allows_exactly_the_burst_then_refuses() {
        let q = quota(10, 1, 5);
        let (allowed, _, last) = run(0, 100 * SECOND, 20, q);
        assert_eq!(allowed, 5);
        assert!(!last.allowed);
        assert_eq!(last.remaining, 0);
        assert_eq!(last.retry_after, Duration::from_millis(100));
        assert_eq!(last.reset_after, Duration::from_millis(500));
    }

    #[test]
    fn remaining_counts_down_from_burst_minus_one() {
        let q = quota(100, 1, 200);
        let (_, first) = decide(0, SECOND, q);
        assert_eq!(first.remaining, 199);
        assert_eq!(first.reset_after, Duration::from_millis(10));
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let q = quota(10, 1, 5);
        let now = 100 * SECOND;
        let (_, tat, _) = run(0, now, 5, q);
        let (allowed, _, _) = run(tat, now + SECOND / 10, 5, q);
        assert_eq!(allowed, 1, "one interval later, one request");
        let (allowed, _, _) = run(tat, now + 10 * SECOND, 10, q);
        assert_eq!(allowed, 5, "a long pause refills the burst, no more");
    }

    #[test]
    fn a_sustained_rate_over_a_window_allows_rate_plus_burst() {
        let q = quota(100, 1, 200);
        let mut tat = 0;
        let mut allowed = 0;
        // 1000 requests spread evenly over one second.
        for i in 0..1000u64 {
            let (new, outcome) = decide(tat, SECOND + i * 1000, q);
            tat = new.unwrap_or(tat);
            allowed += u32::from(outcome.allowed);
        }
        assert!((290..=300).contains(&allowed), "{allowed}");
    }

    #[test]
    fn zero_or_too_fine_parameters_are_not_a_quota() {
        assert!(Quota::new(0, Duration::from_secs(1), 1).is_none());
        assert!(Quota::new(1, Duration::ZERO, 1).is_none());
        assert!(Quota::new(1, Duration::from_secs(1), 0).is_none());
        assert!(Quota::new(2_000_000, Duration::from_secs(1), 1).is_none());
    }
}
