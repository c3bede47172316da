//! Enqueueing a durable action: the request, and the ticket it answers once the job is
//! committed.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::action::{Action, Handler};
use crate::codec::{Codec, Json};
use crate::host::{ErasedService, ServiceCell};
use crate::jobs::{Dispatcher, JobOptions};
use crate::runtime::Jobs;
use crate::service::Service;
use crate::store::{Enqueued, Job, JobId};

/// A durable action being enqueued. Set options, then `.await` it: it answers once the job is
/// committed, with a [`JobTicket`].
#[must_use = "a job is not enqueued until the request is awaited"]
pub struct EnqueueRequest<S: Service, A: Action> {
    cell: Arc<ServiceCell<S>>,
    action: A,
    options: JobOptions,
}

impl<S: Service, A: Action> std::fmt::Debug for EnqueueRequest<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueRequest")
            .field("service", &self.cell.name())
            .field("action", &A::NAME)
            .field("options", &self.options)
            .finish()
    }
}

impl<S, A> EnqueueRequest<S, A>
where
    S: Handler<A>,
    A: Action + Serialize,
    A::Reply: DeserializeOwned,
{
    pub(crate) fn new(cell: Arc<ServiceCell<S>>, action: A) -> Self {
        EnqueueRequest {
            cell,
            action,
            options: JobOptions::default(),
        }
    }

    /// With an idempotency key: while a job of the same action with this key is kept, another
    /// is not enqueued, and the ticket names the existing one.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.options.key = Some(key.into());
        self
    }

    /// Runs it no sooner than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.options.delay = Some(delay);
        self
    }

    /// Runs it no sooner than `at`.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.options.at = Some(at);
        self
    }

    /// Among the service's waiting jobs and queued calls, the higher priority runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.call.priority = priority;
        self
    }

    /// Each attempt gives up after `timeout`, and counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.call.timeout = Some(timeout);
        self
    }

    /// Tags the job, and everything its attempts do, with a correlation id.
    pub fn correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.options.call.correlation_id = Some(id.into());
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }
}

impl<S, A> IntoFuture for EnqueueRequest<S, A>
where
    S: Handler<A>,
    A: Action + Serialize,
    A::Reply: DeserializeOwned,
{
    type Output = Result<JobTicket<A::Reply>, Error>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let EnqueueRequest {
            cell,
            action,
            mut options,
        } = self;
        // Made from a handler, the job carries the handler's correlation id, as a call does.
        if options.call.correlation_id.is_none() {
            options.call.correlation_id = crate::host::current_correlation();
        }
        Box::pin(async move {
            let service: Arc<dyn ErasedService> = cell;
            let params = Json::encode(&action).map_err(|message| Error::Encode {
                service: service.name().to_owned(),
                action: A::NAME.to_owned(),
                message,
            })?;
            // A service that runs on another node keeps its jobs there: committed there.
            #[cfg(feature = "cluster")]
            if let Some(remote) = crate::remote::route(service.shared()) {
                let (node, enqueued) = remote.enqueue(A::NAME, params, options).await?;
                return Ok(JobTicket::remote(remote, node, enqueued));
            }
            let dispatcher = dispatcher(&*service, A::NAME)?;
            let enqueued = dispatcher
                .enqueue(&service, A::NAME, params, options)
                .await?;
            Ok(JobTicket::new(Jobs::new(dispatcher), enqueued))
        })
    }
}

/// Enqueues `service`'s durable `action` by name with JSON `params`, here: checked against the
/// action's type before anything is committed. What `enqueue_json` does for a service that
/// runs here, and what a gateway does for a caller on another node.
pub(crate) async fn by_name(
    service: &Arc<dyn ErasedService>,
    action: &str,
    params: Vec<u8>,
    options: JobOptions,
) -> Result<Enqueued, Error> {
    service.check_params(action, &params)?;
    dispatcher(&**service, action)?
        .enqueue(service, action, params, options)
        .await
}

/// The dispatcher of the runtime that `service` belongs to, which has one whenever a service
/// declares a durable action.
pub(super) fn dispatcher(
    service: &dyn ErasedService,
    action: &str,
) -> Result<Arc<Dispatcher>, Error> {
    match service.shared().runtime.jobs.get() {
        Some(dispatcher) => Ok(dispatcher.clone()),
        None => Err(Error::NotDurable {
            service: service.name().to_owned(),
            action: action.to_owned(),
        }),
    }
}

/// A committed job: its id, and its reply once it has one.
///
/// # Examples
///
/// ```
/// # use sora::{Action, BoxError, Context, Definition, Handler, Retry, Service};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl Action for Ping { const NAME: &'static str = "ping"; type Reply = String; }
/// # #[derive(Default)] struct Pinger;
/// # impl Service for Pinger {
/// #     fn define(def: &mut Definition<Self>) { def.durable::<Ping>(Retry::none()); }
/// # }
/// # impl Handler<Ping> for Pinger {
/// #     async fn handle(&self, _: Ping, _: &Context) -> Result<String, BoxError> { Ok("pong".into()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
/// # let runtime = sora::Runtime::builder()
/// #     .store(sora::store::RedbStore::in_memory()?)
/// #     .service(Pinger::default).start().await?;
/// let pinger = runtime.service::<Pinger>()?;
/// let first = pinger.enqueue(Ping).key("once").await?;
/// let again = pinger.enqueue(Ping).key("once").await?;
/// assert!(first.is_new() && !again.is_new());
/// assert_eq!(first.id(), again.id());
/// assert_eq!(again.result().await?, "pong");
/// # runtime.shutdown().await }
/// ```
pub struct JobTicket<R> {
    source: Source,
    enqueued: Enqueued,
    reply: PhantomData<fn() -> R>,
}

/// Where a ticket's job is kept.
enum Source {
    /// In this runtime's store.
    Local(Jobs),
    /// In the store of another node of the cluster, which committed it.
    #[cfg(feature = "cluster")]
    Remote {
        service: Arc<dyn crate::remote::Remote>,
        node: String,
    },
}

impl<R> std::fmt::Debug for JobTicket<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTicket")
            .field("id", &self.enqueued.id())
            .field("new", &matches!(self.enqueued, Enqueued::Created(_)))
            .field("node", &self.node())
            .finish()
    }
}

impl<R> JobTicket<R> {
    /// The node of the cluster whose store keeps the job, when it is not this runtime's: a
    /// durable action of a service that runs elsewhere is committed where it runs.
    pub fn node(&self) -> Option<&str> {
        match &self.source {
            Source::Local(_) => None,
            #[cfg(feature = "cluster")]
            Source::Remote { node, .. } => Some(node),
        }
    }
}

impl<R: DeserializeOwned> JobTicket<R> {
    pub(crate) fn new(jobs: Jobs, enqueued: Enqueued) -> Self {
        JobTicket {
            source: Source::Local(jobs),
            enqueued,
            reply: PhantomData,
        }
    }

    /// A job that `node` committed, for a service that runs there.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote(
        service: Arc<dyn crate::remote::Remote>,
        node: String,
        enqueued: Enqueued,
    ) -> Self {
        JobTicket {
            source: Source::Remote { service, node },
            enqueued,
            reply: PhantomData,
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.enqueued.id()
    }

    /// Whether this request committed the job; `false` when its idempotency key named a job
    /// that was already kept.
    pub fn is_new(&self) -> bool {
        matches!(self.enqueued, Enqueued::Created(_))
    }

    /// The job as the store keeps it now.
    ///
    /// # Errors
    ///
    /// As [`Jobs::get`]; for a job kept on another node ([`node`](Self::node)),
    /// [`Error::ServiceUnavailable`] naming it: ask that node (its `GET /api/jobs/{id}`).
    pub fn job(&self) -> Result<Job, Error> {
        match &self.source {
            Source::Local(jobs) => jobs.get(self.id()),
            #[cfg(feature = "cluster")]
            Source::Remote { service, node } => Err(Error::ServiceUnavailable {
                service: service.name().to_owned(),
                reason: format!(
                    "job {} is kept on node `{node}`: ask it for the job's state",
                    self.id()
                ),
            }),
        }
    }

    /// Waits for the job's reply: after its retries, if it needs some. For a job kept on
    /// another node, the wait is that node's, over the cluster.
    ///
    /// # Errors
    ///
    /// As [`Jobs::wait`]; for a job kept on another node, also [`Error::ServiceUnavailable`]
    /// when that node is lost (the job goes on there: ask again once it is back).
    pub async fn result(&self) -> Result<R, Error> {
        match &self.source {
            Source::Local(jobs) => jobs.wait_for(self.id()).await,
            #[cfg(feature = "cluster")]
            Source::Remote { service, node } => {
                let reply = service.wait_job(node, self.id()).await?;
                serde_json::from_slice(&reply).map_err(|e| Error::Encode {
                    service: service.name().to_owned(),
                    action: String::new(),
                    message: format!("the reply of job {} does not decode: {e}", self.id()),
                })
            }
        }
    }
}
