//! How a durable action's failed attempts are retried: how many attempts, and how long each
//! retry waits. The job dispatcher (`crate::jobs`) acts on it; it is the model's, so that a
//! definition can declare it without knowing the dispatcher.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::restart::{Backoff, backoff_delay};

/// A durable action's retry policy: at most [`max_attempts`](Self::max_attempts) attempts, the
/// n-th retry waiting [`backoff`](Self::backoff)`.delay(n)`.
///
/// The default is 5 attempts, waiting about 1 s, 4 s, 16 s and 64 s between them (each moved by
/// up to 20% either way, so that jobs that failed together do not come back together), never
/// more than 10 minutes. A handler that knows its error will not pass by waiting returns a
/// [`Permanent`](crate::action::Permanent) error, and the job is dead at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::{Backoff, Retry};
///
/// let retry = Retry::attempts(3).backoff(Backoff {
///     initial: Duration::from_secs(2),
///     factor: 3.0,
///     jitter: 0.0,
///     ..Retry::default().backoff
/// });
/// assert_eq!(retry.max_attempts, 3);
/// assert_eq!(retry.delay(1), Duration::from_secs(2));
/// assert_eq!(retry.delay(2), Duration::from_secs(6));
/// assert_eq!(Retry::none().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// How many attempts a job gets, the first included (at least 1).
    pub max_attempts: u32,
    /// How long the n-th retry waits after the n-th failed attempt
    /// ([`reset_after`](Backoff::reset_after) plays no part).
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(600),
                factor: 4.0,
                jitter: 0.2,
                reset_after: Duration::ZERO,
            },
        }
    }
}

impl Retry {
    /// The default backoff, with `max_attempts` attempts (at least 1).
    pub fn attempts(max_attempts: u32) -> Self {
        Retry {
            max_attempts: max_attempts.max(1),
            ..Retry::default()
        }
    }

    /// One attempt and no retry: the job is still kept, run at least once and recorded.
    pub fn none() -> Self {
        Retry::attempts(1)
    }

    /// With this backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long to wait after the `failed`-th failed attempt (1-based) before the next.
    pub fn delay(&self, failed: u32) -> Duration {
        backoff_delay(&self.backoff, failed, fastrand::f64())
    }
}
