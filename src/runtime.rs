//! The runtime: builds the supervision tree, hands out handles, shuts down in order.
//!
//! ```text
//! Runtime::builder()...start()
//!   └── root supervisor (actor)
//!         ├── registry (actor)       name / type -> service, mirrored into DashMaps
//!         ├── start-up services      started first, in order, each within its timeout
//!         └── service hosts          one supervised actor per service
//! ```
//!
//! # Shutdown
//!
//! [`RuntimeHandle::shutdown`] (and Ctrl-C or SIGTERM under [`Runtime::run`]) stops taking work at
//! once: new calls get [`Error::ShuttingDown`]. Then services stop in reverse start order: each
//! refuses its queued calls, lets in-flight work finish until the shutdown timeout, and runs its
//! stop hook within its stop timeout.

mod builder;
mod jobs;
pub(crate) mod plane;
mod store;

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) use crate::system::{RUNNING, RuntimeConfig, RuntimeShared, SHUTTING_DOWN, STOPPED};
pub use builder::RuntimeBuilder;
pub(crate) use builder::{Pending, PendingService};
pub use jobs::Jobs;
pub use store::DEFAULT_STORE_PATH;

use crate::Error;
use crate::event::{Chain, Decoded, Event, Events, On, Target};
use crate::handle::{ServiceHandle, ServiceRef};
use crate::host::{ErasedService, ServiceCell, ServiceShared};
use crate::registry::RegistryMessage;
use crate::service::environment::Environment;
use crate::service::{Health, Service, short_type_name};
use crate::supervisor::SupervisorMessage;

/// How long shutdown waits for the control plane's open requests once the services are down.
const HTTP_STOP: Duration = Duration::from_secs(5);

impl RuntimeShared {
    async fn shutdown(&self) -> Result<(), Error> {
        let was = self.phase.fetch_max(SHUTTING_DOWN, Ordering::AcqRel);
        if was < SHUTTING_DOWN {
            if let Some(supervisor) = self.supervisor.get() {
                let stops: Duration = self.by_name.iter().map(|s| s.stop_timeout() * 2).sum();
                let limit = self.config.shutdown_timeout + stops + Duration::from_secs(5);
                let _ = supervisor
                    .call(SupervisorMessage::Shutdown, Some(limit))
                    .await;
                supervisor.stop(None);
                let _ = supervisor.wait(Some(Duration::from_secs(5))).await;
            }
            self.finish(Ok(()));
        }
        let outcome = self.wait().await;
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.get() {
            cluster.stop().await;
        }
        self.stop_http().await;
        self.phase.store(STOPPED, Ordering::Release);
        outcome
    }

    /// Waits (a little) for the control plane to close its connections and stop listening.
    async fn stop_http(&self) {
        let task = self
            .http_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut task) = task {
            if tokio::time::timeout(HTTP_STOP, &mut task).await.is_err() {
                tracing::warn!("the control plane did not stop within {HTTP_STOP:?}; aborting it");
                task.abort();
            }
        }
    }
}

/// A running Sora runtime: the owner of the supervision tree.
///
/// Dereferences to [`RuntimeHandle`], where the methods to reach services live. Dropping a
/// runtime that has not been shut down kills its actors at once, without running stop hooks;
/// call [`shutdown`](RuntimeHandle::shutdown) for an orderly stop.
#[derive(Debug)]
pub struct Runtime {
    handle: RuntimeHandle,
}

impl Runtime {
    /// A cloneable handle to this runtime.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Runs until Ctrl-C or SIGTERM, or until the runtime stops by itself (a critical service
    /// could not be kept up), then shuts down in order.
    ///
    /// # Errors
    ///
    /// [`Error::CriticalFailure`] if a critical service stopped the runtime.
    pub async fn run(&self) -> Result<(), Error> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves, or until the runtime stops by itself, then shuts down in
    /// order. [`run`](Self::run) is this with Ctrl-C and SIGTERM as the signal.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default)] struct Monitor;
    /// # impl sora::Service for Monitor {}
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder().service(Monitor::default).start().await?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// stop.send(()).unwrap(); // an admin endpoint, a test, a deadline...
    /// runtime.run_until(async { let _ = stopped.await; }).await?;
    /// assert!(runtime.is_shutting_down());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::CriticalFailure`] if a critical service stopped the runtime.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested"),
            outcome = self.handle.shared.wait() => {
                self.handle.shared.shutdown().await?;
                return outcome;
            }
        }
        self.shutdown().await
    }
}

impl std::ops::Deref for Runtime {
    type Target = RuntimeHandle;

    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        if shared.phase.load(Ordering::Acquire) != STOPPED {
            shared.begin_shutdown();
            if let Some(supervisor) = shared.supervisor.get() {
                supervisor.kill();
            }
            #[cfg(feature = "cluster")]
            if let Some(cluster) = shared.cluster.get() {
                cluster.leave_now();
            }
        }
        shared.events.close();
        // Services point back at the runtime; clearing the tables breaks the cycle.
        shared.by_name.clear();
        shared.by_type.clear();
    }
}

/// A cloneable handle to a runtime: resolves services, reports readiness, shuts down.
#[derive(Clone)]
pub struct RuntimeHandle {
    pub(crate) shared: Arc<RuntimeShared>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("id", &self.shared.id)
            .field("services", &self.shared.by_name.len())
            .finish()
    }
}

impl RuntimeHandle {
    pub(crate) fn from_shared(shared: Arc<RuntimeShared>) -> Self {
        RuntimeHandle { shared }
    }

    /// The typed handle of the service of type `S` (the first registered, if there are several).
    ///
    /// Reads the registry's lock-free mirror; no message is sent.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownService`] if no service of that type is registered.
    pub fn service<S: Service>(&self) -> Result<ServiceHandle<S>, Error> {
        let found = self
            .shared
            .by_type
            .get(&TypeId::of::<S>())
            .map(|e| e.clone());
        found
            .and_then(downcast::<S>)
            .ok_or_else(|| Error::UnknownService {
                name: short_type_name::<S>().to_owned(),
            })
    }

    /// The typed handle of the service of type `S` called `name`, for types registered several
    /// times.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownService`] if no service of type `S` has that name.
    pub fn service_named<S: Service>(&self, name: &str) -> Result<ServiceHandle<S>, Error> {
        let found = self.shared.by_name.get(name).map(|e| e.clone());
        found
            .and_then(downcast::<S>)
            .ok_or_else(|| Error::UnknownService {
                name: name.to_owned(),
            })
    }

    /// Resolves the service of type `S` through the registry actor, the authoritative table.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownService`] if no service of that type is registered, and
    /// [`Error::ShuttingDown`] if the registry has stopped.
    pub async fn resolve<S: Service>(&self) -> Result<ServiceHandle<S>, Error> {
        if let Ok(handle) = self.service::<S>() {
            return Ok(handle);
        }
        let registry = self
            .shared
            .registry
            .load_full()
            .ok_or(Error::ShuttingDown)?;
        let found = ractor::call!(registry, RegistryMessage::ByType, TypeId::of::<S>())
            .map_err(|_| Error::ShuttingDown)?;
        found
            .and_then(downcast::<S>)
            .ok_or_else(|| Error::UnknownService {
                name: short_type_name::<S>().to_owned(),
            })
    }

    /// The untyped handle of the service called `name`: the one registered here, or, in a
    /// cluster, one that another node serves.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownService`] if no service has that name.
    pub fn service_by_name(&self, name: &str) -> Result<ServiceRef, Error> {
        if let Some(found) = self.shared.by_name.get(name) {
            return Ok(ServiceRef::new(found.clone()));
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.shared.cluster.get() {
            if cluster.serves(name) {
                let remote = cluster.clone().service(name.into());
                return Ok(ServiceRef::remote(remote));
            }
        }
        Err(Error::UnknownService {
            name: name.to_owned(),
        })
    }

    /// Resolves the service called `name` through the registry actor.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownService`] if no service has that name, and [`Error::ShuttingDown`] if
    /// the registry has stopped.
    pub async fn resolve_by_name(&self, name: &str) -> Result<ServiceRef, Error> {
        if let Ok(found) = self.service_by_name(name) {
            return Ok(found);
        }
        let registry = self
            .shared
            .registry
            .load_full()
            .ok_or(Error::ShuttingDown)?;
        let found = ractor::call!(registry, RegistryMessage::ByName, name.to_owned())
            .map_err(|_| Error::ShuttingDown)?;
        found
            .map(ServiceRef::new)
            .ok_or_else(|| Error::UnknownService {
                name: name.to_owned(),
            })
    }

    /// Every service, by name.
    pub fn services(&self) -> Vec<ServiceRef> {
        let mut all: Vec<ServiceRef> = self
            .shared
            .by_name
            .iter()
            .map(|e| ServiceRef::new(e.clone()))
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Starts a subscription chain with a clause for `E` from every service that emits it (see
    /// [`event`](crate::event)).
    ///
    /// The chain fails at `subscribe` with [`Error::UnknownEvent`] if no service declares `E`.
    pub fn on<E: Event>(&self) -> On<E> {
        self.chain().on::<E>()
    }

    /// Starts a subscription chain with a clause for the event called `event` from every
    /// service that emits it, its payload decoded from JSON into `T`.
    pub fn on_named<T>(&self, event: &str) -> On<T, (), Decoded>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.chain().on_named(event)
    }

    /// Starts a subscription chain with a clause for every event of every service, each
    /// payload decoded from JSON into `T` (`serde_json::Value` takes any).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sora::Error> {
    /// # let runtime = sora::Runtime::builder().start().await?;
    /// let all = runtime.on_any::<serde_json::Value>().stream().await?;
    /// # drop(all);
    /// # runtime.shutdown().await }
    /// ```
    pub fn on_any<T>(&self) -> On<T, (), Decoded>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.chain().on_any()
    }

    fn chain(&self) -> Chain {
        let services = self.shared.by_name.iter().map(|e| e.clone()).collect();
        Chain::new(self.shared.events.clone(), Target::Any(services))
    }

    /// The runtime's event bus: flush, subscription count, its actor.
    pub fn events(&self) -> Events {
        Events::new(self.shared.events.clone())
    }

    /// Whether the runtime is ready: start-up has finished and every service reports ready.
    pub async fn is_ready(&self) -> bool {
        if self.shared.phase.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        #[cfg(feature = "cluster")]
        if self.shared.cluster.get().is_some_and(|c| !c.is_ready()) {
            return false;
        }
        let services: Vec<_> = self.shared.by_name.iter().map(|e| e.clone()).collect();
        for service in services {
            if !service.ready().await {
                return false;
            }
        }
        true
    }

    /// The health of every service, by name.
    pub async fn health(&self) -> Vec<(String, Health)> {
        let mut out = Vec::new();
        for service in self.services() {
            let health = service
                .health()
                .await
                .unwrap_or_else(|e| Health::unhealthy(e.to_string()));
            out.push((service.name().to_owned(), health));
        }
        out
    }

    /// Where the HTTP control plane listens, if the runtime serves it: the bound address, so
    /// port 0 shows the port picked.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.shared.http_address.get().copied().flatten()
    }

    /// The environment the runtime runs in: from the builder, `SORA_ENV`, the configuration, or
    /// the default ([`Environment::Production`]).
    pub fn environment(&self) -> Environment {
        self.shared.config.environment
    }

    /// Whether the runtime has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Stops every service in reverse start order, within the shutdown timeout, and stops the
    /// runtime. Calling it again waits for the first call to finish.
    ///
    /// Do not await it from inside a service's handler: the shutdown waits for that handler.
    /// Use [`request_shutdown`](Self::request_shutdown) there.
    ///
    /// # Errors
    ///
    /// [`Error::CriticalFailure`] if a critical service had already stopped the runtime.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shared.shutdown().await
    }

    /// Starts an orderly shutdown without waiting for it.
    pub fn request_shutdown(&self) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _ = shared.shutdown().await;
        });
    }

    /// Waits until the runtime has stopped, and says how.
    ///
    /// # Errors
    ///
    /// [`Error::CriticalFailure`] if a critical service stopped it, [`Error::StartupFailed`] if it
    /// never started.
    pub async fn wait(&self) -> Result<(), Error> {
        self.shared.wait().await
    }
}

fn downcast<S: Service>(service: Arc<dyn ErasedService>) -> Option<ServiceHandle<S>> {
    service
        .into_any()
        .downcast::<ServiceCell<S>>()
        .ok()
        .map(ServiceHandle::new)
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

impl crate::service::Context {
    /// The runtime, to act on other services. Calls made through it from a handler inherit the
    /// handler's correlation id.
    pub fn runtime(&self) -> RuntimeHandle {
        let shared = self.served().as_any().downcast_ref::<ServiceShared>();
        let shared = shared.expect("a context serves a service of a host");
        RuntimeHandle::from_shared(shared.runtime.clone())
    }
}
