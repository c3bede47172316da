//! The restart settings a service declares: when it comes back, how often at most, and how long
//! it waits. The supervisor (`crate::supervisor`) acts on them; they are the model's, so that a
//! definition, a status and the configuration can name them without knowing the supervisor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a service is restarted when it stops.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartPolicy {
    /// Always restarted, after a failure or a normal stop.
    #[default]
    Permanent,
    /// Restarted only after a failure.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which services restart together when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Only the failed service restarts.
    #[default]
    OneForOne,
    /// Every service stops and restarts, in start order.
    OneForAll,
    /// The failed service and every service started after it restart, in start order.
    RestForOne,
}

/// Exponential backoff between restarts, with jitter.
///
/// The n-th consecutive restart waits `initial * factor^(n-1)`, capped at `max`, then moved by a
/// random fraction of up to `jitter` either way. Restarts are consecutive while the service
/// fails sooner than [`reset_after`](Self::reset_after) after it started: a service that ran
/// that long counts as stable, and its next restart waits `initial` again (as Akka's backoff
/// supervisor resets). The intensity limit ([`Restart::max_restarts`] within
/// [`Restart::within`]) counts every restart, stable or not.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::Backoff;
///
/// let backoff = Backoff {
///     initial: Duration::from_millis(200),
///     jitter: 0.0,
///     ..Backoff::default()
/// };
/// assert_eq!(backoff.delay(1), Duration::from_millis(200));
/// assert_eq!(backoff.delay(3), Duration::from_millis(800));
/// assert_eq!(backoff.reset_after, Duration::from_secs(1));
/// ```
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first delay.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub initial: Duration,
    /// The longest delay.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub max: Duration,
    /// The growth factor between consecutive delays.
    pub factor: f64,
    /// The largest random change, as a fraction of the delay (0.0 to 1.0).
    pub jitter: f64,
    /// How long a service must run before it fails for its next restart to count as the first
    /// again (default 1 s).
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    #[serde(default = "default_reset_after")]
    pub reset_after: Duration,
}

fn default_reset_after() -> Duration {
    Backoff::default().reset_after
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.1,
            reset_after: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// No delay at all between restarts.
    pub fn none() -> Self {
        Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            factor: 1.0,
            jitter: 0.0,
            reset_after: Duration::ZERO,
        }
    }

    /// The delay before the `attempt`-th consecutive restart (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        backoff_delay(self, attempt, fastrand::f64())
    }
}

/// A service's restart settings: policy, intensity and backoff.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    /// When to restart.
    pub policy: RestartPolicy,
    /// At most this many restarts within [`within`](Self::within); one more escalates.
    pub max_restarts: u32,
    /// The window of the intensity limit.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub within: Duration,
    /// The delay between restarts.
    pub backoff: Backoff,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::Permanent,
            max_restarts: 5,
            within: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }
}

impl Restart {
    /// Always restarted (the default).
    pub fn permanent() -> Self {
        Restart::default()
    }

    /// Restarted after failures only.
    pub fn transient() -> Self {
        Restart {
            policy: RestartPolicy::Transient,
            ..Restart::default()
        }
    }

    /// Never restarted.
    pub fn temporary() -> Self {
        Restart {
            policy: RestartPolicy::Temporary,
            ..Restart::default()
        }
    }

    /// Sets the intensity limit: at most `max_restarts` restarts within `within`.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Sets the backoff between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// The delay before the `attempt`-th consecutive restart, with `unit` a random number in [0, 1).
pub(crate) fn backoff_delay(backoff: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(64) as i32;
    let base = backoff.initial.as_secs_f64() * backoff.factor.max(1.0).powi(exp);
    let capped = base.min(backoff.max.as_secs_f64().max(backoff.initial.as_secs_f64()));
    let jitter = backoff.jitter.clamp(0.0, 1.0);
    let moved = capped * (1.0 + jitter * (2.0 * unit - 1.0));
    Duration::from_secs_f64(moved.max(0.0))
}
