//! The node's clock: Unix-epoch milliseconds that never go backwards, because the engine
//! uses one time both for message timestamps and for its timers.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ms: u64,
}

impl Clock {
    pub fn new() -> Self {
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            start: Instant::now(),
            start_unix_ms,
        }
    }

    /// Wall-clock time at start plus monotonic time since.
    pub fn now(&self) -> u64 {
        self.start_unix_ms + self.start.elapsed().as_millis() as u64
    }

    /// The `Instant` at which [`Clock::now`] will read `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(ms.saturating_sub(self.start_unix_ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
