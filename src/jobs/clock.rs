//! The dispatcher's clock: wall-clock times, as the store keeps them, that move with tokio's
//! clock, so that a test on paused time drives delays and retries as it drives the runtime.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The longest a single sleep of the pump lasts; it looks again after it.
const LONGEST_SLEEP: Duration = Duration::from_secs(24 * 3600);

/// A wall-clock time read once, then advanced by tokio's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// A clock that reads the wall clock now.
    pub(crate) fn new() -> Self {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// The time now.
    pub(crate) fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }

    /// The instant of tokio's clock at which it is `at`, a day from now at the latest.
    pub(crate) fn instant(&self, at: SystemTime) -> Instant {
        let from_now = at.duration_since(self.now()).unwrap_or_default();
        Instant::now() + from_now.min(LONGEST_SLEEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_moves_with_tokio_time() {
        let clock = Clock::new();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(
            clock.now().duration_since(t0).unwrap(),
            Duration::from_secs(90)
        );
        let at = clock.now() + Duration::from_secs(30);
        assert_eq!(clock.instant(at) - Instant::now(), Duration::from_secs(30));
        assert_eq!(clock.instant(t0), Instant::now(), "a past time is now");
        let far = clock.now() + Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(clock.instant(far) - Instant::now(), LONGEST_SLEEP);
    }
}
