//! Time as the queue sees it. Production reads the system clock; tests inject a [`ManualClock`]
//! to check retry timing without waiting for it.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
};

use time::{Duration, OffsetDateTime};

pub trait Clock: Debug + Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().map_or_else(|poisoned| *poisoned.into_inner(), |now| *now)
    }
}
