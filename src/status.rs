//! What a service reports about itself: [`ServiceStatus`], [`ServiceInfo`] and their parts.
//!
//! Status is a snapshot kept by the service's host as it works, so it answers at once even while
//! an action or a run is in progress. Info is what the service declared.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::service::environment::Environment;
use crate::service::restart::Restart;
use crate::service::{MissedTick, Schedule, Startup};

mod run;

pub(crate) use run::{History, HistoryLimits, RunRecord, Unsaved};
pub use run::{Run, RunKind, RunOutcome};

/// Where a service is in its life.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
#[repr(u8)]
pub enum ServiceState {
    /// Its `start` hook is running.
    Starting,
    /// Up, with its own background work (`run`) in progress and nothing else.
    Running,
    /// Up, with nothing in progress.
    Idle,
    /// Up, with an action, a command or a periodic run in progress.
    Busy,
    /// Waiting to be restarted after a failure.
    Restarting,
    /// Finishing its in-flight work before it stops.
    Stopping,
    /// Stopped in order.
    Stopped,
    /// Failed, and not restarted (its policy, or its restart intensity, said so).
    Failed,
    /// Not started: disabled by its definition or its configuration, or not meant for the
    /// runtime's environment.
    Disabled,
}

impl ServiceState {
    const ALL: [ServiceState; 9] = [
        Self::Starting,
        Self::Running,
        Self::Idle,
        Self::Busy,
        Self::Restarting,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
        Self::Disabled,
    ];

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Self::Failed)
    }

    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The outcome of the last periodic run.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it started (wall clock).
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::TimeSchema))]
    pub started_at: SystemTime,
    /// How long it took.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub duration: Duration,
    /// Its error, if it failed.
    pub error: Option<String>,
}

/// A snapshot of a service's state and counters.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Where it is in its life.
    pub state: ServiceState,
    /// The last periodic (or triggered) run.
    pub last_run: Option<LastRun>,
    /// How long until the next scheduled run.
    #[cfg_attr(feature = "http", schema(value_type = Option<crate::schema::DurationSchema>))]
    pub next_run_in: Option<Duration>,
    /// Periodic runs completed (successful or not).
    pub runs: u64,
    /// Ticks skipped because a run was still in progress.
    pub skipped: u64,
    /// Failed runs, actions and commands.
    pub failures: u64,
    /// Actions and commands completed (successful or not).
    pub calls: u64,
    /// Actions and commands refused because its queue was at its limit.
    pub rejected: u64,
    /// Actions and commands waiting for a free slot.
    pub queue_depth: usize,
    /// Actions and commands in progress.
    pub in_flight: usize,
    /// How many times the service has been restarted.
    pub restarts: u64,
    /// The last failure of the service itself (a panic or a failed hook).
    pub last_failure: Option<String>,
    /// Events it has emitted.
    pub events_emitted: u64,
    /// Events of its that subscribers lost to their overflow policy.
    pub events_dropped: u64,
    /// Whether an operator paused its schedule (see
    /// [`ServiceHandle::pause`](crate::ServiceHandle::pause)).
    pub paused: bool,
}

/// What kind of service this is; one service may be several.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ServiceKind {
    /// It has background work of its own (`run`).
    LongRunning,
    /// It runs on a schedule.
    Periodic,
    /// It accepts commands or declared actions: it can be poked from outside.
    Pokable,
    /// It runs at start-up, before the other services.
    Startup,
}

/// A periodic service's schedule, as reported.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Time between runs.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub period: Duration,
    /// Delay before the first scheduled run.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
    pub initial_delay: Duration,
    /// Whether it runs once at start.
    pub run_on_start: bool,
    /// What happens to ticks that fall while a run is in progress.
    pub missed_ticks: MissedTick,
}

impl From<&Schedule> for ScheduleInfo {
    fn from(s: &Schedule) -> Self {
        ScheduleInfo {
            period: s.period,
            initial_delay: s.initial_delay,
            run_on_start: s.run_on_start,
            missed_ticks: s.missed,
        }
    }
}

/// What a service declared about itself.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service's name.
    pub name: String,
    /// Its Rust type.
    pub type_name: String,
    /// Its kinds.
    pub kinds: Vec<ServiceKind>,
    /// Its schedule, if it is periodic.
    pub schedule: Option<ScheduleInfo>,
    /// Its start-up settings, if it is a start-up service.
    pub startup: Option<Startup>,
    /// The actions it declared.
    pub actions: Vec<String>,
    /// Those of its actions that are durable: each call is a job (see
    /// [`Definition::durable`](crate::Definition::durable)).
    #[serde(default)]
    pub durable: Vec<String>,
    /// The commands it accepts.
    pub commands: Vec<String>,
    /// The events it emits.
    pub events: Vec<String>,
    /// Whether its failure stops the runtime.
    pub critical: bool,
    /// How many actions and commands it runs at once.
    pub concurrency: usize,
    /// How many calls may wait for a free slot (`None`: no limit).
    pub queue_limit: Option<usize>,
    /// Its restart policy.
    pub restart: Restart,
    /// Whether it runs in this runtime: enabled, and meant for the runtime's environment.
    pub enabled: bool,
    /// The environments it runs in.
    pub run_in: Vec<Environment>,
    /// Its priority among the services that are not start-up services (higher starts first).
    pub priority: i32,
}

#[cfg(test)]
mod tests {
    use super::ServiceState;

    #[test]
    fn states_round_trip_through_their_stored_form() {
        for state in ServiceState::ALL {
            assert_eq!(ServiceState::from_u8(state.as_u8()), state);
        }
    }
}
