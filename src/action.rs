//! Actions: named, typed requests with typed replies.
//!
//! An action is a plain type that implements [`Action`]: its name is a compile-time constant,
//! so callers never spell it, and its reply type is checked by the compiler. A service answers
//! it by implementing [`Handler`] and, to make it callable by name (HTTP, the CLI, other nodes),
//! declaring it with [`Definition::action`](crate::Definition::action).
//!
//! # Example
//!
//! ```
//! use sora::{Action, BoxError, Context, Definition, Handler, Service};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Translate { text: String, to: String }
//!
//! impl Action for Translate {
//!     const NAME: &'static str = "translate";
//!     type Reply = String;
//! }
//!
//! #[derive(Default)]
//! struct Translator;
//!
//! impl Service for Translator {
//!     fn define(def: &mut Definition<Self>) {
//!         def.action::<Translate>();
//!     }
//! }
//!
//! impl Handler<Translate> for Translator {
//!     async fn handle(&self, t: Translate, _ctx: &Context) -> Result<String, BoxError> {
//!         Ok(format!("[{}] {}", t.to, t.text))
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sora::Error> {
//! let runtime = sora::Runtime::builder().service(Translator::default).start().await?;
//! let service = runtime.service_by_name("Translator")?;
//! let reply = service
//!     .act_json("translate", serde_json::json!({"text": "hi", "to": "pt"}), Default::default())
//!     .await?;
//! assert_eq!(reply, "[pt] hi");
//! # runtime.shutdown().await }
//! ```
//!
//! # Options
//!
//! Every call carries [`CallOptions`]: a priority (among queued calls the higher runs first), a
//! timeout (the caller gets [`Error::Timeout`] and the handler is
//! cancelled) and a correlation id (recorded on the tracing span of everything the call does).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, DecodeError, Format, Json};
use crate::service::retry::Retry;
use crate::service::{Context, Service};
use crate::store::id::JobId;
use crate::{BoxError, Error};

/// A named request with a typed reply.
pub trait Action: Send + 'static {
    /// The action's name, unique within a service: what HTTP, the CLI and remote nodes call it by.
    const NAME: &'static str;

    /// What the handler returns on success.
    type Reply: Send + 'static;
}

/// A service's handler for one action type.
pub trait Handler<A: Action>: Service {
    /// Handles one call.
    ///
    /// Runs on a task of its own, so the service's host keeps answering status queries while
    /// it runs. It is cancelled (dropped at an `.await`) when the call's timeout passes.
    ///
    /// # Errors
    ///
    /// An error reaches the caller as [`Error::ActionFailed`] and is
    /// counted as a failure; the service stays up. A panic fails the service.
    fn handle(
        &self,
        action: A,
        ctx: &Context,
    ) -> impl Future<Output = Result<A::Reply, BoxError>> + Send;
}

/// Per-call options: priority, timeout and correlation id.
///
/// They travel with a call wherever it goes, so they are serializable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallOptions {
    /// Among queued calls of one service, the higher priority runs first (default 0; ties run
    /// in arrival order).
    pub priority: i32,
    /// How long the caller waits; past it the caller gets a timeout error and the handler is
    /// cancelled. `None` waits as long as the work takes.
    pub timeout: Option<Duration>,
    /// An id that ties this call to the work that caused it; recorded in tracing spans. Calls
    /// made from inside a handler inherit it unless they set their own.
    pub correlation_id: Option<Arc<str>>,
}

/// The durable job that a handler's call is an attempt of: see
/// [`Context::job`](crate::Context::job).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobRun {
    /// The job's id.
    pub id: JobId,
    /// Its idempotency key, if it was enqueued with one.
    pub key: Option<String>,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// How many attempts it gets.
    pub max_attempts: u32,
}

impl JobRun {
    /// Whether this is the job's last attempt: if it fails, the job is dead.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// An error that retrying will not mend: a durable job whose handler fails with it is dead at
/// once, whatever attempts it had left.
///
/// For an in-memory call it is an error like any other.
///
/// # Examples
///
/// ```
/// use sora::action::Permanent;
/// use sora::BoxError;
///
/// fn charge(card: &str) -> Result<(), BoxError> {
///     if card.is_empty() {
///         return Err(Permanent::new("no card on file").into());
///     }
///     Ok(())
/// }
/// let err = charge("").unwrap_err();
/// assert!(err.downcast_ref::<Permanent>().is_some());
/// assert_eq!(err.to_string(), "no card on file");
/// ```
#[derive(Debug)]
pub struct Permanent(BoxError);

impl Permanent {
    /// Marks `error` as permanent.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent(error.into())
    }

    /// The error it marks.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What a call by name reaches: the service's cell, which the host defines (`host/cell.rs`).
/// The model names it only through [`HasCell::Cell`], so that it stays below the host: the host
/// implements both traits, for every service.
pub(crate) trait Cell<S: Service>: Send + Sync + 'static {
    /// The service's name.
    fn name(&self) -> &str;

    /// A typed call to the service, delivered now.
    fn call<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
    ) -> impl Future<Output = Result<A::Reply, Error>> + Send + 'static
    where
        S: Handler<A>,
        A: Action;

    /// An attempt of durable job `job`: a typed call, delivered now, whose handler sees the job.
    fn attempt<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
        job: Arc<JobRun>,
    ) -> impl Future<Output = Result<A::Reply, Error>> + Send + 'static
    where
        S: Handler<A>,
        A: Action;
}

/// The cell of a service; implemented once, by the host, for every service.
pub(crate) trait HasCell: Service + Sized {
    /// The host's cell of this service.
    type Cell: Cell<Self>;
}

pub(crate) type Invoke<S> = fn(
    Arc<<S as HasCell>::Cell>,
    Vec<u8>,
    CallOptions,
) -> BoxFuture<'static, Result<Vec<u8>, Error>>;

/// Runs an attempt of a durable job: JSON parameters in, JSON reply out.
pub(crate) type Attempt<S> = fn(
    Arc<<S as HasCell>::Cell>,
    Vec<u8>,
    CallOptions,
    Arc<JobRun>,
) -> BoxFuture<'static, Result<Vec<u8>, Error>>;

/// Decodes a job's JSON reply into a typed call's reply, boxed.
pub(crate) type FromReply = fn(&[u8]) -> Result<Box<dyn std::any::Any + Send>, DecodeError>;

/// One declared action: its name and how to call it by name in each format.
pub(crate) struct ActionEntry<S: Service> {
    pub(crate) name: &'static str,
    /// How its failed attempts are retried, when it is durable.
    pub(crate) retry: Option<Retry>,
    /// Whether JSON parameters decode into the action, before they are committed as a job.
    pub(crate) check: fn(&[u8]) -> Result<(), DecodeError>,
    /// A typed call's value as a job's parameters (the value is an `A`).
    pub(crate) to_params: fn(&(dyn std::any::Any + Send)) -> Result<Vec<u8>, String>,
    /// A job's reply as a typed call's (an `A::Reply`, boxed).
    pub(crate) from_reply: FromReply,
    /// Runs an attempt of a job of it.
    pub(crate) attempt: Attempt<S>,
    pub(crate) json: Invoke<S>,
    pub(crate) bincode: Invoke<S>,
    /// How a typed call leaves for another node, and how its reply comes back.
    #[cfg(feature = "cluster")]
    pub(crate) wire: crate::codec::typed::WireAction,
}

impl<S: Service> ActionEntry<S> {
    pub(crate) fn of<A>() -> Self
    where
        S: Handler<A>,
        A: Action + Serialize + DeserializeOwned,
        A::Reply: Serialize + DeserializeOwned,
    {
        ActionEntry {
            name: A::NAME,
            retry: None,
            check: |params| Json::decode::<A>(params).map(drop),
            to_params: |action| match action.downcast_ref::<A>() {
                Some(action) => Json::encode(action),
                None => Err("the value is not of the action's type".into()),
            },
            from_reply: |reply| {
                Json::decode::<A::Reply>(reply)
                    .map(|r| Box::new(r) as Box<dyn std::any::Any + Send>)
            },
            attempt: attempt::<S, A>,
            json: invoke::<S, A, crate::codec::Json>,
            bincode: invoke::<S, A, crate::codec::Bincode>,
            #[cfg(feature = "cluster")]
            wire: crate::codec::typed::WireAction::of::<A>(),
        }
    }

    pub(crate) fn invoker(&self, format: Format) -> Invoke<S> {
        match format {
            Format::Json => self.json,
            Format::Bincode => self.bincode,
        }
    }
}

fn invoke<S, A, C>(
    cell: Arc<<S as HasCell>::Cell>,
    params: Vec<u8>,
    options: CallOptions,
) -> BoxFuture<'static, Result<Vec<u8>, Error>>
where
    S: Handler<A>,
    A: Action + DeserializeOwned,
    A::Reply: Serialize,
    C: Codec,
{
    by_name::<S, A, C, _>(cell, params, |cell, action| {
        Cell::call(cell, action, options)
    })
}

fn attempt<S, A>(
    cell: Arc<<S as HasCell>::Cell>,
    params: Vec<u8>,
    options: CallOptions,
    job: Arc<JobRun>,
) -> BoxFuture<'static, Result<Vec<u8>, Error>>
where
    S: Handler<A>,
    A: Action + DeserializeOwned,
    A::Reply: Serialize,
{
    by_name::<S, A, Json, _>(cell, params, |cell, action| {
        Cell::attempt(cell, action, options, job)
    })
}

/// A call by name: `params` decoded in `C` into an `A`, handed to `send`, its reply encoded
/// back in `C`.
fn by_name<S, A, C, F>(
    cell: Arc<<S as HasCell>::Cell>,
    params: Vec<u8>,
    send: impl FnOnce(Arc<<S as HasCell>::Cell>, A) -> F,
) -> BoxFuture<'static, Result<Vec<u8>, Error>>
where
    S: Handler<A>,
    A: Action + DeserializeOwned,
    A::Reply: Serialize,
    C: Codec,
    F: Future<Output = Result<A::Reply, Error>> + Send + 'static,
{
    let action: A = match C::decode(&params) {
        Ok(action) => action,
        Err(e) => {
            let err = Error::BadParameters {
                service: Cell::name(&*cell).to_owned(),
                action: A::NAME.to_owned(),
                field: e.field,
                message: e.message,
            };
            return Box::pin(async move { Err(err) });
        }
    };
    // Delivered now, not when the future is first polled: calls by name keep the order in
    // which they were made, as typed calls do, even when each is then awaited on its own task.
    let reply = send(cell.clone(), action);
    Box::pin(async move {
        let reply = reply.await?;
        C::encode(&reply).map_err(|message| Error::Encode {
            service: Cell::name(&*cell).to_owned(),
            action: A::NAME.to_owned(),
            message,
        })
    })
}
