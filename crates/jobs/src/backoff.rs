//! Retry delays: exponential (base × 2^(attempt−1), capped), with "equal jitter": a delay `d`
//! becomes a uniform pick in [d/2, d]. Jitter spreads the retries of jobs that failed together
//! (one endpoint down, one database blip) so they do not come back as one burst; keeping half of
//! `d` keeps the backoff growing.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay without jitter after failed attempt number `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1_u32 << doublings).min(self.max)
    }

    /// The delay before the next attempt, after failed attempt number `attempt`; `unit` is a
    /// uniform random number in [0, 1) (passed in so tests can pin it).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(3600) };

    #[test]
    fn the_delay_doubles_per_attempt_up_to_the_cap() {
        let ceilings: Vec<u64> = (1..=11).map(|a| BACKOFF.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]);
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_keeps_the_delay_between_half_and_all_of_the_ceiling() {
        assert_eq!(BACKOFF.delay(3, 0.0), Duration::from_secs(20));
        assert_eq!(BACKOFF.delay(3, 0.5), Duration::from_secs(30));
        assert!(BACKOFF.delay(3, 0.999_999) <= Duration::from_secs(40));
        assert_eq!(BACKOFF.delay(3, 7.0), Duration::from_secs(40));
    }
}
