//! The host actor's mailbox.

use ractor::RpcReplyPort;
use tokio::time::Instant;

use super::job::{ActionCall, CommandJob, Deadline, JobBox, Refuse, action_job};
use super::reply::ReplyTo;
use crate::Error;
use crate::action::{Action, CallOptions, Handler};
use crate::event::{Chain, Subscription};
use crate::service::{Command, Health, Service};
use crate::status::{ServiceInfo, ServiceStatus};

/// A message to a service's host actor.
///
/// This is the `Msg` type of the service's [`ActorRef`](ractor::ActorRef): an actor of the
/// user's can talk to a service with ractor's own `cast` and `call`. Build calls with
/// [`ServiceMessage::action`] and [`ServiceMessage::command`]; queries are plain variants.
///
/// # Examples
///
/// ```
/// # use sora::{Action, BoxError, CallOptions, Context, Handler, Runtime, Service, ServiceMessage};
/// # #[derive(Default)] struct Echo;
/// # impl Service for Echo {}
/// # struct Say(String);
/// # impl Action for Say { const NAME: &'static str = "say"; type Reply = String; }
/// # impl Handler<Say> for Echo {
/// #     async fn handle(&self, s: Say, _: &Context) -> Result<String, BoxError> { Ok(s.0) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = Runtime::builder().service(Echo::default).start().await?;
/// let actor = runtime.service::<Echo>()?.actor_ref().expect("running");
/// let reply = ractor::call!(actor, |port| {
///     ServiceMessage::action(Say("hi".into()), CallOptions::default(), port)
/// })?;
/// assert_eq!(reply?, "hi");
/// # runtime.shutdown().await?; Ok(()) }
/// ```
pub enum ServiceMessage<S: Service> {
    /// An action or a command.
    Call(Envelope<S>),
    /// A question about the service, answered at once even while it is busy.
    Query(Query),
    /// A subscription to one of the service's events.
    Subscribe(Box<Subscribe>),
    /// Messages the runtime sends its own hosts; users cannot build them.
    #[doc(hidden)]
    Internal(Internal),
}

#[cfg(feature = "cluster")]
impl<S: Service> ractor::Message for ServiceMessage<S> {}

impl<S: Service> std::fmt::Debug for ServiceMessage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceMessage::Call(_) => f.write_str("Call"),
            ServiceMessage::Query(q) => f.debug_tuple("Query").field(q).finish(),
            ServiceMessage::Subscribe(s) => s.fmt(f),
            ServiceMessage::Internal(_) => f.write_str("Internal"),
        }
    }
}

impl<S: Service> ServiceMessage<S> {
    /// A typed action with its options; the reply goes to `reply`.
    pub fn action<A>(
        action: A,
        options: CallOptions,
        reply: RpcReplyPort<Result<A::Reply, Error>>,
    ) -> Self
    where
        S: Handler<A>,
        A: Action,
    {
        ServiceMessage::Call(Envelope(EnvelopeKind::action(action, options, reply)))
    }

    /// A command with its options; with a `reply`, the result is sent there when the command
    /// has run (for `trigger`, when the run it started or joined has finished).
    pub fn command(
        command: Command,
        options: CallOptions,
        reply: Option<RpcReplyPort<Result<(), Error>>>,
    ) -> Self {
        ServiceMessage::Call(Envelope(EnvelopeKind::command(
            command,
            options,
            reply.map(ReplyTo::from),
        )))
    }

    pub(crate) fn internal(kind: InternalKind) -> Self {
        ServiceMessage::Internal(Internal(kind))
    }
}

/// An action or a command, ready for a host. Build one with [`ServiceMessage::action`] or
/// [`ServiceMessage::command`].
pub struct Envelope<S: Service>(pub(crate) EnvelopeKind<S>);

impl<S: Service> std::fmt::Debug for Envelope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope")
    }
}

/// A call. A handle's call that rang its host's doorbell on its way in is marked so (the `bool`
/// of a job, [`CommandJob::rang`]), and the host answers the bell after handling it (see
/// `inbox.rs`); a call that came otherwise (a message sent to the `ActorRef`) is not. The marks
/// fit in bytes the envelope already has: it stays the size it was.
pub(crate) enum EnvelopeKind<S: Service> {
    Job(JobBox<S>, bool),
    Command(CommandJob),
}

impl<S: Service> EnvelopeKind<S> {
    /// Marks the call as the one that rang the doorbell.
    #[inline(always)]
    pub(crate) fn ring(&mut self) {
        match self {
            EnvelopeKind::Job(_, rang) => *rang = true,
            EnvelopeKind::Command(cmd) => cmd.rang = true,
        }
    }

    /// Whether the call rang the doorbell: the host answers the bell after it.
    #[inline(always)]
    pub(crate) fn rang(&self) -> bool {
        match self {
            EnvelopeKind::Job(_, rang) => *rang,
            EnvelopeKind::Command(cmd) => cmd.rang,
        }
    }

    #[inline(always)]
    pub(crate) fn action<A>(
        action: A,
        options: CallOptions,
        reply: impl Into<ReplyTo<A::Reply>>,
    ) -> Self
    where
        S: Handler<A>,
        A: Action,
    {
        let CallOptions {
            priority,
            timeout,
            correlation_id,
        } = options;
        let correlation_id = correlation_id.or_else(super::current_correlation);
        Self::staged(action, priority, timeout, correlation_id, reply.into(), ())
    }

    /// An attempt of durable job `job`: a typed action whose handler sees the job. It carries
    /// the job's own correlation id, not the one of whatever task hands it over.
    pub(crate) fn attempt<A>(
        action: A,
        options: CallOptions,
        job: std::sync::Arc<crate::action::JobRun>,
        reply: impl Into<ReplyTo<A::Reply>>,
    ) -> Self
    where
        S: Handler<A>,
        A: Action,
    {
        let CallOptions {
            priority,
            timeout,
            correlation_id,
        } = options;
        Self::staged(action, priority, timeout, correlation_id, reply.into(), job)
    }

    #[inline(always)]
    fn staged<A, J>(
        action: A,
        priority: i32,
        timeout: Option<std::time::Duration>,
        correlation_id: Option<std::sync::Arc<str>>,
        reply: ReplyTo<A::Reply>,
        job: J,
    ) -> Self
    where
        S: Handler<A>,
        A: Action,
        J: super::job::OfJob,
    {
        let call = ActionCall {
            action,
            deadline: timeout.map(Deadline::after),
            correlation_id,
            reply,
            job,
        };
        EnvelopeKind::Job(action_job(priority, call), false)
    }

    /// Answers the call with `err` without running it.
    pub(crate) fn refuse(self, err: Error) {
        match self {
            EnvelopeKind::Job(mut job, _) => job.as_mut().reject(err),
            EnvelopeKind::Command(cmd) => cmd.refuse(err),
        }
    }

    pub(crate) fn command(
        command: Command,
        options: CallOptions,
        reply: Option<ReplyTo<()>>,
    ) -> Self {
        EnvelopeKind::Command(CommandJob::new(
            command,
            options.priority,
            options.timeout.map(Deadline::after),
            options.correlation_id.or_else(super::current_correlation),
            reply,
        ))
    }
}

/// A question to a service's host.
#[derive(Debug)]
#[non_exhaustive]
pub enum Query {
    /// Its status snapshot.
    Status(RpcReplyPort<ServiceStatus>),
    /// What it declared.
    Info(RpcReplyPort<ServiceInfo>),
    /// Its health, from its own check and from supervision.
    Health(RpcReplyPort<Health>),
    /// Whether it is ready for work.
    Ready(RpcReplyPort<bool>),
}

/// A subscription to a service's events, asked through its actor reference: how ractor code
/// subscribes an actor of its own.
///
/// # Examples
///
/// ```
/// # use ractor::{Actor, ActorProcessingErr, ActorRef};
/// # use sora::{Definition, Emitted, Event, Service, ServiceMessage, Subscribe};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Completed;
/// # impl Event for Completed { const NAME: &'static str = "completed"; }
/// # #[derive(Default)] struct Translator;
/// # impl Service for Translator {
/// #     fn define(def: &mut Definition<Self>) { def.emits::<Completed>(); }
/// # }
/// struct Notifier;
///
/// impl Actor for Notifier {
///     type Msg = Emitted<Completed>;
///     type State = ();
///     type Arguments = ();
///     async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = sora::Runtime::builder().service(Translator::default).start().await?;
/// let (notifier, _) = Actor::spawn(None, Notifier, ()).await?;
/// let translator = runtime.service::<Translator>()?.actor_ref().expect("running");
/// let subscription = ractor::call!(translator, |reply| {
///     let to = notifier.clone();
///     ServiceMessage::Subscribe(Box::new(Subscribe::new(
///         move |chain| chain.on::<Completed>().send_to(&to),
///         reply,
///     )))
/// })??;
/// subscription.detach(); // ends when `notifier` stops
/// # notifier.stop(None); runtime.shutdown().await?; Ok(()) }
/// ```
pub struct Subscribe {
    pub(crate) build: Box<dyn FnOnce(Chain) -> Chain + Send>,
    pub(crate) reply: RpcReplyPort<Result<Subscription, Error>>,
}

impl std::fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribe").finish_non_exhaustive()
    }
}

impl Subscribe {
    /// Asks the service to subscribe the clauses that `build` adds to a chain on its events;
    /// it answers with the subscription, or with [`Error::UnknownEvent`].
    pub fn new(
        build: impl FnOnce(Chain) -> Chain + Send + 'static,
        reply: RpcReplyPort<Result<Subscription, Error>>,
    ) -> Self {
        Subscribe {
            build: Box::new(build),
            reply,
        }
    }
}

/// A message the runtime sends its own hosts.
#[derive(Debug)]
pub struct Internal(pub(crate) InternalKind);

#[derive(Debug)]
pub(crate) struct Drain {
    pub(crate) deadline: Instant,
    pub(crate) reason: Error,
    pub(crate) reply: RpcReplyPort<()>,
}

#[derive(Debug)]
pub(crate) enum InternalKind {
    /// Calls wait in the inbox (see `host/inbox.rs`).
    Wake,
    /// A scheduled tick.
    Tick,
    /// A periodic run finished.
    TickDone {
        error: Option<String>,
        panicked: Option<String>,
    },
    /// User code failed the incarnation.
    Failed(String),
    /// Stop in order: finish in-flight work by `deadline`, call the stop hook, then stop.
    /// Boxed, like every large and rare variant, so that every message stays small to move.
    Drain(Box<Drain>),
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe;
    impl Service for Probe {}

    #[test]
    fn messages_stay_small_to_move() {
        // Every message is moved into ractor's box and again into the host's handler; large,
        // rare variants are boxed to keep this small. A command travels inline (a `tell` then
        // allocates only ractor's box): its size is the `Command` and a pointer.
        let size = std::mem::size_of::<ServiceMessage<Probe>>();
        assert!(size <= 64, "{size} bytes");
    }
}
