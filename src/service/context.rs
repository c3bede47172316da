use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use ractor::ActorCell;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::action::JobRun;
use crate::event::record::{Declared, Event, Meta, Record, Shared, Source};

/// What a service's hooks and handlers get from the runtime: who they are, the call they serve,
/// a cancellation signal, and the runtime itself (to act on other services).
#[derive(Clone)]
pub struct Context {
    life: Arc<Life>,
    correlation_id: Option<Arc<str>>,
    job: Option<Arc<JobRun>>,
}

/// What every context of one incarnation shares; built once per incarnation, so that a call's
/// context costs one reference count.
pub(crate) struct Life {
    pub(crate) shared: Arc<dyn Served>,
    pub(crate) cancel: CancellationToken,
    pub(crate) host: ActorCell,
}

/// What a context reaches of the service it serves, and through it of the runtime: the host's
/// shared state implements it (`host/shared.rs`), so that the model names no layer above it.
pub(crate) trait Served: Send + Sync + 'static {
    /// The service's name.
    fn name(&self) -> &Arc<str>;

    /// The events the service declared.
    fn declared(&self) -> &[Declared];

    /// The counters its events share.
    fn source(&self) -> &Arc<Source>;

    /// Its typed settings, if it declared some.
    fn settings(&self) -> Option<&(dyn Any + Send + Sync)>;

    /// Hands an emitted event to the runtime's bus; `false` once the bus has closed.
    fn publish(&self, record: Shared) -> bool;

    /// Why `event` cannot be emitted: the service does not declare it.
    fn unknown_event(&self, event: &str) -> Error;

    /// The service's `run` hook does no background work.
    fn no_background_work(&self);

    /// The host's state itself, for the layers that know its type (`Context::runtime`).
    fn as_any(&self) -> &dyn Any;
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("service", self.life.shared.name())
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context of an incarnation, serving no call in particular.
    pub(crate) fn new(life: Arc<Life>) -> Self {
        Context {
            life,
            correlation_id: None,
            job: None,
        }
    }

    /// The same context, serving a call with the correlation id `id`, an attempt of `job`
    /// when it is one.
    pub(crate) fn with_call(&self, id: Option<Arc<str>>, job: Option<Arc<JobRun>>) -> Self {
        Context {
            life: self.life.clone(),
            correlation_id: id,
            job,
        }
    }

    /// What the context serves.
    pub(crate) fn served(&self) -> &dyn Served {
        &*self.life.shared
    }

    /// The token that stops everything the incarnation runs.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.life.cancel
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        self.life.shared.name()
    }

    /// The correlation id of the call being handled, if it has one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The durable job that the call being handled is an attempt of: its id, key and attempt
    /// number. `None` for an in-memory call, and outside a handler.
    pub fn job(&self) -> Option<&JobRun> {
        self.job.as_deref()
    }

    /// Emits an event to every subscription of its name, carrying this service's name and the
    /// correlation id of the call being handled.
    ///
    /// It returns at once: the event bus fans the event out on its own, and a slow subscriber
    /// never holds up the emitter.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEvent`] if the service did not declare `E` with
    /// [`Definition::emits`](crate::Definition::emits), and [`Error::ShuttingDown`] once the
    /// runtime has stopped.
    pub fn emit<E: Event>(&self, event: E) -> Result<(), Error> {
        emit_from(&*self.life.shared, event, self.correlation_id.clone())
    }

    /// The service's settings, read from its `settings` table in the configuration (see
    /// [`Definition::settings`](crate::Definition::settings)), or `None` if it declared no
    /// settings of type `T`.
    pub fn settings<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.life.shared.settings()?.downcast_ref()
    }

    /// Resolves when the service is stopping or has failed: background work should return.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn cancelled(&self) {
        self.life.cancel.cancelled().await;
    }

    /// Whether the service is stopping or has failed.
    pub fn is_cancelled(&self) -> bool {
        self.life.cancel.is_cancelled()
    }

    /// Asks the runtime to stop this service in order: in-flight work finishes, the stop hook
    /// runs, and the restart policy decides what comes next (a permanent service is restarted).
    pub fn stop(&self) {
        self.life.host.stop(Some("stopped by the service".into()));
    }

    /// Called by the default `run` hook: the service has no background work of its own.
    pub(crate) fn no_background_work(&self) {
        self.life.shared.no_background_work();
    }
}

/// Emits `event` as the service of `shared` does: to every subscription of its name, carrying
/// the service's name and `correlation_id`. What [`Context::emit`] does, for the runtime's own
/// events of a service too (a job gone dead).
pub(crate) fn emit_from<E: Event>(
    shared: &dyn Served,
    event: E,
    correlation_id: Option<Arc<str>>,
) -> Result<(), Error> {
    let Some(declared) = shared
        .declared()
        .iter()
        .find(|d| d.type_id == TypeId::of::<E>())
    else {
        return Err(shared.unknown_event(E::NAME));
    };
    let source = shared.source();
    let meta = Meta {
        source: source.clone(),
        name: declared.name.clone(),
        correlation_id,
        node: None,
        id: AtomicU64::new(0),
        at: SystemTime::now(),
    };
    if !shared.publish(Arc::new(Record::new(meta, event))) {
        return Err(Error::ShuttingDown);
    }
    source.emitted.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
