//! The fluent subscription chain: `on::<E>()`, its options, its subscriber, then `subscribe`.

use std::any::TypeId;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use ractor::{ActorRef, Message};
use serde::de::DeserializeOwned;

use super::bus::EventsShared;
use super::emitted::Emitted;
use super::index::{ByType, Member, Whole};
use super::record::{Record, Shared};
use super::subscription::{Deliver, Ended, Pick, Picked, Sink, Spec, Sub, SubscriptionStats};
use super::{DEFAULT_QUEUE, Event, Overflow};
use crate::Error;
use crate::action::{Action, CallOptions, Handler};
use crate::codec::{Codec, DecodeError, Format, Json};
use crate::host::panic_message;
use crate::host::{ErasedService, ServiceCell};
use crate::service::Service;

mod subscribed;
mod take;

use subscribed::drive;
pub use subscribed::{EventStream, HandlerResult, Subscription};
use take::sealed;
pub use take::{All, Both, Decoded, Filter, Take, Typed};

/// Whose events a chain subscribes to.
#[derive(Clone)]
pub(crate) enum Target {
    /// One service.
    Service(Arc<dyn ErasedService>),
    /// Every service of the runtime that emits the event.
    Any(Vec<Arc<dyn ErasedService>>),
    /// A service that only other nodes of the cluster know.
    #[cfg(feature = "cluster")]
    Remote(Arc<dyn crate::remote::Remote>),
}

impl Target {
    fn source(&self) -> Option<Arc<str>> {
        match self {
            Target::Service(service) => Some(service.shared().name.clone()),
            Target::Any(_) => None,
            #[cfg(feature = "cluster")]
            Target::Remote(remote) => Some(remote.name().into()),
        }
    }

    /// Checks that the target emits `event` (of type `type_id`, for typed subscribers). A
    /// service known only to other nodes is checked by the node that serves it, at subscribe.
    fn check(&self, event: &str, type_id: Option<TypeId>) -> Result<(), Error> {
        let services: &[Arc<dyn ErasedService>] = match self {
            Target::Service(service) => std::slice::from_ref(service),
            Target::Any(all) => all,
            #[cfg(feature = "cluster")]
            Target::Remote(_) => return Ok(()),
        };
        let declares = |s: &Arc<dyn ErasedService>| {
            s.shared()
                .events
                .iter()
                .any(|d| &*d.name == event && type_id.is_none_or(|t| t == d.type_id))
        };
        if services.iter().any(declares) {
            return Ok(());
        }
        let mut emits: Vec<String> = services
            .iter()
            .flat_map(|s| s.shared().events.iter().map(|d| d.name.to_string()))
            .collect();
        emits.sort();
        emits.dedup();
        let service = match self {
            Target::Service(service) => service.name().to_owned(),
            _ => "*".to_owned(),
        };
        Err(Error::UnknownEvent {
            service,
            event: event.to_owned(),
            emits,
        })
    }
}

#[cfg(feature = "cluster")]
impl Target {
    /// The service of another node whose events the chain subscribes to, if the target does not
    /// run here: a service only other nodes know, or one registered here that does not run here
    /// (declared remote, or disabled) while another node serves it.
    fn remote(&self) -> Result<Option<Arc<dyn crate::remote::Remote>>, Error> {
        match self {
            Target::Remote(remote) => Ok(Some(remote.clone())),
            Target::Service(service) if !service.shared().enabled => {
                match crate::remote::route(service.shared()) {
                    Some(remote) => Ok(Some(remote)),
                    None if service.shared().remote => Err(Error::ServiceUnavailable {
                        service: service.name().to_owned(),
                        reason: "no node of the cluster serves it".into(),
                    }),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }
}

/// One clause, ready to subscribe.
struct Clause {
    member: Member,
    /// Starts the subscriber task of a closure clause.
    start: Option<Box<dyn FnOnce() + Send>>,
    /// What the clause asks of the node that serves a service of another node.
    #[cfg(feature = "cluster")]
    wanted: crate::remote::Wanted,
}

/// A chain of subscription clauses on one target, subscribed together by
/// [`subscribe`](Chain::subscribe).
///
/// `S` is the service whose handle started the chain (it can then [`act`](Chain::act) on it),
/// or `()` for a chain on every service.
#[must_use = "a chain subscribes nothing until `subscribe` is awaited"]
pub struct Chain<S = ()> {
    events: Arc<EventsShared>,
    target: Target,
    clauses: Vec<Clause>,
    /// The first clause that could not be set up; `subscribe` reports it.
    error: Option<Error>,
    service: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Chain<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "clauses",
                &self
                    .clauses
                    .iter()
                    .map(|c| c.member.sub.event())
                    .collect::<Vec<_>>(),
            )
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<S> Chain<S> {
    pub(crate) fn new(events: Arc<EventsShared>, target: Target) -> Self {
        Chain {
            events,
            target,
            clauses: Vec::new(),
            error: None,
            service: PhantomData,
        }
    }

    /// Adds a clause for the typed event `E`.
    pub fn on<E: Event>(self) -> On<E, S> {
        let check = self.target.check(E::NAME, Some(TypeId::of::<E>()));
        On::new(self, Arc::from(E::NAME), check)
    }

    /// Adds a clause for the event called `event`, whose payload is decoded from JSON into `T`
    /// for each subscriber: for callers that know the event only by name.
    ///
    /// A payload that does not decode into `T` is counted
    /// ([`SubscriptionStats::undecodable`]) and reported in the log; the subscription goes on.
    pub fn on_named<T>(self, event: &str) -> On<T, S, Decoded>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let check = self.target.check(event, None);
        On::new(self, Arc::from(event), check)
    }

    /// Adds a clause for events of every name from the chain's target, each payload decoded
    /// from JSON into `T` (`serde_json::Value` takes any): for logs, audits and relays.
    pub fn on_any<T>(self) -> On<T, S, Decoded>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        On::new(self, Arc::from(super::index::ANY_EVENT), Ok(()))
    }

    /// Subscribes every clause of the chain; events emitted after this returns reach them.
    ///
    /// For a service that runs on another node of a cluster, this asks every node that serves
    /// it to forward the events, and returns once they have all agreed; their events are then
    /// delivered through this runtime's bus, with the same filters, `once` and order per
    /// emitter (see [`cluster`](crate::cluster)).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEvent`] if the target does not emit one of the events (it names the
    /// events it does emit), and [`Error::ShuttingDown`] if the runtime is stopping. For a
    /// service of another node, also [`Error::ServiceUnavailable`] if no node serves it now and
    /// [`Error::Incompatible`] if an event's type differs between the two builds. Nothing is
    /// subscribed then.
    pub async fn subscribe(self) -> Result<Subscription, Error> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.target.remote()? {
            return self.subscribe_remote(remote).await;
        }
        self.subscribe_now()
    }

    /// Subscribes on the nodes that serve the chain's service first, then on this runtime's
    /// bus, where their events arrive.
    #[cfg(feature = "cluster")]
    async fn subscribe_remote(
        mut self,
        remote: Arc<dyn crate::remote::Remote>,
    ) -> Result<Subscription, Error> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        if self.events.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let wanted = self
            .clauses
            .iter()
            .map(|c| (c.member.sub.id(), c.wanted.clone()))
            .collect();
        remote.subscribe_events(wanted).await?;
        let ids: Vec<u64> = self.clauses.iter().map(|c| c.member.sub.id()).collect();
        self.subscribe_now()
            .inspect_err(|_| remote.forget_events(&ids))
    }

    pub(crate) fn subscribe_now(mut self) -> Result<Subscription, Error> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        if self.events.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let subs = self.clauses.iter().map(|c| c.member.sub.clone()).collect();
        let (members, starts): (Vec<_>, Vec<_>) = std::mem::take(&mut self.clauses)
            .into_iter()
            .map(|c| (c.member, c.start))
            .unzip();
        self.events.add(members);
        for start in starts.into_iter().flatten() {
            start();
        }
        Ok(Subscription {
            events: self.events.clone(),
            subs,
            detached: false,
        })
    }

    fn spec(&self, event: Arc<str>, once: bool, capacity: usize, overflow: Overflow) -> Spec {
        Spec {
            id: self.events.next_subscription_id(),
            event,
            source: self.target.source(),
            once,
            capacity,
            overflow,
        }
    }
}

impl<S: Service> Chain<S> {
    /// Subscribes the chain, then acts on the service: the subscriptions are in place before the
    /// action runs, so they see every event it emits. Resolves to the subscription and the
    /// action's outcome.
    ///
    /// # Errors
    ///
    /// The errors of [`subscribe`](Self::subscribe); the action's own errors are in the second
    /// half of the pair, beside the subscription that sees its failure events.
    pub async fn act<A>(self, action: A) -> Result<(Subscription, Result<A::Reply, Error>), Error>
    where
        S: Handler<A>,
        A: Action,
    {
        self.act_with(action, CallOptions::default()).await
    }

    /// [`act`](Self::act) with per-call options.
    ///
    /// # Errors
    ///
    /// The errors of [`subscribe`](Self::subscribe).
    pub async fn act_with<A>(
        self,
        action: A,
        options: CallOptions,
    ) -> Result<(Subscription, Result<A::Reply, Error>), Error>
    where
        S: Handler<A>,
        A: Action,
    {
        let Target::Service(service) = self.target.clone() else {
            unreachable!("a chain typed with a service targets that service");
        };
        let subscription = self.subscribe().await?;
        let cell = service
            .into_any()
            .downcast::<ServiceCell<S>>()
            .map_err(|_| Error::UnknownService {
                name: crate::service::short_type_name::<S>().to_owned(),
            })?;
        let reply = ServiceCell::call(cell, action, options).await;
        Ok((subscription, reply))
    }
}

/// One `on` clause of a chain: the event, its options, and then its subscriber.
///
/// `K` says how the clause takes its payload ([`Typed`] or [`Decoded`]) and `F` is its filter;
/// both are set by the chain, and a filter is stored as it is, so that the event bus runs it
/// without an indirection of its own.
#[must_use = "a clause needs a subscriber: `run`, `send_to` or `stream`"]
pub struct On<T, S = (), K = Typed, F = All> {
    chain: Chain<S>,
    event: Arc<str>,
    filter: F,
    once: bool,
    capacity: usize,
    overflow: Overflow,
    kind: PhantomData<fn() -> (T, K)>,
}

impl<T, S, K, F> std::fmt::Debug for On<T, S, K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("On")
            .field("event", &self.event)
            .field("once", &self.once)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

impl<T, S, K> On<T, S, K, All> {
    fn new(mut chain: Chain<S>, event: Arc<str>, check: Result<(), Error>) -> Self {
        if let Err(err) = check {
            chain.error.get_or_insert(err);
        }
        On {
            chain,
            event,
            filter: All,
            once: false,
            capacity: DEFAULT_QUEUE,
            overflow: Overflow::default(),
            kind: PhantomData,
        }
    }
}

impl<T, S, K, F> On<T, S, K, F>
where
    T: Send + Sync + 'static,
    K: Take<T>,
    F: Filter<T>,
{
    /// Takes only the events for which `filter` is true. It runs on the event bus before
    /// delivery, so an event it rejects never wakes the subscriber; keep it quick. Several
    /// filters must all pass.
    pub fn filter<G>(self, filter: G) -> On<T, S, K, Both<F, G>>
    where
        G: Fn(&T) -> bool + Send + Sync + 'static,
    {
        On {
            chain: self.chain,
            event: self.event,
            filter: Both(self.filter, filter),
            once: self.once,
            capacity: self.capacity,
            overflow: self.overflow,
            kind: PhantomData,
        }
    }

    /// Takes exactly one event (the first that passes the filter), then ends.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Bounds the subscriber's queue to `capacity` events (default [`DEFAULT_QUEUE`]) and says
    /// what happens when it is full.
    pub fn queue(mut self, capacity: usize, overflow: Overflow) -> Self {
        self.capacity = capacity.max(1);
        self.overflow = overflow;
        self
    }

    /// Adds the clause to its chain with `sink`, and `start` to run once it is subscribed.
    fn build(self, sink: Sink<T>, start: Option<Starter<T>>) -> (Chain<S>, Arc<Sub<T>>) {
        let mut chain = self.chain;
        let spec = chain.spec(self.event.clone(), self.once, self.capacity, self.overflow);
        let source = spec.source.clone();
        let parts = <K as sealed::Take<T>>::parts(self.filter);
        let sub = Sub::new(spec, parts.pick, sink);
        let member = (parts.join)(sub.clone(), source);
        let start = start.map(|start| {
            let sub = sub.clone();
            Box::new(move || start(sub)) as Box<dyn FnOnce() + Send>
        });
        chain.clauses.push(Clause {
            member,
            start,
            #[cfg(feature = "cluster")]
            wanted: crate::remote::Wanted {
                event: self.event,
                typed: parts.typed,
            },
        });
        (chain, sub)
    }

    /// Runs `handler` for each event, on a task of the subscription's own, one event at a
    /// time. A handler that returns an error or panics is counted
    /// ([`SubscriptionStats::failed`]) and logged with its subscription; the next event runs as
    /// usual.
    pub fn run<H, Fut>(self, handler: H) -> Chain<S>
    where
        H: Fn(Emitted<T>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let start: Starter<T> = Box::new(move |sub| {
            tokio::spawn(drive(sub, handler));
        });
        self.build(Sink::Poll, Some(start)).0
    }

    /// Sends each event to `actor` as one of its own messages (`M: From<Emitted<T>>`).
    ///
    /// One event at a time is in the actor's mailbox: the next is sent when the actor drops the
    /// one it has (its clones do not count), and the others wait in the subscription's queue.
    /// The subscription ends when the actor stops.
    pub fn send_to<M>(self, actor: &ActorRef<M>) -> Chain<S>
    where
        M: Message + From<Emitted<T>>,
    {
        let to = actor.clone();
        let sink = Sink::Actor {
            cell: actor.get_cell(),
            send: Box::new(move |event| to.send_message(M::from(event)).is_ok()),
        };
        self.build(sink, None).0
    }

    /// Subscribes the chain and returns this clause's events as a stream, which owns the whole
    /// subscription: dropping it disposes every clause.
    ///
    /// # Errors
    ///
    /// The errors of [`Chain::subscribe`].
    pub async fn stream(self) -> Result<EventStream<T>, Error> {
        let (chain, sub) = self.build(Sink::Poll, None);
        let subscription = chain.subscribe().await?;
        Ok(EventStream { sub, subscription })
    }

    /// [`stream`](Self::stream) for a target of this runtime, which subscribes without waiting.
    #[cfg(feature = "http")]
    pub(crate) fn stream_now(self) -> Result<EventStream<T>, Error> {
        let (chain, sub) = self.build(Sink::Poll, None);
        let subscription = chain.subscribe_now()?;
        Ok(EventStream { sub, subscription })
    }
}

/// Starts the subscriber task of a closure clause, once it is subscribed.
type Starter<T> = Box<dyn FnOnce(Arc<Sub<T>>) + Send>;
