//! A service that runs on another node, seen from this one, and this node as the layers below
//! the cluster see it: the cluster's side of `crate::remote`.

use std::any::Any;
use std::sync::Arc;

use super::node::ClusterShared;
use futures::future::BoxFuture;

use super::wire::{self, Query, Request, WireHealth};
use crate::Error;
use crate::action::CallOptions;
use crate::codec::Format;
use crate::codec::typed::{Erased, WireAction};
use crate::event::EventsShared;
use crate::jobs::JobOptions;
use crate::remote::{Node, Remote, Wanted};
use crate::service::{Command, Health};
use crate::status::{ServiceInfo, ServiceStatus};
use crate::store::{Enqueued, JobId};
use crate::system::RuntimeShared;

/// A service of another node, by name. Every call picks a node that serves it at that moment.
#[derive(Debug, Clone)]
pub(crate) struct RemoteService {
    name: Arc<str>,
    cluster: Arc<ClusterShared>,
}

impl RemoteService {
    pub(crate) fn new(name: Arc<str>, cluster: Arc<ClusterShared>) -> Self {
        RemoteService { name, cluster }
    }

    async fn query<T: serde::de::DeserializeOwned>(&self, query: Query) -> Result<T, Error> {
        let request = Request::Query {
            service: self.name.to_string(),
            query,
        };
        self.cluster.query(request).await
    }

    /// Sends `request` now, so that one caller's requests leave in the order they are made;
    /// the future waits for the reply, bounded by the caller's `timeout` (the serving node bounds
    /// the handler too).
    fn send(
        &self,
        label: &str,
        timeout: Option<std::time::Duration>,
        request: Request,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        let reply = self.cluster.exchange(request);
        let Some(after) = timeout else {
            return Box::pin(async move { reply.await.1 });
        };
        let (service, label) = (self.name.to_string(), label.to_owned());
        Box::pin(async move {
            match tokio::time::timeout(after, reply).await {
                Ok((_, reply)) => reply,
                Err(_) => Err(Error::Timeout {
                    service,
                    action: label,
                    after,
                }),
            }
        })
    }
}

impl Remote for RemoteService {
    fn name(&self) -> &str {
        &self.name
    }

    /// A call by name, sent now; the future bounds the wait by the call's timeout.
    fn act_encoded(
        &self,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        let timeout = options.timeout;
        let request = Request::Act {
            service: self.name.to_string(),
            action: action.to_owned(),
            format,
            params,
            options,
            schema: None,
        };
        self.send(action, timeout, request)
    }

    /// A typed call: the action encoded through its declaration and sent now; the future
    /// decodes the reply.
    fn act_typed(
        &self,
        action: &'static str,
        wire: WireAction,
        params: Erased,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Erased, Error>> {
        let params = match (wire.encode)(params) {
            Ok(params) => params,
            Err(message) => {
                let err = Error::Encode {
                    service: self.name.to_string(),
                    action: action.to_owned(),
                    message,
                };
                return Box::pin(std::future::ready(Err(err)));
            }
        };
        let request = Request::Act {
            service: self.name.to_string(),
            action: action.to_owned(),
            format: Format::Bincode,
            params,
            options,
            schema: Some(wire.schema),
        };
        let reply = self.cluster.exchange(request);
        let name = self.name.clone();
        Box::pin(async move {
            let (node, reply) = reply.await;
            (wire.decode_reply)(&reply?).map_err(|err| Error::Incompatible {
                node,
                reason: format!("the reply of `{name}.{action}` could not be decoded: {err}"),
            })
        })
    }

    fn enqueue(
        &self,
        action: &str,
        params: Vec<u8>,
        options: JobOptions,
    ) -> BoxFuture<'static, Result<(String, Enqueued), Error>> {
        let request = Request::Enqueue {
            service: self.name.to_string(),
            action: action.to_owned(),
            params,
            key: options.key,
            delay: options.delay,
            at: options.at,
            options: options.call,
        };
        let reply = self.cluster.exchange(request);
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let (node, reply) = reply.await;
            let (id, new): (u128, bool) = wire::decode(&reply?).map_err(|err| {
                cluster.undecodable(Some(&node), "an answer", &err);
                Error::Incompatible {
                    node: node.clone(),
                    reason: format!("its answer to an enqueue could not be decoded: {err}"),
                }
            })?;
            let id = JobId(id);
            let enqueued = if new {
                Enqueued::Created(id)
            } else {
                Enqueued::Existing(id)
            };
            Ok((node, enqueued))
        })
    }

    fn wait_job(&self, node: &str, id: JobId) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        let request = Request::WaitJob {
            service: self.name.to_string(),
            id: id.0,
        };
        self.cluster.exchange_with(node, request)
    }

    /// The bus that delivers this service's events here.
    fn events(&self) -> Arc<EventsShared> {
        self.cluster.events()
    }

    /// Asks every node that serves the service to forward the events the clauses take.
    fn subscribe_events(&self, clauses: Vec<(u64, Wanted)>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.cluster.subscribe_events(&self.name, clauses))
    }

    /// Lets go of the clauses `ids`, which never reached the bus.
    fn forget_events(&self, ids: &[u64]) {
        self.cluster.forget_events(ids);
    }

    /// A command, sent now; the future bounds the wait by the command's timeout.
    fn command(
        &self,
        command: Command,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let label = command.label();
        let timeout = options.timeout;
        let request = Request::Command {
            service: self.name.to_string(),
            command: command.into(),
            options,
        };
        let ran = self.send(&label, timeout, request);
        Box::pin(async move { ran.await.map(drop) })
    }

    fn tell(&self, command: Command) -> Result<(), Error> {
        self.cluster.tell(Request::Tell {
            service: self.name.to_string(),
            command: command.into(),
        })
    }

    fn set_paused(&self, paused: bool) -> Result<(), Error> {
        self.cluster.tell(Request::Pause {
            service: self.name.to_string(),
            paused,
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<ServiceStatus, Error>> {
        Box::pin(self.query(Query::Status))
    }

    fn health(&self) -> BoxFuture<'_, Result<Health, Error>> {
        Box::pin(async move {
            let health: WireHealth = self.query(Query::Health).await?;
            Ok(health.into())
        })
    }

    fn info(&self) -> BoxFuture<'_, Result<ServiceInfo, Error>> {
        Box::pin(self.query(Query::Info))
    }
}

impl Node for ClusterShared {
    fn serves(&self, service: &str) -> bool {
        ClusterShared::serves(self, service)
    }

    fn service(self: Arc<Self>, name: Arc<str>) -> Arc<dyn Remote> {
        Arc::new(RemoteService::new(name, self))
    }

    fn is_ready(&self) -> bool {
        ClusterShared::is_ready(self)
    }

    fn leave_now(&self) {
        ClusterShared::leave_now(self);
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(ClusterShared::stop(self))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl ClusterShared {
    /// The node of `runtime`, when it has joined a cluster.
    pub(crate) fn of(runtime: &RuntimeShared) -> Option<&ClusterShared> {
        runtime.cluster.get()?.as_any().downcast_ref()
    }

    /// The node of `runtime`, shared.
    pub(crate) fn shared_of(runtime: &RuntimeShared) -> Option<Arc<ClusterShared>> {
        runtime.cluster.get()?.clone().into_any().downcast().ok()
    }
}
