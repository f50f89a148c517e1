//! A circuit breaker in front of Redis, so that once Redis is known to be down requests stop
//! paying its timeout: after `threshold` consecutive failures it opens and every call goes
//! straight to the failure mode; after `cooldown` one call (half-open) is let through to probe,
//! and its result closes or re-opens the circuit.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out; `since` lets a probe that never reported (its request was dropped) be
    /// replaced after another cooldown.
    HalfOpen {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// What the breaker says about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Make the call and report the result.
    Call,
    /// Don't; the circuit is open for about this long.
    Rejected(Duration),
}

/// A state change worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self { threshold: threshold.max(1), cooldown, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn permit(&self, now: Instant) -> Permit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Permit::Call,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { since: now };
                Permit::Call
            }
            State::Open { until } => Permit::Rejected(until - now),
            State::HalfOpen { since } if now >= since + self.cooldown => {
                *state = State::HalfOpen { since: now };
                Permit::Call
            }
            State::HalfOpen { since } => Permit::Rejected((since + self.cooldown).saturating_duration_since(now)),
        }
    }

    pub fn success(&self) -> Option<Transition> {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        (!was_closed).then_some(Transition::Closed)
    }

    pub fn failure(&self, now: Instant) -> Option<Transition> {
        let mut state = self.lock();
        match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *state = State::Closed { failures: failures + 1 };
                None
            }
            State::Closed { .. } | State::HalfOpen { .. } => {
                *state = State::Open { until: now + self.cooldown };
                Some(Transition::Opened)
            }
            // A call that started before the circuit opened; the cooldown already runs.
            State::Open { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_probes_once_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(breaker.failure(t0), None);
        assert_eq!(breaker.failure(t0), None);
        assert_eq!(breaker.permit(t0), Permit::Call);
        assert_eq!(breaker.failure(t0), Some(Transition::Opened));
        assert_eq!(breaker.permit(t0 + Duration::from_secs(1)), Permit::Rejected(Duration::from_secs(4)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(breaker.permit(later), Permit::Call, "the probe");
        assert!(matches!(breaker.permit(later), Permit::Rejected(_)), "only one probe at a time");
        assert_eq!(breaker.failure(later), Some(Transition::Opened), "a failed probe re-opens");
        let much_later = later + Duration::from_secs(5);
        assert_eq!(breaker.permit(much_later), Permit::Call);
        assert_eq!(breaker.success(), Some(Transition::Closed));
        assert_eq!(breaker.permit(much_later), Permit::Call);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(5));
        let t0 = Instant::now();
        breaker.failure(t0);
        assert_eq!(breaker.success(), None);
        assert_eq!(breaker.failure(t0), None);
        assert_eq!(breaker.permit(t0), Permit::Call);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_another_cooldown() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        breaker.failure(t0);
        let probe_time = t0 + Duration::from_secs(5);
        assert_eq!(breaker.permit(probe_time), Permit::Call);
        assert_eq!(breaker.permit(probe_time + Duration::from_secs(5)), Permit::Call);
    }
}
