//! The gateway: the one actor of a node that other nodes talk to.
//!
//! It joins a process group per service this node runs, so that other nodes resolve a service by
//! name to the gateways that serve it. A request is served on a task of its own, through the
//! same by-name path as the HTTP plane, so the gateway's mailbox never waits on a service.

use std::sync::Arc;

use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use super::node::ClusterShared;
use super::wire::{self, Query, Reply, Request};
use crate::Error;
use crate::host::ErasedService;
use crate::system::RuntimeShared;

/// What a gateway receives: bincode envelopes (see `wire.rs`).
#[derive(RactorClusterMessage)]
pub(crate) enum GatewayMessage {
    /// A request that waits for its reply.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A request whose reply nobody reads.
    Tell(Vec<u8>),
    /// Events another node forwards to this one (`wire::WireEvents`).
    Events(Vec<u8>),
}

pub(crate) struct Gateway;

#[derive(Clone)]
pub(crate) struct GatewayArgs {
    pub(crate) runtime: Arc<RuntimeShared>,
    pub(crate) groups: Vec<String>,
}

impl Actor for Gateway {
    type Msg = GatewayMessage;
    type State = Arc<RuntimeShared>;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMessage>,
        args: GatewayArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        for group in args.groups {
            ractor::pg::join(group, vec![myself.get_cell()]);
        }
        // Group changes are how services of other nodes come and go.
        ractor::pg::monitor_scope(ractor::pg::DEFAULT_SCOPE.into(), myself.get_cell());
        Ok(args.runtime)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GatewayMessage>,
        _runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(ractor::pg::DEFAULT_SCOPE.into(), myself.get_id());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<GatewayMessage>,
        event: ractor::SupervisionEvent,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ProcessGroupChanged(_) = event {
            if let Some(cluster) = ClusterShared::of(runtime) {
                cluster.bump();
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<GatewayMessage>,
        message: GatewayMessage,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The request reaches its service here, in the order the link delivered it; only the
        // wait for the reply runs on a task of its own.
        match message {
            GatewayMessage::Call(bytes, port) => {
                let reply = serve(runtime, &bytes);
                let limit = ClusterShared::of(runtime)
                    .map_or(crate::codec::DECODE_LIMIT, |c| c.config.max_message_size);
                tokio::spawn(async move {
                    let answer = wire::encode(&reply.await);
                    let _ = port.send(wire::fits(answer, limit).unwrap_or_else(|len| {
                        // Sent, it would close the link: the caller hears why instead.
                        too_large(&bytes, len, limit)
                    }));
                });
            }
            GatewayMessage::Tell(bytes) => {
                let reply = serve(runtime, &bytes);
                tokio::spawn(async move {
                    if let Err(err) = reply.await {
                        tracing::debug!(%err, "a request from another node failed");
                    }
                });
            }
            // In the order they come: the order their node emitted them in.
            GatewayMessage::Events(bytes) => {
                if let Some(cluster) = ClusterShared::of(runtime) {
                    cluster.deliver(&bytes);
                }
            }
        }
        Ok(())
    }
}

/// The answer to the request in `bytes` whose reply is `len` bytes, over the `limit` of a
/// message between nodes.
fn too_large(bytes: &[u8], len: usize, limit: usize) -> Vec<u8> {
    let (service, action) = wire::decode_request(bytes)
        .map(|(_, request)| (request.service().to_owned(), request.label()))
        .unwrap_or_default();
    let reply: Reply = Err(Error::Encode {
        service,
        action,
        message: format!(
            "the reply is {len} bytes, more than the {limit} a node of the cluster takes in one \
             message"
        ),
    });
    wire::encode(&reply)
}

/// Serves one request from another node as a local caller would be served: the request is
/// delivered to its service before this returns; the future waits for the answer.
fn serve(runtime: &Arc<RuntimeShared>, bytes: &[u8]) -> BoxFuture<'static, Reply> {
    let request: Request = match wire::decode_request(bytes) {
        Ok((_from, request)) => request,
        Err(err) => {
            if let Some(cluster) = ClusterShared::of(runtime) {
                cluster.undecodable(wire::sender(bytes).as_deref(), "a request", &err);
            }
            let err = Error::Incompatible {
                node: local_node(runtime),
                reason: format!("the request could not be decoded: {err}"),
            };
            return ready(Err(err));
        }
    };
    if runtime.is_shutting_down() {
        return ready(Err(Error::ShuttingDown));
    }
    if let Request::Catalog = request {
        return ready(Ok(wire::encode(&catalog(runtime))));
    }
    let service = match local(runtime, request.service()) {
        Ok(service) => service,
        Err(err) => return ready(Err(err)),
    };
    match request {
        Request::Act {
            action,
            format,
            params,
            options,
            schema,
            ..
        } => {
            let ours = service.action_schema(&action);
            if let (Some(theirs), Some(ours)) = (schema, ours) {
                if theirs != ours {
                    return ready(Err(Error::Incompatible {
                        node: local_node(runtime),
                        reason: format!(
                            "the action `{}.{action}` has another schema on this node \
                             ({ours:016x}) than on the caller's ({theirs:016x}): its types differ \
                             between the two builds",
                            service.name()
                        ),
                    }));
                }
            }
            service.act_encoded(&action, format, params, options)
        }
        Request::Enqueue {
            action,
            params,
            key,
            delay,
            at,
            options,
            ..
        } => {
            let job = crate::JobOptions {
                key,
                delay,
                at,
                call: options,
            };
            Box::pin(async move {
                let enqueued =
                    crate::handle::enqueue_by_name(&service, &action, params, job).await?;
                let new = matches!(enqueued, crate::store::Enqueued::Created(_));
                Ok(wire::encode(&(enqueued.id().0, new)))
            })
        }
        Request::WaitJob { id, .. } => {
            let Some(jobs) = runtime.jobs.get().cloned() else {
                return ready(Err(Error::UnknownJob {
                    id: crate::store::JobId(id).to_string(),
                }));
            };
            Box::pin(async move { jobs.wait(crate::store::JobId(id)).await })
        }
        Request::Command {
            command, options, ..
        } => {
            let ran = service.command(command.into(), options);
            Box::pin(async move { ran.await.map(|()| Vec::new()) })
        }
        Request::Tell { command, .. } => ready(service.tell(command.into()).map(|()| Vec::new())),
        Request::Pause { paused, .. } => ready(service.set_paused(paused).map(|()| Vec::new())),
        // A served service runs here: these answer locally.
        Request::Subscribe {
            event,
            node,
            formats,
            schemas,
            ..
        } => ready(subscribe(
            runtime, &*service, &event, &node, formats, &schemas,
        )),
        Request::Unsubscribe { event, node, .. } => {
            if let Some(cluster) = ClusterShared::of(runtime) {
                cluster.unforward(&node, service.name(), &event);
            }
            ready(Ok(Vec::new()))
        }
        Request::Catalog => unreachable!("answered above"),
        Request::Query { query, .. } => Box::pin(async move {
            Ok(match query {
                Query::Status => wire::encode(&service.status_routed().await?),
                Query::Health => {
                    wire::encode(&wire::WireHealth::from(service.health_routed().await?))
                }
                Query::Info => wire::encode(&service.info()),
            })
        }),
    }
}

/// Starts forwarding `service`'s events called `event` to `node`, once they are known to be
/// the same events there: declared here, of the same shape.
fn subscribe(
    runtime: &RuntimeShared,
    service: &dyn ErasedService,
    event: &str,
    node: &str,
    formats: wire::Formats,
    schemas: &[u64],
) -> Reply {
    let shared = service.shared();
    if event != crate::event::ANY_EVENT {
        let Some(declared) = shared.events.iter().find(|d| &*d.name == event) else {
            return Err(shared.unknown_event(event));
        };
        let ours = declared.schema;
        if let Some(theirs) = schemas.iter().find(|theirs| **theirs != ours) {
            return Err(Error::Incompatible {
                node: local_node(runtime),
                reason: format!(
                    "the event `{}.{event}` has another schema on this node ({ours:016x}) than on \
                     the subscriber's ({theirs:016x}): its types differ between the two builds",
                    service.name()
                ),
            });
        }
    }
    let Some(cluster) = ClusterShared::shared_of(runtime) else {
        return Err(Error::ShuttingDown);
    };
    cluster.forward(node, service.name(), event, formats)?;
    Ok(Vec::new())
}

/// The schemas of every service this node serves.
fn catalog(runtime: &RuntimeShared) -> Vec<wire::ServiceSchemas> {
    let mut services: Vec<wire::ServiceSchemas> = runtime
        .by_name
        .iter()
        .filter(|s| s.shared().enabled)
        .map(|s| s.schemas())
        .collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    services
}

fn ready(reply: Reply) -> BoxFuture<'static, Reply> {
    Box::pin(std::future::ready(reply))
}

/// The service called `name` that runs in this process; only those are served to other nodes.
fn local(runtime: &RuntimeShared, name: &str) -> Result<Arc<dyn ErasedService>, Error> {
    match runtime.by_name.get(name) {
        Some(found) if found.shared().enabled => Ok(found.clone()),
        Some(_) => Err(Error::ServiceDisabled {
            service: name.to_owned(),
        }),
        None => Err(Error::UnknownService {
            name: name.to_owned(),
        }),
    }
}

fn local_node(runtime: &RuntimeShared) -> String {
    ClusterShared::of(runtime)
        .map(|c| c.node.clone())
        .unwrap_or_default()
}
