use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::action::{Action, ActionEntry, Handler};
use crate::event::record::{Declared, Event};
use crate::service::environment::Environment;
use crate::service::restart::Restart;
use crate::service::retry::{JobDead, Retry};
use crate::service::{Command, Service, short_type_name};

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
    pub(crate) queue_limit: Option<usize>,
    pub(crate) restart: Restart,
    pub(crate) actions: Vec<ActionEntry<S>>,
    /// Whether any of `actions` is durable, so that a typed call to a service without durable
    /// actions looks for none.
    pub(crate) durable: bool,
    /// Whether it keeps state in the store ([`Definition::state`]).
    pub(crate) keeps_state: bool,
    pub(crate) commands: Vec<String>,
    /// Which built-in commands are among `commands`, so that accepting one compares no names.
    built_ins: BuiltIns,
    pub(crate) events: Vec<Declared>,
    pub(crate) start_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) health_timeout: Duration,
    pub(crate) enabled: bool,
    pub(crate) priority: i32,
    pub(crate) run_in: Vec<Environment>,
    pub(crate) settings: Option<Settings>,
    /// Set while a registration's own overrides run: what they set, configuration leaves alone.
    overriding: bool,
    pinned: u16,
}

/// What configuration may change on a definition; one bit each.
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
pub(crate) enum Field {
    Enabled = 1,
    RunIn = 1 << 1,
    Priority = 1 << 2,
    Critical = 1 << 3,
    Concurrency = 1 << 4,
    Schedule = 1 << 5,
    Startup = 1 << 6,
    StartTimeout = 1 << 7,
    StopTimeout = 1 << 8,
    Restart = 1 << 9,
    Settings = 1 << 10,
    QueueLimit = 1 << 11,
}

/// A service's typed settings: how to read them from configuration, and their value once read.
pub(crate) struct Settings {
    pub(crate) type_name: &'static str,
    pub(crate) read: ReadSettings,
    pub(crate) value: Option<SettingsValue>,
}

/// A settings value, shared by every incarnation of its service.
pub(crate) type SettingsValue = Arc<dyn Any + Send + Sync>;

/// Reads a settings type from the configuration focused on its table.
pub(crate) type ReadSettings = fn(&figment::Figment) -> Result<SettingsValue, Box<figment::Error>>;

fn read_settings<T: DeserializeOwned + Send + Sync + 'static>(
    figment: &figment::Figment,
) -> Result<SettingsValue, Box<figment::Error>> {
    Ok(Arc::new(figment.extract::<T>().map_err(Box::new)?))
}

impl<S: Service> std::fmt::Debug for Definition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("startup", &self.startup)
            .field("critical", &self.critical)
            .field("concurrency", &self.concurrency)
            .field("queue_limit", &self.queue_limit)
            .field("restart", &self.restart)
            .field(
                "actions",
                &self.actions.iter().map(|a| a.name).collect::<Vec<_>>(),
            )
            .field("commands", &self.commands)
            .field("enabled", &self.enabled)
            .field("priority", &self.priority)
            .field("run_in", &self.run_in)
            .field("settings", &self.settings.as_ref().map(|s| s.type_name))
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
            queue_limit: None,
            restart: Restart::default(),
            actions: Vec::new(),
            durable: false,
            keeps_state: false,
            commands: Vec::new(),
            built_ins: BuiltIns::default(),
            events: Vec::new(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            health_timeout: Duration::from_secs(5),
            enabled: true,
            priority: 0,
            run_in: vec![Environment::Development, Environment::Production],
            settings: None,
            overriding: false,
            pinned: 0,
        };
        S::define(&mut def);
        def
    }

    /// From now on, what is set is the program's explicit choice, above any configuration.
    pub(crate) fn begin_overrides(&mut self) {
        self.overriding = true;
    }

    /// Whether the program set `field` explicitly, so that configuration must not change it.
    pub(crate) fn is_pinned(&self, field: Field) -> bool {
        self.pinned & field as u16 != 0
    }

    fn set(&mut self, field: Field) -> &mut Self {
        if self.overriding {
            self.pinned |= field as u16;
        }
        self
    }

    /// Whether the service runs in `environment` and is enabled.
    pub(crate) fn runs_in(&self, environment: Environment) -> bool {
        self.enabled && self.run_in.contains(&environment)
    }

    /// Names the service (by default, its type's name without its path).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Makes the service periodic: [`Service::tick`] runs on this schedule.
    pub fn periodic(&mut self, schedule: Schedule) -> &mut Self {
        self.schedule = Some(schedule);
        self.set(Field::Schedule)
    }

    /// Makes the service a start-up service: its `start` runs before every other service's, in
    /// ascending [`Startup::order`], within [`Startup::timeout`].
    pub fn startup(&mut self, startup: Startup) -> &mut Self {
        self.start_timeout = startup.timeout;
        self.startup = Some(startup);
        self.set(Field::Startup).set(Field::StartTimeout)
    }

    /// Marks the service critical: if it cannot be kept up (its restart intensity is exceeded),
    /// the runtime stops with [`Error::CriticalFailure`](crate::Error::CriticalFailure).
    pub fn critical(&mut self) -> &mut Self {
        self.critical = true;
        self.set(Field::Critical)
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
        self.set(Field::Concurrency)
    }

    /// How many actions and commands may wait for a free slot (default: no limit). A call that
    /// finds the queue full is refused at once with [`Error::Overloaded`](crate::Error::Overloaded)
    /// (HTTP 429), whatever its priority; calls already queued keep their place. With `0`, a call
    /// that finds every slot busy is refused instead of queued.
    pub fn queue_limit(&mut self, limit: usize) -> &mut Self {
        self.queue_limit = Some(limit);
        self.set(Field::QueueLimit)
    }

    /// Sets the restart policy, intensity and backoff.
    pub fn restart(&mut self, restart: Restart) -> &mut Self {
        self.restart = restart;
        self.set(Field::Restart)
    }

    /// How long `start` may take (default 30 s; for a start-up service, its [`Startup::timeout`]).
    pub fn start_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.start_timeout = timeout;
        if let Some(startup) = &mut self.startup {
            startup.timeout = timeout;
        }
        self.set(Field::StartTimeout)
    }

    /// How long `stop` may take once in-flight work is done (default 5 s).
    pub fn stop_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.stop_timeout = timeout;
        self.set(Field::StopTimeout)
    }

    /// Declares an action, making it callable by name (JSON, bincode), from other nodes of a
    /// cluster, and listed in info.
    ///
    /// A declared action is a contract on the wire, so both the action and its reply are
    /// serializable both ways. Typed calls to a service in this process need no declaration:
    /// the compiler already knows the handler exists.
    ///
    /// # Panics
    ///
    /// Panics if an action of the same name is already declared.
    #[track_caller]
    pub fn action<A>(&mut self) -> &mut Self
    where
        S: Handler<A>,
        A: Action + Serialize + DeserializeOwned,
        A::Reply: Serialize + DeserializeOwned,
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

    /// Declares a durable action: as [`action`](Self::action) does, and every call of it is
    /// a job, committed to the runtime's store before the caller hears it was accepted, run at
    /// least once, retried under `retry`, and kept with its outcome.
    ///
    /// A typed call ([`act`](crate::ServiceHandle::act)) then waits for the job's reply;
    /// [`enqueue`](crate::ServiceHandle::enqueue) answers as soon as the job is committed.
    /// The handler sees which attempt it runs in [`Context::job`](crate::Context::job).
    ///
    /// # Examples
    ///
    /// ```
    /// use sora::{Action, BoxError, Context, Definition, Handler, Retry, Service};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct SendEmail { to: String }
    /// impl Action for SendEmail {
    ///     const NAME: &'static str = "send-email";
    ///     type Reply = ();
    /// }
    ///
    /// struct Mailer;
    /// impl Service for Mailer {
    ///     fn define(def: &mut Definition<Self>) {
    ///         def.durable::<SendEmail>(Retry::attempts(10));
    ///     }
    /// }
    /// impl Handler<SendEmail> for Mailer {
    ///     async fn handle(&self, mail: SendEmail, ctx: &Context) -> Result<(), BoxError> {
    ///         let job = ctx.job().expect("a durable call is a job");
    ///         tracing::info!(to = mail.to, attempt = job.attempt, "sending");
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder()
    ///     .store(sora::store::RedbStore::in_memory()?)
    ///     .service(|| Mailer)
    ///     .start()
    ///     .await?;
    /// let mailer = runtime.service::<Mailer>()?;
    /// mailer.act(SendEmail { to: "ada@example.com".into() }).await?;
    /// # runtime.shutdown().await }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if an action of the same name is already declared.
    #[track_caller]
    pub fn durable<A>(&mut self, retry: Retry) -> &mut Self
    where
        S: Handler<A>,
        A: Action + Serialize + DeserializeOwned,
        A::Reply: Serialize + DeserializeOwned,
    {
        self.action::<A>();
        let entry = self
            .actions
            .last_mut()
            .expect("the action was just declared");
        entry.retry = Some(Retry {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        });
        self.durable = true;
        self.emits::<JobDead>()
    }

    /// Declares that the service keeps state: values by key in the store, read and written
    /// through [`Context::state`](crate::Context::state), that survive a restart of the
    /// service and of the process. Like a durable action, it makes the runtime open its store
    /// (the configured file, or the default one) when the service runs here.
    ///
    /// # Examples
    ///
    /// ```
    /// use sora::{Context, Definition, Service};
    ///
    /// struct Sync;
    /// impl Service for Sync {
    ///     fn define(def: &mut Definition<Self>) {
    ///         def.state();
    ///     }
    ///     async fn start(&self, ctx: &Context) -> Result<(), sora::BoxError> {
    ///         let starts = ctx.state().update("starts", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    ///         tracing::info!(starts, "started");
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder()
    ///     .store(sora::store::RedbStore::in_memory()?)
    ///     .service(|| Sync)
    ///     .start()
    ///     .await?;
    /// let starts: Option<u64> = runtime.state("Sync").get("starts")?;
    /// assert_eq!(starts, Some(1));
    /// # runtime.shutdown().await }
    /// ```
    pub fn state(&mut self) -> &mut Self {
        self.keeps_state = true;
        self
    }

    /// Declares a command the service accepts: one of [`Command::PROCESS_BATCH`],
    /// [`Command::CHECK_QUEUE`], [`Command::TRIGGER`] (implied for periodic services), or a
    /// custom name.
    pub fn command(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        match name.as_str() {
            Command::TRIGGER => self.built_ins.trigger = true,
            Command::CHECK_QUEUE => self.built_ins.check_queue = true,
            Command::PROCESS_BATCH => self.built_ins.process_batch = true,
            _ => {}
        }
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
                #[cfg(feature = "cluster")]
                schema: crate::codec::typed::event_schema::<E>(),
            }),
        }
        self
    }

    /// Enables or disables the service (default enabled). A disabled service is registered, and
    /// reported [`Disabled`](crate::ServiceState::Disabled) in status, but never started.
    pub fn enabled(&mut self, enabled: bool) -> &mut Self {
        self.enabled = enabled;
        self.set(Field::Enabled)
    }

    /// The environments the service runs in (default development and production). In any other,
    /// it is disabled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sora::{Definition, Service};
    /// use sora::config::Environment;
    /// # struct Seeder;
    /// impl Service for Seeder {
    ///     fn define(def: &mut Definition<Self>) {
    ///         def.run_in([Environment::Development, Environment::Testing]);
    ///     }
    /// }
    /// # let _ = sora::Runtime::builder().service(|| Seeder);
    /// ```
    pub fn run_in(&mut self, environments: impl IntoIterator<Item = Environment>) -> &mut Self {
        self.run_in = environments.into_iter().collect();
        self.run_in.sort_unstable_by_key(|e| *e as u8);
        self.run_in.dedup();
        self.set(Field::RunIn)
    }

    /// The service's priority (default 0): services that are not start-up services start in
    /// descending priority, ties in registration order, and stop in the reverse order.
    pub fn priority(&mut self, priority: i32) -> &mut Self {
        self.priority = priority;
        self.set(Field::Priority)
    }

    /// Declares the type of the service's settings: read from its `settings` table in the
    /// configuration when the runtime starts (an error there stops the start), and handed to
    /// the service by [`Context::settings`](crate::Context::settings).
    ///
    /// With no `settings` table, `T` is read from an empty table, so its `#[serde(default)]`
    /// fields are the service's defaults. See [`config`](crate::config) for an example.
    pub fn settings<T: DeserializeOwned + Send + Sync + 'static>(&mut self) -> &mut Self {
        self.settings = Some(Settings {
            type_name: std::any::type_name::<T>(),
            read: read_settings::<T>,
            value: None,
        });
        self
    }

    /// Sets the service's settings in code, above any configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default)] struct Cleanup;
    /// # impl sora::Service for Cleanup {}
    /// # #[allow(dead_code)]
    /// struct CleanupOptions { retention_days: u32 }
    ///
    /// let builder = sora::Runtime::builder().service_with(Cleanup::default, |def| {
    ///     def.settings_value(CleanupOptions { retention_days: 7 });
    /// });
    /// # drop(builder);
    /// ```
    pub fn settings_value<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.settings = Some(Settings {
            type_name: std::any::type_name::<T>(),
            read: |_| {
                let why = "these settings are set in code and cannot be read from configuration";
                Err(Box::new(figment::Error::from(why.to_owned())))
            },
            value: Some(Arc::new(value)),
        });
        self.set(Field::Settings)
    }

    #[inline]
    pub(crate) fn accepts(&self, command: &Command) -> bool {
        match command {
            Command::TriggerNow => self.schedule.is_some() || self.built_ins.trigger,
            Command::CheckQueue => self.built_ins.check_queue,
            Command::ProcessBatch { .. } => self.built_ins.process_batch,
            Command::Custom { name, .. } => self.commands.iter().any(|c| c == name),
        }
    }
}

/// The built-in commands a service declares.
#[derive(Debug, Clone, Copy, Default)]
struct BuiltIns {
    trigger: bool,
    check_queue: bool,
    process_batch: bool,
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
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    pub(crate) order: i32,
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::DurationSchema))]
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
