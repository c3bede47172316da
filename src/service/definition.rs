use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::action::{Action, ActionEntry, Handler};
use crate::event::{Declared, Event};
use crate::service::{Command, Service, short_type_name};
use crate::supervisor::Restart;

/// What a service declares about itself in [`Service::define`], and what a registration can
/// override in code (see [`RuntimeBuilder::service_with`](crate::RuntimeBuilder::service_with)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::{Definition, Restart, Schedule, Service};
///
/// struct Outbox;
///
/// impl Service for Outbox {
///     fn define(def: &mut Definition<Self>) {
///         def.name("outbox")
///             .periodic(Schedule::every(Duration::from_secs(5)))
///             .command(sora::Command::PROCESS_BATCH)
///             .concurrency(2)
///             .restart(Restart::transient())
///             .critical();
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sora::Error> {
/// let runtime = sora::Runtime::builder().service(|| Outbox).start().await?;
/// let info = runtime.service_by_name("outbox")?.info().await?;
/// assert_eq!(info.commands, ["trigger", "process-batch"]);
/// assert!(info.critical);
/// # runtime.shutdown().await }
/// ```
pub struct Definition<S: Service> {
    pub(crate) name: String,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) startup: Option<Startup>,
    pub(crate) critical: bool,
    pub(crate) concurrency: usize,
    pub(crate) restart: Restart,
    pub(crate) actions: Vec<ActionEntry<S>>,
    pub(crate) commands: Vec<String>,
    pub(crate) events: Vec<Declared>,
    pub(crate) start_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) health_timeout: Duration,
}

impl<S: Service> std::fmt::Debug for Definition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("startup", &self.startup)
            .field("critical", &self.critical)
            .field("concurrency", &self.concurrency)
            .field("restart", &self.restart)
            .field(
                "actions",
                &self.actions.iter().map(|a| a.name).collect::<Vec<_>>(),
            )
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Definition<S> {
    pub(crate) fn of() -> Self {
        let mut def = Definition {
            name: short_type_name::<S>().to_owned(),
            schedule: None,
            startup: None,
            critical: false,
            concurrency: 1,
            restart: Restart::default(),
            actions: Vec::new(),
            commands: Vec::new(),
            events: Vec::new(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            health_timeout: Duration::from_secs(5),
        };
        S::define(&mut def);
        def
    }

    /// Names the service (by default, its type's name without its path).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Makes the service periodic: [`Service::tick`] runs on this schedule.
    pub fn periodic(&mut self, schedule: Schedule) -> &mut Self {
        self.schedule = Some(schedule);
        self
    }

    /// Makes the service a start-up service: its `start` runs before every other service's, in
    /// ascending [`Startup::order`], within [`Startup::timeout`].
    pub fn startup(&mut self, startup: Startup) -> &mut Self {
        self.start_timeout = startup.timeout;
        self.startup = Some(startup);
        self
    }

    /// Marks the service critical: if it cannot be kept up (its restart intensity is exceeded),
    /// the runtime stops with [`Error::CriticalFailure`](crate::Error::CriticalFailure).
    pub fn critical(&mut self) -> &mut Self {
        self.critical = true;
        self
    }

    /// How many actions and commands may run at once (default 1).
    ///
    /// # Panics
    ///
    /// Panics if `limit` is zero.
    #[track_caller]
    pub fn concurrency(&mut self, limit: usize) -> &mut Self {
        assert!(
            limit > 0,
            "a service's concurrency limit must be at least 1"
        );
        self.concurrency = limit;
        self
    }

    /// Sets the restart policy, intensity and backoff.
    pub fn restart(&mut self, restart: Restart) -> &mut Self {
        self.restart = restart;
        self
    }

    /// How long a non-start-up service's `start` may take (default 30 s).
    pub fn start_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.start_timeout = timeout;
        self
    }

    /// How long `stop` may take once in-flight work is done (default 5 s).
    pub fn stop_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.stop_timeout = timeout;
        self
    }

    /// Declares an action, making it callable by name (JSON, bincode) and listed in info.
    ///
    /// Typed calls through a [`ServiceHandle`](crate::ServiceHandle) need no declaration: the
    /// compiler already knows the handler exists.
    ///
    /// # Panics
    ///
    /// Panics if an action of the same name is already declared.
    #[track_caller]
    pub fn action<A>(&mut self) -> &mut Self
    where
        S: Handler<A>,
        A: Action + DeserializeOwned,
        A::Reply: Serialize,
    {
        assert!(
            !self.actions.iter().any(|a| a.name == A::NAME),
            "action `{}` is declared twice on service `{}`",
            A::NAME,
            self.name
        );
        self.actions.push(ActionEntry::of::<A>());
        self
    }

    /// Declares a command the service accepts: one of [`Command::PROCESS_BATCH`],
    /// [`Command::CHECK_QUEUE`], [`Command::TRIGGER`] (implied for periodic services), or a
    /// custom name.
    pub fn command(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        if !self.commands.contains(&name) {
            self.commands.push(name);
        }
        self
    }

    /// Declares an event the service emits: listed in info, emitted with
    /// [`Context::emit`](crate::Context::emit), and open to subscribers.
    ///
    /// # Panics
    ///
    /// Panics if another event type of the same name is already declared.
    #[track_caller]
    pub fn emits<E: Event>(&mut self) -> &mut Self {
        let type_id = TypeId::of::<E>();
        match self.events.iter().find(|d| &*d.name == E::NAME) {
            Some(d) => assert!(
                d.type_id == type_id,
                "two event types are named `{}` on service `{}`",
                E::NAME,
                self.name
            ),
            None => self.events.push(Declared {
                name: Arc::from(E::NAME),
                type_id,
            }),
        }
        self
    }

    pub(crate) fn accepts(&self, command: &Command) -> bool {
        let name = command.name();
        (name == Command::TRIGGER && self.schedule.is_some())
            || self.commands.iter().any(|c| c == name)
    }
}

/// When a periodic service runs.
///
/// The first scheduled run comes `initial_delay` after the service starts, or one `period` after
/// it when there is no initial delay; [`run_on_start`](Schedule::run_on_start) adds a run at once.
/// Runs never overlap: a tick that falls while a run is in progress is skipped and counted, and
/// [`MissedTick`] says what happens next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub(crate) period: Duration,
    pub(crate) initial_delay: Duration,
    pub(crate) run_on_start: bool,
    pub(crate) missed: MissedTick,
}

impl Schedule {
    /// Runs every `period`.
    ///
    /// # Panics
    ///
    /// Panics if `period` is zero.
    #[track_caller]
    pub fn every(period: Duration) -> Self {
        assert!(!period.is_zero(), "a schedule's period must be above zero");
        Schedule {
            period,
            initial_delay: Duration::ZERO,
            run_on_start: false,
            missed: MissedTick::Skip,
        }
    }

    /// Waits this long before the first scheduled run.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Also runs once as soon as the service has started.
    pub fn run_on_start(mut self) -> Self {
        self.run_on_start = true;
        self
    }

    /// What to do with ticks that fall while a run is in progress (default [`MissedTick::Skip`]).
    pub fn missed_ticks(mut self, policy: MissedTick) -> Self {
        self.missed = policy;
        self
    }

    /// The time between runs.
    pub fn period(&self) -> Duration {
        self.period
    }

    pub(crate) fn first_tick(&self) -> Duration {
        if self.initial_delay.is_zero() {
            self.period
        } else {
            self.initial_delay
        }
    }
}

/// What a periodic service does with ticks that fall while a run is still in progress.
///
/// Every such tick is skipped and counted in [`ServiceStatus::skipped`](crate::ServiceStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedTick {
    /// Skip them; the next run is the next tick of the fixed-rate schedule.
    #[default]
    Skip,
    /// Run once as soon as the long run ends if any tick was skipped, then keep the fixed-rate
    /// schedule.
    RunOnce,
    /// Fixed delay instead of fixed rate: the next run comes one period after the last one ends,
    /// so no tick is ever missed.
    Delay,
}

/// How a start-up service runs: its order among start-up services, its timeout, and whether the
/// runtime may start without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    pub(crate) order: i32,
    pub(crate) timeout: Duration,
    pub(crate) continue_on_failure: bool,
}

impl Startup {
    /// A start-up service at this place in the order (ascending; ties keep registration order).
    /// The timeout defaults to 30 s.
    pub fn order(order: i32) -> Self {
        Startup {
            order,
            timeout: Duration::from_secs(30),
            continue_on_failure: false,
        }
    }

    /// How long its start-up work may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Lets the runtime start even when this service's start-up fails; the service is then
    /// reported failed and unhealthy.
    pub fn continue_on_failure(mut self) -> Self {
        self.continue_on_failure = true;
        self
    }

    /// Its place in the start-up order.
    pub fn get_order(&self) -> i32 {
        self.order
    }
}
