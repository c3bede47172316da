use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::Actor;

use super::{RUNNING, Runtime, RuntimeConfig, RuntimeHandle, RuntimeShared};
use crate::Error;
use crate::handle::{ErasedService, ServiceCell};
use crate::service::{Definition, Service};
use crate::supervisor::{Strategy, Supervisor, SupervisorArgs, SupervisorMessage};

type Registration = Box<dyn FnOnce(Arc<RuntimeShared>) -> Arc<dyn ErasedService> + Send>;

/// Builds a [`Runtime`]: its services and its runtime-wide settings.
#[must_use = "a runtime does nothing until it is started"]
pub struct RuntimeBuilder {
    registrations: Vec<(Option<i32>, Registration)>,
    names: HashSet<String>,
    config: RuntimeConfig,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("services", &self.names)
            .field("config", &self.config)
            .finish()
    }
}

impl RuntimeBuilder {
    pub(crate) fn new() -> Self {
        RuntimeBuilder {
            registrations: Vec::new(),
            names: HashSet::new(),
            config: RuntimeConfig::default(),
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
        let mut def = Definition::<S>::of();
        define(&mut def);
        assert!(
            self.names.insert(def.name.clone()),
            "service name `{}` is registered twice",
            def.name
        );
        let order = def.startup.as_ref().map(|s| s.order);
        self.registrations.push((
            order,
            Box::new(move |shared| Arc::new(ServiceCell::new(def, Box::new(factory), shared))),
        ));
        self
    }

    /// Which services restart together when one fails (default [`Strategy::OneForOne`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// How long in-flight work may take to finish at shutdown (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Whether a failed start-up service stops the runtime's start (default `true`). A start-up
    /// service that continues on failure never does.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.config.fail_fast = fail_fast;
        self
    }

    /// Spawns the supervision tree and starts every service: start-up services first, in
    /// ascending order, then the others in registration order.
    ///
    /// # Errors
    ///
    /// [`Error::StartupFailed`] if a start-up service failed and the runtime is fail-fast;
    /// whatever had started is stopped in order first.
    pub async fn start(self) -> Result<Runtime, Error> {
        let shared = RuntimeShared::new(self.config);
        let mut registrations: Vec<_> = self.registrations.into_iter().enumerate().collect();
        // Start-up services first, by order; ties and the rest keep registration order.
        registrations.sort_by_key(|(idx, (order, _))| (order.is_none(), order.unwrap_or(0), *idx));
        let services: Vec<Arc<dyn ErasedService>> = registrations
            .into_iter()
            .map(|(_, (_, register))| register(shared.clone()))
            .collect();

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
        let runtime = Runtime { handle };
        match supervisor.call(SupervisorMessage::Start, None).await {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
                shared.phase.store(RUNNING, Ordering::Release);
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
