use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::Actor;

use super::plane::{Plane, PlaneKind, Settings};
use super::store::StoreChoice;
use super::{RUNNING, Runtime, RuntimeConfig, RuntimeHandle, RuntimeShared};
use crate::Error;
use crate::config::{self, Config, Environment, Loaded, ServiceOverrides};
use crate::host::{ErasedService, ServiceCell};
use crate::service::{Definition, Service};
use crate::status::HistoryLimits;
use crate::supervisor::{Strategy, Supervisor, SupervisorArgs, SupervisorMessage};

/// A registered service, waiting for the configuration and the runtime.
pub(crate) trait Pending: Send {
    fn name(&self) -> &str;
    /// Where it goes in the start order: start-up services by order, then by priority.
    fn start_key(&self) -> (bool, i32);
    /// Applies the configuration and decides whether the service runs.
    fn configure(&mut self, loaded: &Loaded, runtime: &RuntimeConfig) -> Result<(), Error>;
    /// Reads the typed settings of a service that runs.
    fn read_settings(&mut self, loaded: &Loaded) -> Result<(), Error>;
    fn build(self: Box<Self>, shared: Arc<RuntimeShared>) -> Arc<dyn ErasedService>;
}

pub(crate) struct PendingService<S: Service> {
    def: Definition<S>,
    factory: Box<dyn Fn() -> S + Send + Sync>,
    enabled: bool,
    /// Declared here, run by other nodes of the cluster.
    remote: bool,
}

impl<S: Service> PendingService<S> {
    pub(crate) fn new<F, D>(factory: F, define: D) -> Self
    where
        F: Fn() -> S + Send + Sync + 'static,
        D: FnOnce(&mut Definition<S>),
    {
        PendingService {
            def: declared(define),
            factory: Box::new(factory),
            enabled: true,
            remote: false,
        }
    }

    /// A service that other nodes run: declared here so that typed handles reach it.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote<D>(define: D) -> Self
    where
        D: FnOnce(&mut Definition<S>),
    {
        PendingService {
            def: declared(define),
            factory: Box::new(|| unreachable!("a service declared as remote is never started")),
            enabled: false,
            remote: true,
        }
    }
}

/// The service's declaration, then what the program set on it (which configuration does not
/// override).
fn declared<S: Service>(define: impl FnOnce(&mut Definition<S>)) -> Definition<S> {
    let mut def = Definition::<S>::of();
    def.begin_overrides();
    define(&mut def);
    def
}

impl<S: Service> Pending for PendingService<S> {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn start_key(&self) -> (bool, i32) {
        match &self.def.startup {
            Some(startup) => (false, startup.order),
            None => (true, -self.def.priority),
        }
    }

    fn configure(&mut self, loaded: &Loaded, runtime: &RuntimeConfig) -> Result<(), Error> {
        if self.remote {
            return Ok(());
        }
        let at = ServiceOverrides::new(loaded, &self.def.name);
        config::apply(&mut self.def, &at)?;
        self.enabled = runtime.enabled && self.def.runs_in(runtime.environment);
        Ok(())
    }

    fn read_settings(&mut self, loaded: &Loaded) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let at = ServiceOverrides::new(loaded, &self.def.name);
        config::read_settings(&mut self.def, &at)
    }

    fn build(self: Box<Self>, shared: Arc<RuntimeShared>) -> Arc<dyn ErasedService> {
        Arc::new(ServiceCell::new(
            self.def,
            self.factory,
            self.enabled,
            self.remote,
            shared,
        ))
    }
}

/// Everything `start` needs, configured.
struct Resolved {
    config: RuntimeConfig,
    /// In start order.
    pending: Vec<Box<dyn Pending>>,
    /// The planes this run asks for, in the composition root's order.
    planes: Vec<Box<dyn Plane>>,
    /// The store the builder was given.
    store: Option<StoreChoice>,
    /// The store's file, from the configuration.
    store_path: Option<std::path::PathBuf>,
    /// How long finished jobs are kept, from the configuration.
    retention: crate::jobs::Retention,
}

/// What the program set on the builder: above any configuration.
#[derive(Debug, Default)]
struct Overrides {
    strategy: Option<Strategy>,
    shutdown_timeout: Option<Duration>,
    startup_timeout: Option<Duration>,
    fail_fast: Option<bool>,
    enabled: Option<bool>,
    environment: Option<Environment>,
    history: Option<(usize, Duration)>,
}

/// Builds a [`Runtime`]: its services and its runtime-wide settings.
///
/// Settings come, lowest first, from what each service declares, the [`Config`] given to
/// [`config`](Self::config), and what is set here; see [`config`](crate::config).
#[must_use = "a runtime does nothing until it is started"]
pub struct RuntimeBuilder {
    pending: Vec<Box<dyn Pending>>,
    names: HashSet<String>,
    discover: bool,
    without: Vec<String>,
    config: Config,
    overrides: Overrides,
    /// The planes of this build (see [`plane`](super::plane)).
    planes: &'static [PlaneKind],
    /// What the program gave for them, by plane name.
    explicit: Vec<(&'static str, Settings)>,
    /// The store of durable jobs the program chose.
    pub(super) store: Option<StoreChoice>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("services", &self.names)
            .field("discover", &self.discover)
            .field("without", &self.without)
            .field("config", &self.config)
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl RuntimeBuilder {
    pub(crate) fn new(planes: &'static [PlaneKind]) -> Self {
        RuntimeBuilder {
            pending: Vec::new(),
            names: HashSet::new(),
            discover: false,
            without: Vec::new(),
            config: Config::default(),
            overrides: Overrides::default(),
            planes,
            explicit: Vec::new(),
            store: None,
        }
    }

    /// Registers a service. `factory` builds its value at start and at every restart.
    ///
    /// A type may be registered several times under different names (see
    /// [`Definition::name`]); [`RuntimeHandle::service`](crate::RuntimeHandle::service) then
    /// finds the first, and [`RuntimeHandle::service_named`](crate::RuntimeHandle::service_named)
    /// any of them.
    ///
    /// # Panics
    ///
    /// Panics if a service of the same name is already registered.
    #[track_caller]
    pub fn service<S, F>(self, factory: F) -> Self
    where
        S: Service,
        F: Fn() -> S + Send + Sync + 'static,
    {
        self.service_with(factory, |_| {})
    }

    /// Registers a service and overrides what it declared (name, schedule, policies...).
    ///
    /// What `define` sets here is the program's explicit choice: configuration (file or
    /// environment) does not change it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[derive(Default)] struct Cleanup;
    /// # impl sora::Service for Cleanup {}
    /// let builder = sora::Runtime::builder().service_with(Cleanup::default, |def| {
    ///     def.name("cleanup-eu").periodic(sora::Schedule::every(Duration::from_secs(60)));
    /// });
    /// # drop(builder);
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if a service of the same name is already registered.
    #[track_caller]
    pub fn service_with<S, F, D>(mut self, factory: F, define: D) -> Self
    where
        S: Service,
        F: Fn() -> S + Send + Sync + 'static,
        D: FnOnce(&mut Definition<S>),
    {
        self.register(PendingService::new(factory, define));
        self
    }

    /// Declares a service that other nodes of the cluster run: nothing of it runs here, and its
    /// configuration is not read, but [`RuntimeHandle::service`](crate::RuntimeHandle::service)
    /// gives a typed handle whose calls go to a node that serves it.
    ///
    /// Only its declared actions ([`Definition::action`]) cross nodes; `define` may rename it
    /// as the other nodes name it.
    ///
    /// # Panics
    ///
    /// Panics if a service of the same name is already registered.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    #[track_caller]
    pub fn remote<S: Service>(self) -> Self {
        self.remote_with::<S, _>(|_| {})
    }

    /// As [`remote`](Self::remote), with `define` applied to the declaration (a name).
    ///
    /// # Panics
    ///
    /// Panics if a service of the same name is already registered.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    #[track_caller]
    pub fn remote_with<S, D>(mut self, define: D) -> Self
    where
        S: Service,
        D: FnOnce(&mut Definition<S>),
    {
        self.register(PendingService::remote(define));
        self
    }

    /// Adds a service, refusing a second one of the same name.
    #[track_caller]
    fn register<S: Service>(&mut self, pending: PendingService<S>) {
        assert!(
            self.names.insert(pending.name().to_owned()),
            "service name `{}` is registered twice",
            pending.name()
        );
        self.pending.push(Box::new(pending));
    }

    /// Registers every service of the program that [`register!`](crate::register) registered,
    /// wherever it is defined, except those registered here explicitly (under the same name)
    /// and those left out with [`without`](Self::without).
    ///
    /// Discovered services start after explicit ones of the same kind and priority, in the
    /// order of their names.
    ///
    /// # Panics
    ///
    /// [`start`](Self::start) panics if two registered services have the same name.
    pub fn discover(mut self) -> Self {
        self.discover = true;
        self
    }

    /// Leaves out the service of this name: it is not registered, even if discovered.
    pub fn without(mut self, name: impl Into<String>) -> Self {
        self.without.push(name.into());
        self
    }

    /// Gives the plane `name` its settings, over its table in the configuration; the plane's
    /// own builder method (`http`, `cluster`) calls this. The last call for a plane wins.
    #[cfg_attr(not(any(feature = "http", feature = "cluster")), allow(dead_code))]
    pub(crate) fn plane<T: std::any::Any + Send>(
        mut self,
        name: &'static str,
        settings: T,
    ) -> Self {
        self.explicit.retain(|(n, _)| *n != name);
        self.explicit.push((name, Box::new(settings)));
        self
    }

    /// Where configuration comes from (default: nowhere, everything from code). Read and
    /// checked when the runtime starts.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sora::Error> {
    /// use sora::config::Config;
    ///
    /// let runtime = sora::Runtime::builder()
    ///     .config(Config::toml("shutdown_timeout = \"10s\""))
    ///     .start()
    ///     .await?;
    /// # runtime.shutdown().await }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Which services restart together when one fails (default [`Strategy::OneForOne`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.overrides.strategy = Some(strategy);
        self
    }

    /// How long in-flight work may take to finish at shutdown (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.shutdown_timeout = Some(timeout);
        self
    }

    /// How long the whole start may take, start-up services and the others (default 2 min).
    /// When it runs out, the start fails with [`Error::StartupFailed`] naming the service that
    /// was starting, and whatever had started is stopped.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.startup_timeout = Some(timeout);
        self
    }

    /// Whether services run at all (default `true`). With `false`, every service is registered
    /// and reported disabled, and none starts.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.overrides.enabled = Some(enabled);
        self
    }

    /// The environment the runtime runs in (default [`Environment::Production`]); services not
    /// meant for it are disabled.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.overrides.environment = Some(environment);
        self
    }

    /// Whether a failed start-up service stops the runtime's start (default `true`). A start-up
    /// service that continues on failure never does.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.overrides.fail_fast = Some(fail_fast);
        self
    }

    /// How many runs each service keeps in its history (default 100) and for how long
    /// (default 24 hours); `[history] runs` and `keep` in the configuration. A count of `0`
    /// keeps none.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = sora::Runtime::builder().run_history(1_000, Duration::from_secs(3600));
    /// # drop(builder);
    /// ```
    pub fn run_history(mut self, runs: usize, keep: Duration) -> Self {
        self.overrides.history = Some((runs, keep));
        self
    }

    /// The runtime-wide settings: builder over configuration over defaults.
    fn runtime_config(&self, loaded: &Loaded) -> RuntimeConfig {
        let (o, f, d) = (&self.overrides, &loaded.file, RuntimeConfig::default());
        RuntimeConfig {
            strategy: o.strategy.or(f.strategy).unwrap_or(d.strategy),
            shutdown_timeout: o
                .shutdown_timeout
                .or(f.shutdown_timeout)
                .unwrap_or(d.shutdown_timeout),
            startup_timeout: o
                .startup_timeout
                .or(f.startup_timeout)
                .unwrap_or(d.startup_timeout),
            fail_fast: o.fail_fast.or(f.fail_fast).unwrap_or(d.fail_fast),
            enabled: o.enabled.or(f.enabled).unwrap_or(d.enabled),
            environment: o
                .environment
                .or(loaded.file.environment)
                .unwrap_or(d.environment),
            history: {
                let file = loaded.file.history.as_ref();
                let (runs, keep) = o.history.unzip();
                HistoryLimits {
                    runs: runs.or(file.and_then(|h| h.runs)).unwrap_or(d.history.runs),
                    keep: keep.or(file.and_then(|h| h.keep)).unwrap_or(d.history.keep),
                }
            },
        }
    }

    /// Every service to register, configured, in start order.
    fn resolve(mut self) -> Result<Resolved, Error> {
        let loaded = self.config.read()?;
        #[cfg(not(feature = "http"))]
        loaded.refuse_http()?;
        #[cfg(not(feature = "cluster"))]
        loaded.refuse_cluster()?;
        let config = self.runtime_config(&loaded);
        if self.discover {
            let mut discovered = HashSet::new();
            for found in crate::discovery::all() {
                let name = found.name().to_owned();
                assert!(
                    discovered.insert(name.clone()),
                    "two services registered with `sora::register!` are named `{name}`"
                );
                // An explicit registration of the same name wins.
                if !self.names.contains(&name) {
                    self.pending.push(found);
                }
            }
        }
        let without: Vec<String> = self
            .without
            .iter()
            .map(|n| config::service_key(n))
            .collect();
        let mut pending: Vec<_> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|p| !without.contains(&config::service_key(p.name())))
            .collect();
        let known: Vec<String> = pending
            .iter()
            .map(|p| config::service_key(p.name()))
            .chain(without)
            .collect();
        if let Some(err) = loaded.unknown_services(&known).next() {
            return Err(err);
        }
        // Every service's keys first, then the settings, which are the services' own business.
        for service in &mut pending {
            service.configure(&loaded, &config)?;
        }
        for service in &mut pending {
            service.read_settings(&loaded)?;
        }
        // Start-up services first, by order; then the others by descending priority; ties keep
        // registration order (the sort is stable).
        pending.sort_by_key(|p| p.start_key());
        let mut planes = Vec::new();
        for kind in self.planes {
            let at = self.explicit.iter().position(|(n, _)| *n == kind.name);
            let explicit = at.map(|at| self.explicit.swap_remove(at).1);
            planes.extend((kind.resolve)(&loaded, explicit)?);
        }
        Ok(Resolved {
            config,
            pending,
            planes,
            store: self.store.take(),
            store_path: loaded.file.store.as_ref().and_then(|s| s.path.clone()),
            retention: {
                let file = loaded.file.store.as_ref();
                let default = crate::jobs::Retention::default();
                crate::jobs::Retention {
                    completed: file
                        .and_then(|s| s.keep_completed)
                        .unwrap_or(default.completed),
                    dead: file.and_then(|s| s.keep_dead).unwrap_or(default.dead),
                }
            },
        })
    }

    /// Reads the configuration, spawns the supervision tree and starts every enabled service:
    /// start-up services first, in ascending order, then the others by descending priority and
    /// in registration order.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the configuration is bad (nothing is started then);
    /// [`Error::StartupFailed`] if a start-up service failed and the runtime is fail-fast, or
    /// if the start outlasted the runtime's start-up timeout;
    /// whatever had started is stopped in order first.
    pub async fn start(self) -> Result<Runtime, Error> {
        let Resolved {
            config,
            pending,
            mut planes,
            store,
            store_path,
            retention,
        } = self.resolve()?;
        let shared = RuntimeShared::new(config);
        for plane in &mut planes {
            plane.bind(&shared).await?;
        }
        let services: Vec<Arc<dyn ErasedService>> = pending
            .into_iter()
            .map(|p| p.build(shared.clone()))
            .collect();
        let jobs = match super::store::choose(store, store_path, &services) {
            Some(choice) => Some(super::store::open(choice, retention, &shared, &services)?),
            None => None,
        };

        let startup_error = |reason: String| Error::StartupFailed {
            service: "supervisor".into(),
            reason,
        };
        let args = SupervisorArgs {
            shared: shared.clone(),
            services,
        };
        let (supervisor, _) = Supervisor::spawn(None, Supervisor, args)
            .await
            .map_err(|e| startup_error(e.to_string()))?;
        let _ = shared.supervisor.set(supervisor.clone());
        let handle = RuntimeHandle::from_shared(shared.clone());
        for plane in &mut planes {
            plane.prepare(&handle);
        }
        let runtime = Runtime { handle };
        match supervisor.call(SupervisorMessage::Start, None).await {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
                for plane in &mut planes {
                    if let Err(err) = plane.join(&runtime.handle).await {
                        let _ = runtime.shutdown().await;
                        return Err(err);
                    }
                }
                shared.phase.store(RUNNING, Ordering::Release);
                if let Some(jobs) = &jobs {
                    jobs.start().await;
                }
                for plane in planes {
                    plane.serve(&runtime.handle);
                }
                Ok(runtime)
            }
            Ok(ractor::rpc::CallResult::Success(Err(err))) => {
                let _ = supervisor.wait(Some(Duration::from_secs(5))).await;
                shared.phase.store(super::STOPPED, Ordering::Release);
                Err(err)
            }
            _ => Err(startup_error(
                "the supervisor stopped during start-up".into(),
            )),
        }
    }
}
