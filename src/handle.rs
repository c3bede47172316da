//! Handles: what a caller holds to act on a service.
//!
//! [`ServiceHandle<S>`] is typed: its actions are checked by the compiler. [`ServiceRef`] is
//! untyped, for callers that know a service only by name (the HTTP plane, the CLI, other nodes):
//! it calls actions by name with encoded parameters.
//!
//! Both survive restarts of their service: they point at the service, not at one of its actors,
//! and the supervisor moves the service to each new actor. Both are cheap to clone.
//!
//! # Examples
//!
//! ```
//! # use std::time::Duration;
//! # use sora::{Action, BoxError, Context, Handler, Runtime, Service};
//! # #[derive(Default)] struct Translator;
//! # impl Service for Translator {}
//! # struct Translate(String);
//! # impl Action for Translate { const NAME: &'static str = "translate"; type Reply = String; }
//! # impl Handler<Translate> for Translator {
//! #     async fn handle(&self, t: Translate, _: &Context) -> Result<String, BoxError> { Ok(t.0) }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
//! let runtime = Runtime::builder().service(Translator::default).start().await?;
//! let translator = runtime.service::<Translator>()?;
//! let text = translator
//!     .act(Translate("hola".into()))
//!     .priority(10)
//!     .timeout(Duration::from_secs(30))
//!     .correlation_id("upload-42")
//!     .await?;
//! assert_eq!(text, "hola");
//! # runtime.shutdown().await }
//! ```

mod enqueue;
mod request;

use std::sync::Arc;

use ractor::ActorRef;
use serde::de::DeserializeOwned;

#[cfg(feature = "cluster")]
pub(crate) use enqueue::by_name as enqueue_by_name;
pub use enqueue::{EnqueueRequest, JobTicket};
pub use request::{ActRequest, CommandRequest, Then};

use crate::Error;
use crate::action::{Action, CallOptions, Handler};
use crate::codec::Format;
use crate::event::{Chain, Decoded, Event, On, Target};
use crate::host::{ErasedService, ServiceCell, ServiceMessage};
use crate::service::{Command, Health, Service};
use crate::status::{Run, ServiceInfo, ServiceStatus};

/// A typed handle to a service of type `S`.
pub struct ServiceHandle<S: Service> {
    cell: Arc<ServiceCell<S>>,
}

impl<S: Service> Clone for ServiceHandle<S> {
    fn clone(&self) -> Self {
        ServiceHandle {
            cell: self.cell.clone(),
        }
    }
}

impl<S: Service> std::fmt::Debug for ServiceHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("service", &self.cell.name())
            .finish()
    }
}

impl<S: Service> ServiceHandle<S> {
    pub(crate) fn new(cell: Arc<ServiceCell<S>>) -> Self {
        ServiceHandle { cell }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        self.cell.name()
    }

    /// Whether this handle's calls go to another node of the cluster: the type was declared
    /// with [`RuntimeBuilder::remote`](crate::RuntimeBuilder::remote), or it is disabled here
    /// and another node serves it.
    pub fn is_remote(&self) -> bool {
        calls_go_remote(&self.cell.shared)
    }

    /// Starts a typed action call; set options on the request, then `.await` it.
    ///
    /// # Errors
    ///
    /// The awaited request fails with [`Error::Timeout`], [`Error::ActionFailed`],
    /// [`Error::ServiceFailed`], [`Error::ServiceUnavailable`] or [`Error::ShuttingDown`].
    pub fn act<A>(&self, action: A) -> ActRequest<S, A>
    where
        S: Handler<A>,
        A: Action,
    {
        ActRequest::new(self.cell.clone(), action)
    }

    /// Starts enqueueing a durable action (see
    /// [`Definition::durable`](crate::Definition::durable)); set options on the request, then
    /// `.await` it. It answers as soon as the job is committed, with a [`JobTicket`] to follow
    /// it by.
    ///
    /// # Errors
    ///
    /// The awaited request fails with [`Error::NotDurable`] if the action is not durable,
    /// [`Error::Store`] if the job cannot be committed, and [`Error::ShuttingDown`].
    pub fn enqueue<A>(&self, action: A) -> EnqueueRequest<S, A>
    where
        S: Handler<A>,
        A: Action + serde::Serialize,
        A::Reply: DeserializeOwned,
    {
        EnqueueRequest::new(self.cell.clone(), action)
    }

    /// Sends a command and waits until it has run.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCommand`] if the service does not accept it, and the errors of
    /// [`act`](Self::act).
    pub fn command(&self, command: Command) -> CommandRequest {
        CommandRequest::new(Callee::Local(self.cell.clone()), command)
    }

    /// Runs the service's periodic work now (or once more after the run in progress).
    pub fn trigger(&self) -> CommandRequest {
        self.command(Command::TriggerNow)
    }

    /// Asks the service to process a batch.
    pub fn process_batch(&self, size: Option<usize>, filter: Option<String>) -> CommandRequest {
        self.command(Command::ProcessBatch { size, filter })
    }

    /// Asks the service to check its queue.
    pub fn check_queue(&self) -> CommandRequest {
        self.command(Command::CheckQueue)
    }

    /// Sends a command without waiting for it to run (fire and forget).
    ///
    /// # Errors
    ///
    /// Fails only when the command cannot be delivered: [`Error::ShuttingDown`],
    /// [`Error::ServiceUnavailable`] or [`Error::ServiceFailed`]. A command the service does not
    /// accept is dropped with a warning in the log.
    pub fn tell(&self, command: Command) -> Result<(), Error> {
        ErasedService::tell(&*self.cell, command)
    }

    /// Pauses a periodic service's schedule: its ticks are skipped (and counted as skipped)
    /// until [`resume`](Self::resume); status reports `paused`. A run in progress finishes, and
    /// an explicit trigger still runs. The pause outlasts restarts.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCommand`] if the service is not periodic, [`Error::ServiceDisabled`] if
    /// it is disabled.
    pub fn pause(&self) -> Result<(), Error> {
        ErasedService::set_paused(&*self.cell, true)
    }

    /// Resumes a paused schedule; the next tick runs as scheduled.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), Error> {
        ErasedService::set_paused(&*self.cell, false)
    }

    /// The service's status snapshot. Answers at once, even while the service is busy.
    ///
    /// # Errors
    ///
    /// Never fails for a local service; the `Result` leaves room for remote ones.
    pub async fn status(&self) -> Result<ServiceStatus, Error> {
        ErasedService::status_routed(&*self.cell).await
    }

    /// The service's health: its own check, bounded by a timeout, and what supervision knows.
    ///
    /// # Errors
    ///
    /// Never fails for a local service; the `Result` leaves room for remote ones.
    pub async fn health(&self) -> Result<Health, Error> {
        ErasedService::health_routed(self.cell.clone()).await
    }

    /// What the service declared.
    ///
    /// # Errors
    ///
    /// Never fails for a local service; the `Result` leaves room for remote ones.
    pub async fn info(&self) -> Result<ServiceInfo, Error> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.cell.remote() {
            return remote.info().await;
        }
        Ok(self.cell.info())
    }

    /// The service's last runs, newest first: its periodic runs, commands, attempts of durable
    /// jobs and in-memory actions that failed, as many and as old as `[history]` keeps (100
    /// runs over 24 hours by default). See [`Run`] for an example.
    ///
    /// # Errors
    ///
    /// [`Error::ServiceUnavailable`] for a service that runs on other nodes: they keep its runs.
    pub fn runs(&self) -> Result<Vec<Run>, Error> {
        runs_of(ErasedService::shared(&*self.cell), usize::MAX)
    }

    /// The actor reference of the service's current incarnation, to send it
    /// [`ServiceMessage`]s with ractor's own `cast` and `call`. `None` while it restarts or after
    /// it has stopped. Unlike the handle, a reference does not follow restarts.
    pub fn actor_ref(&self) -> Option<ActorRef<ServiceMessage<S>>> {
        self.cell.actor_ref()
    }

    /// Starts a subscription chain on the service's events with a clause for `E` (see
    /// [`event`](crate::event)).
    ///
    /// The chain fails at `subscribe` with [`Error::UnknownEvent`] if the service does not
    /// declare `E`.
    pub fn on<E: Event>(&self) -> On<E, S> {
        Chain::new(self.cell.shared.runtime.events.clone(), self.target()).on::<E>()
    }

    fn target(&self) -> Target {
        Target::Service(self.cell.clone())
    }

    /// An untyped reference to the same service, for code that works by name.
    pub fn untyped(&self) -> ServiceRef {
        ServiceRef {
            inner: Callee::Local(self.cell.clone()),
        }
    }
}

/// An untyped handle to a service, for callers that know it by name.
///
/// In a cluster it may stand for a service of another node (see [`cluster`](crate::cluster)).
#[derive(Clone)]
pub struct ServiceRef {
    inner: Callee,
}

/// Where the calls of a [`ServiceRef`] or a [`CommandRequest`] go.
#[derive(Clone)]
pub(crate) enum Callee {
    /// A service registered in this runtime (which may route to another node when it does not
    /// run here).
    Local(Arc<dyn ErasedService>),
    /// A service that only other nodes know.
    #[cfg(feature = "cluster")]
    Remote(Arc<dyn crate::remote::Remote>),
}

/// Whether calls to the service of `shared` leave this node.
fn calls_go_remote(shared: &crate::host::ServiceShared) -> bool {
    #[cfg(feature = "cluster")]
    return shared.remote || crate::remote::served_elsewhere(shared);
    #[cfg(not(feature = "cluster"))]
    return {
        let _ = shared;
        false
    };
}

/// Up to `limit` of the runs the service of `shared` kept here, newest first.
fn runs_of(shared: &crate::host::ServiceShared, limit: usize) -> Result<Vec<Run>, Error> {
    if calls_go_remote(shared) {
        return Err(runs_elsewhere(&shared.name));
    }
    Ok(shared.history.newest(limit, std::time::SystemTime::now()))
}

/// Why a service that runs on other nodes has no runs here.
fn runs_elsewhere(service: &str) -> Error {
    Error::ServiceUnavailable {
        service: service.to_owned(),
        reason: "it runs on other nodes, which keep its runs; ask there".into(),
    }
}

impl Callee {
    fn name(&self) -> &str {
        match self {
            Callee::Local(local) => local.name(),
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.name(),
        }
    }

    pub(crate) async fn command(self, command: Command, options: CallOptions) -> Result<(), Error> {
        match self {
            Callee::Local(local) => local.command(command, options).await,
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.command(command, options).await,
        }
    }
}

impl std::fmt::Debug for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRef")
            .field("service", &self.inner.name())
            .field("remote", &self.is_remote())
            .finish()
    }
}

impl ServiceRef {
    pub(crate) fn new(inner: Arc<dyn ErasedService>) -> Self {
        ServiceRef {
            inner: Callee::Local(inner),
        }
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn remote(remote: Arc<dyn crate::remote::Remote>) -> Self {
        ServiceRef {
            inner: Callee::Remote(remote),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Whether this handle's calls go to another node of the cluster: the service runs only
    /// on other nodes, its type was declared with
    /// [`RuntimeBuilder::remote`](crate::RuntimeBuilder::remote), or it is disabled here and
    /// another node serves it.
    pub fn is_remote(&self) -> bool {
        match &self.inner {
            Callee::Local(local) => calls_go_remote(local.shared()),
            #[cfg(feature = "cluster")]
            Callee::Remote(_) => true,
        }
    }

    /// Starts a subscription chain on the service's events with a clause for the event called
    /// `event`, its payload decoded from JSON into `T` (`serde_json::Value` takes any payload).
    ///
    /// The chain fails at `subscribe` with [`Error::UnknownEvent`] if the service emits no event
    /// of that name.
    pub fn on_named<T>(&self, event: &str) -> On<T, (), Decoded>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.chain().on_named(event)
    }

    /// Starts a subscription chain on the service's events with a clause for `E`.
    pub fn on<E: Event>(&self) -> On<E> {
        self.chain().on::<E>()
    }

    /// Starts a subscription chain with a clause for every event the service emits, each
    /// payload decoded from JSON into `T`.
    pub fn on_any<T>(&self) -> On<T, (), Decoded>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.chain().on_any()
    }

    fn chain(&self) -> Chain {
        match &self.inner {
            Callee::Local(local) => {
                let events = local.shared().runtime.events.clone();
                Chain::new(events, Target::Service(local.clone()))
            }
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => Chain::new(remote.events(), Target::Remote(remote.clone())),
        }
    }

    /// Calls an action by name with JSON parameters and returns its JSON reply.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownAction`] if the service declares no such action,
    /// [`Error::BadParameters`] (naming the field) if `params` does not fit the action's type,
    /// and the errors of [`ServiceHandle::act`].
    pub async fn act_json(
        &self,
        action: &str,
        params: serde_json::Value,
        options: CallOptions,
    ) -> Result<serde_json::Value, Error> {
        let bytes = serde_json::to_vec(&params).map_err(|e| Error::BadParameters {
            service: self.name().to_owned(),
            action: action.to_owned(),
            field: None,
            message: e.to_string(),
        })?;
        let reply = self
            .act_encoded(action, Format::Json, bytes, options)
            .await?;
        serde_json::from_slice(&reply).map_err(|e| Error::Encode {
            service: self.name().to_owned(),
            action: action.to_owned(),
            message: e.to_string(),
        })
    }

    /// Whether `action` is a durable action of this service that runs here, where its jobs are
    /// kept (see [`Definition::durable`](crate::Definition::durable)).
    pub fn is_durable(&self, action: &str) -> bool {
        match &self.inner {
            Callee::Local(local) => {
                local.durable(action).is_some() && !calls_go_remote(local.shared())
            }
            #[cfg(feature = "cluster")]
            Callee::Remote(_) => false,
        }
    }

    /// Enqueues a durable action by name with JSON parameters; answers once the job is
    /// committed (or names the kept job its key matches).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownAction`], [`Error::BadParameters`] (before anything is committed),
    /// and the errors of [`ServiceHandle::enqueue`].
    pub async fn enqueue_json(
        &self,
        action: &str,
        params: serde_json::Value,
        options: crate::JobOptions,
    ) -> Result<crate::store::Enqueued, Error> {
        let bytes = serde_json::to_vec(&params).map_err(|e| Error::BadParameters {
            service: self.name().to_owned(),
            action: action.to_owned(),
            field: None,
            message: e.to_string(),
        })?;
        match &self.inner {
            Callee::Local(local) => {
                #[cfg(feature = "cluster")]
                if let Some(remote) = crate::remote::route(local.shared()) {
                    return Ok(remote.enqueue(action, bytes, options).await?.1);
                }
                enqueue::by_name(local, action, bytes, options).await
            }
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => Ok(remote.enqueue(action, bytes, options).await?.1),
        }
    }

    /// Calls an action by name with parameters encoded in `format`; the reply comes back in the
    /// same format. This is the seam that remote nodes call through.
    ///
    /// # Errors
    ///
    /// As [`act_json`](Self::act_json).
    pub async fn act_encoded(
        &self,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> Result<Vec<u8>, Error> {
        match &self.inner {
            Callee::Local(local) => {
                local
                    .clone()
                    .act_encoded(action, format, params, options)
                    .await
            }
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.act_encoded(action, format, params, options).await,
        }
    }

    /// Sends a command and waits until it has run; set options on the request, then `.await`
    /// it.
    ///
    /// # Errors
    ///
    /// As [`ServiceHandle::command`].
    pub fn command(&self, command: Command) -> CommandRequest {
        CommandRequest::new(self.inner.clone(), command)
    }

    /// Sends a command without waiting (fire and forget).
    ///
    /// # Errors
    ///
    /// As [`ServiceHandle::tell`].
    pub fn tell(&self, command: Command) -> Result<(), Error> {
        match &self.inner {
            Callee::Local(local) => local.tell(command),
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.tell(command),
        }
    }

    /// Pauses a periodic service's schedule; see [`ServiceHandle::pause`].
    ///
    /// # Errors
    ///
    /// As [`ServiceHandle::pause`].
    pub fn pause(&self) -> Result<(), Error> {
        self.set_paused(true)
    }

    /// Resumes a paused schedule; see [`ServiceHandle::resume`].
    ///
    /// # Errors
    ///
    /// As [`ServiceHandle::pause`].
    pub fn resume(&self) -> Result<(), Error> {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> Result<(), Error> {
        match &self.inner {
            Callee::Local(local) => local.set_paused(paused),
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.set_paused(paused),
        }
    }

    /// The service's status snapshot.
    ///
    /// # Errors
    ///
    /// Never fails for a service that runs here; for one of another node, the errors of a
    /// call to it.
    pub async fn status(&self) -> Result<ServiceStatus, Error> {
        match &self.inner {
            Callee::Local(local) => local.status_routed().await,
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.status().await,
        }
    }

    /// The service's health.
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status).
    pub async fn health(&self) -> Result<Health, Error> {
        match &self.inner {
            Callee::Local(local) => local.clone().health_routed().await,
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.health().await,
        }
    }

    /// What the service declared.
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status).
    pub async fn info(&self) -> Result<ServiceInfo, Error> {
        match &self.inner {
            Callee::Local(local) => Ok(local.info()),
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => remote.info().await,
        }
    }

    /// Up to `limit` of the service's last runs, newest first (see [`ServiceHandle::runs`]).
    ///
    /// # Errors
    ///
    /// [`Error::ServiceUnavailable`] for a service that runs on other nodes: they keep its runs.
    pub fn runs(&self, limit: usize) -> Result<Vec<Run>, Error> {
        match &self.inner {
            Callee::Local(local) => runs_of(local.shared(), limit),
            #[cfg(feature = "cluster")]
            Callee::Remote(remote) => Err(runs_elsewhere(remote.name())),
        }
    }
}
