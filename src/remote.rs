//! Services on other nodes, as the layers below the cluster see them: the traits the cluster
//! implements, so that a handle routes a call and the event chain subscribes across nodes
//! without naming the cluster. See `docs/design/layers.md`.

use std::any::{Any, TypeId};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::Error;
use crate::action::CallOptions;
use crate::codec::typed::{Erased, WireAction};
use crate::codec::{Bincode, Codec, DecodeError, Format};
use crate::event::EventsShared;
use crate::event::record::{Event, Meta, Record, Shared};
use crate::host::ServiceShared;
use crate::jobs::JobOptions;
use crate::service::{Command, Health};
use crate::status::{ServiceInfo, ServiceStatus};
use crate::store::{Enqueued, JobId};

/// This runtime's node of a cluster.
pub(crate) trait Node: Send + Sync + 'static {
    /// Whether a node of the cluster serves `service` now.
    fn serves(&self, service: &str) -> bool;

    /// `service`, by name, on whichever node serves it at each call.
    fn service(self: Arc<Self>, name: Arc<str>) -> Arc<dyn Remote>;

    /// Whether the node has reached its seeds (or has none).
    fn is_ready(&self) -> bool;

    /// Leaves the cluster's groups at once: other nodes stop routing here.
    fn leave_now(&self);

    /// Leaves the cluster and stops the node's actors.
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// The node itself, for the cluster's own use.
    fn as_any(&self) -> &(dyn Any + Send + Sync);

    /// The node itself, for the cluster's own API.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A service of another node.
pub(crate) trait Remote: Send + Sync + 'static {
    /// The service's name.
    fn name(&self) -> &str;

    /// A call by name, sent now; the future bounds the wait by the call's timeout.
    fn act_encoded(
        &self,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>>;

    /// A typed call, encoded through the action's declaration and sent now.
    fn act_typed(
        &self,
        action: &'static str,
        wire: WireAction,
        params: Erased,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Erased, Error>>;

    /// Enqueues a durable action by name with JSON `params` on a node that serves the
    /// service, sent now; answers once that node's store has committed it, with the node's
    /// name: the job is followed there ([`Remote::wait_job`]).
    fn enqueue(
        &self,
        action: &str,
        params: Vec<u8>,
        options: JobOptions,
    ) -> BoxFuture<'static, Result<(String, Enqueued), Error>>;

    /// Waits on `node`, which committed it, for job `id` to end; answers its reply as JSON.
    fn wait_job(&self, node: &str, id: JobId) -> BoxFuture<'static, Result<Vec<u8>, Error>>;

    /// A command, sent now; the future bounds the wait by the command's timeout.
    fn command(
        &self,
        command: Command,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<(), Error>>;

    /// A command that nobody waits for.
    fn tell(&self, command: Command) -> Result<(), Error>;

    /// Pauses or resumes the service's schedule.
    fn set_paused(&self, paused: bool) -> Result<(), Error>;

    /// The service's status, from the node that serves it.
    fn status(&self) -> BoxFuture<'_, Result<ServiceStatus, Error>>;

    /// The service's health, from the node that serves it.
    fn health(&self) -> BoxFuture<'_, Result<Health, Error>>;

    /// The service's description, from the node that serves it.
    fn info(&self) -> BoxFuture<'_, Result<ServiceInfo, Error>>;

    /// The bus that delivers this service's events here.
    fn events(&self) -> Arc<EventsShared>;

    /// Asks every node that serves the service to forward the events the clauses take.
    fn subscribe_events(&self, clauses: Vec<(u64, Wanted)>) -> BoxFuture<'_, Result<(), Error>>;

    /// Lets go of the clauses `ids`, which never reached the bus.
    fn forget_events(&self, ids: &[u64]);
}

/// Where a call to a service that does not run here goes: to another node, if one serves it.
///
/// The service's remote handle is made once and kept: it holds only the name and the node, and
/// each call picks a serving node when it is sent.
pub(crate) fn route(shared: &ServiceShared) -> Option<Arc<dyn Remote>> {
    let node = serving_node(shared)?;
    let remote = shared
        .elsewhere
        .get_or_init(|| node.clone().service(shared.name.clone()));
    Some(remote.clone())
}

/// Whether calls to the service of `shared` go to another node now.
pub(crate) fn served_elsewhere(shared: &ServiceShared) -> bool {
    serving_node(shared).is_some()
}

/// This runtime's node, if the service does not run here and another node serves it.
fn serving_node(shared: &ServiceShared) -> Option<&Arc<dyn Node>> {
    if shared.enabled {
        return None;
    }
    let node = shared.runtime.cluster.get()?;
    node.serves(&shared.name).then_some(node)
}

/// What one clause of a subscription asks of the nodes that serve its service.
#[derive(Clone)]
pub(crate) struct Wanted {
    /// The event's name, or `*` for every event.
    pub(crate) event: Arc<str>,
    /// For a typed clause: how its payload is decoded. A by-name clause takes JSON.
    pub(crate) typed: Option<TypedWire>,
}

/// How the events of another node are decoded here for the subscribers of one payload type:
/// captured where the type is known (`on::<E>()`), used where it is erased.
#[derive(Clone, Copy)]
pub(crate) struct TypedWire {
    pub(crate) type_id: TypeId,
    pub(crate) decode: fn(Meta, &[u8]) -> Result<Shared, DecodeError>,
    pub(crate) schema: fn() -> u64,
}

impl TypedWire {
    pub(crate) fn of<E: Event>() -> Self {
        TypedWire {
            type_id: TypeId::of::<E>(),
            decode: |meta, bytes| {
                let payload = Bincode::decode::<E>(bytes)?;
                Ok(Arc::new(Record::new(meta, payload)))
            },
            schema: crate::codec::typed::event_schema::<E>,
        }
    }
}
