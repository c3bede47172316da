//! A service that runs on another node, seen from this one.

use std::future::Future;
use std::sync::Arc;

use super::node::ClusterShared;
use futures::future::BoxFuture;

use super::wire::{Erased, Query, Request, WireAction, WireHealth};
use crate::Error;
use crate::action::CallOptions;
use crate::codec::Format;
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

    pub(crate) async fn act_encoded(
        &self,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> Result<Vec<u8>, Error> {
        let timeout = options.timeout;
        let request = Request::Act {
            service: self.name.to_string(),
            action: action.to_owned(),
            format,
            params,
            options,
            schema: None,
        };
        let reply = self.cluster.exchange(request);
        self.within(action, timeout, async move { reply.await.1 })
            .await
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

    pub(crate) async fn command(
        &self,
        command: Command,
        options: CallOptions,
    ) -> Result<(), Error> {
        let label = command.label();
        let timeout = options.timeout;
        let request = Request::Command {
            service: self.name.to_string(),
            command: command.into(),
            options,
        };
        self.within(&label, timeout, self.cluster.request(request))
            .await
            .map(drop)
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

    /// Bounds a remote call by the caller's timeout (the serving node bounds the handler too).
    async fn within<T>(
        &self,
        label: &str,
        timeout: Option<std::time::Duration>,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
                Err(Error::Timeout {
                    service: self.name.to_string(),
                    action: label.to_owned(),
                    after,
                })
            }),
        }
    }
}
