//! A service that runs on another node, seen from this one.

use std::sync::Arc;

use super::node::ClusterShared;
use futures::future::BoxFuture;

use super::wire::{Query, Request, WireHealth};
use crate::Error;
use crate::action::CallOptions;
use crate::codec::Format;
use crate::codec::typed::{Erased, WireAction};
use crate::host::ServiceShared;
use crate::service::{Command, Health};
use crate::status::{ServiceInfo, ServiceStatus};

/// A service of another node, by name. Every call picks a node that serves it at that moment.
#[derive(Debug, Clone)]
pub(crate) struct RemoteService {
    name: Arc<str>,
    cluster: Arc<ClusterShared>,
}

/// Where a call to a service that does not run here goes: to another node, if one serves it.
pub(crate) fn route(shared: &ServiceShared) -> Option<RemoteService> {
    if shared.enabled {
        return None;
    }
    let cluster = shared.runtime.cluster.get()?;
    cluster
        .serves(&shared.name)
        .then(|| RemoteService::new(shared.name.clone(), cluster.clone()))
}

impl RemoteService {
    pub(crate) fn new(name: Arc<str>, cluster: Arc<ClusterShared>) -> Self {
        RemoteService { name, cluster }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A call by name, sent now; the future bounds the wait by the call's timeout.
    pub(crate) fn act_encoded(
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
    pub(crate) fn act_typed(
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

    /// The bus that delivers this service's events here.
    pub(crate) fn events(&self) -> Arc<crate::event::EventsShared> {
        self.cluster.events()
    }

    /// Asks every node that serves the service to forward the events the clauses take.
    pub(crate) async fn subscribe_events(
        &self,
        clauses: Vec<(u64, super::Wanted)>,
    ) -> Result<(), Error> {
        self.cluster.subscribe_events(&self.name, clauses).await
    }

    /// Lets go of the clauses `ids`, which never reached the bus.
    pub(crate) fn forget_events(&self, ids: &[u64]) {
        self.cluster.forget_events(ids);
    }

    /// A command, sent now; the future bounds the wait by the command's timeout.
    pub(crate) fn command(
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

    pub(crate) fn tell(&self, command: Command) -> Result<(), Error> {
        self.cluster.tell(Request::Tell {
            service: self.name.to_string(),
            command: command.into(),
        })
    }

    pub(crate) fn set_paused(&self, paused: bool) -> Result<(), Error> {
        self.cluster.tell(Request::Pause {
            service: self.name.to_string(),
            paused,
        })
    }

    pub(crate) async fn status(&self) -> Result<ServiceStatus, Error> {
        self.query(Query::Status).await
    }

    pub(crate) async fn health(&self) -> Result<Health, Error> {
        let health: WireHealth = self.query(Query::Health).await?;
        Ok(health.into())
    }

    pub(crate) async fn info(&self) -> Result<ServiceInfo, Error> {
        self.query(Query::Info).await
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
