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
use super::record::{Emitted, Record, Shared};
use super::subscription::{Deliver, Ended, Pick, Picked, Sink, Spec, Sub, SubscriptionStats};
use super::{DEFAULT_QUEUE, Event, Overflow};
use crate::action::{Action, CallOptions, Handler};
use crate::codec::{Codec, DecodeError, Format, Json};
use crate::handle::{ErasedService, ServiceCell};
use crate::host::panic_message;
use crate::service::Service;
use crate::{Error, ServiceHandle};

type Filter<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// Whose events a chain subscribes to.
#[derive(Clone)]
pub(crate) enum Target {
    /// One service.
    Service(Arc<dyn ErasedService>),
    /// Every service of the runtime that emits the event.
    Any(Vec<Arc<dyn ErasedService>>),
}

impl Target {
    fn source(&self) -> Option<Arc<str>> {
        match self {
            Target::Service(service) => Some(service.shared().name.clone()),
            Target::Any(_) => None,
        }
    }

    /// Checks that the target emits `event` (of type `type_id`, for typed subscribers).
    fn check(&self, event: &str, type_id: Option<TypeId>) -> Result<(), Error> {
        let services: &[Arc<dyn ErasedService>] = match self {
            Target::Service(service) => std::slice::from_ref(service),
            Target::Any(all) => all,
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
            Target::Any(_) => "*".to_owned(),
        };
        Err(Error::UnknownEvent {
            service,
            event: event.to_owned(),
            emits,
        })
    }
}

/// One clause, ready to subscribe.
struct Clause {
    sub: Arc<dyn Deliver>,
    /// Starts the subscriber task of a closure clause.
    start: Option<Box<dyn FnOnce() + Send>>,
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
                    .map(|c| c.sub.event())
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
        On::new(self, Arc::from(E::NAME), typed::<E>, check)
    }

    /// Adds a clause for the event called `event`, whose payload is decoded from JSON into `T`
    /// for each subscriber: for callers that know the event only by name.
    ///
    /// A payload that does not decode into `T` is counted
    /// ([`SubscriptionStats::undecodable`]) and reported in the log; the subscription goes on.
    pub fn on_named<T>(self, event: &str) -> On<T, S>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let check = self.target.check(event, None);
        On::new(self, Arc::from(event), decoded::<T>, check)
    }

    /// Subscribes every clause of the chain; events emitted after this returns reach them.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEvent`] if the target does not emit one of the events (it names the
    /// events it does emit), and [`Error::ShuttingDown`] if the runtime is stopping. Nothing is
    /// subscribed then.
    pub async fn subscribe(self) -> Result<Subscription, Error> {
        self.subscribe_now()
    }

    pub(crate) fn subscribe_now(mut self) -> Result<Subscription, Error> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        if self.events.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let subs: Vec<Arc<dyn Deliver>> = self.clauses.iter().map(|c| c.sub.clone()).collect();
        self.events.add(&subs);
        for clause in &mut self.clauses {
            if let Some(start) = clause.start.take() {
                start();
            }
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
        let subscription = self.subscribe_now()?;
        let cell = service
            .into_any()
            .downcast::<ServiceCell<S>>()
            .map_err(|_| Error::UnknownService {
                name: crate::service::short_type_name::<S>().to_owned(),
            })?;
        let reply = ServiceHandle::new(cell).act(action).options(options).await;
        Ok((subscription, reply))
    }
}

/// One `on` clause of a chain: the event, its options, and then its subscriber.
#[must_use = "a clause needs a subscriber: `run`, `send_to` or `stream`"]
pub struct On<T, S = ()> {
    chain: Chain<S>,
    event: Arc<str>,
    pick: fn(Option<Filter<T>>) -> Pick<T>,
    filter: Option<Filter<T>>,
    once: bool,
    capacity: usize,
    overflow: Overflow,
}

impl<T, S> std::fmt::Debug for On<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("On")
            .field("event", &self.event)
            .field("filtered", &self.filter.is_some())
            .field("once", &self.once)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static, S> On<T, S> {
    fn new(
        mut chain: Chain<S>,
        event: Arc<str>,
        pick: fn(Option<Filter<T>>) -> Pick<T>,
        check: Result<(), Error>,
    ) -> Self {
        if let Err(err) = check {
            chain.error.get_or_insert(err);
        }
        On {
            chain,
            event,
            pick,
            filter: None,
            once: false,
            capacity: DEFAULT_QUEUE,
            overflow: Overflow::default(),
        }
    }

    /// Takes only the events for which `filter` is true. It runs on the event bus before
    /// delivery, so an event it rejects never wakes the subscriber; keep it quick. Several
    /// filters must all pass.
    pub fn filter(mut self, filter: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(match self.filter.take() {
            None => Box::new(filter),
            Some(first) => Box::new(move |e| first(e) && filter(e)),
        });
        self
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

    fn build(&mut self, sink: Sink<T>) -> Arc<Sub<T>> {
        let spec = self
            .chain
            .spec(self.event.clone(), self.once, self.capacity, self.overflow);
        Sub::new(spec, (self.pick)(self.filter.take()), sink)
    }

    /// Runs `handler` for each event, on a task of the subscription's own, one event at a
    /// time. A handler that returns an error or panics is counted
    /// ([`SubscriptionStats::failed`]) and logged with its subscription; the next event runs as
    /// usual.
    pub fn run<H, Fut>(mut self, handler: H) -> Chain<S>
    where
        H: Fn(Emitted<T>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let sub = self.build(Sink::Poll);
        let task = sub.clone();
        let start = Box::new(move || {
            tokio::spawn(drive(task, handler));
        });
        self.chain.clauses.push(Clause {
            sub,
            start: Some(start),
        });
        self.chain
    }

    /// Sends each event to `actor` as one of its own messages (`M: From<Emitted<T>>`).
    ///
    /// One event at a time is in the actor's mailbox: the next is sent when the actor drops the
    /// one it has (its clones do not count), and the others wait in the subscription's queue.
    /// The subscription ends when the actor stops.
    pub fn send_to<M>(mut self, actor: &ActorRef<M>) -> Chain<S>
    where
        M: Message + From<Emitted<T>>,
    {
        let to = actor.clone();
        let sink = Sink::Actor {
            cell: actor.get_cell(),
            send: Box::new(move |event| to.send_message(M::from(event)).is_ok()),
        };
        let sub = self.build(sink);
        self.chain.clauses.push(Clause { sub, start: None });
        self.chain
    }

    /// Subscribes the chain and returns this clause's events as a stream, which owns the whole
    /// subscription: dropping it disposes every clause.
    ///
    /// # Errors
    ///
    /// The errors of [`Chain::subscribe`].
    pub async fn stream(mut self) -> Result<EventStream<T>, Error> {
        let sub = self.build(Sink::Poll);
        self.chain.clauses.push(Clause {
            sub: sub.clone(),
            start: None,
        });
        let subscription = self.chain.subscribe_now()?;
        Ok(EventStream { sub, subscription })
    }
}

fn typed<E: Event>(filter: Option<Filter<E>>) -> Pick<E> {
    Box::new(move |record: &Shared| {
        let Some(typed) = record.as_any().downcast_ref::<Record<E>>() else {
            return Picked::Skip;
        };
        if let Some(filter) = &filter
            && !filter(&typed.payload)
        {
            return Picked::Skip;
        }
        match record.clone().into_any().downcast::<Record<E>>() {
            Ok(record) => Picked::Take(Emitted::new(record)),
            Err(_) => Picked::Skip,
        }
    })
}

fn decoded<T>(filter: Option<Filter<T>>) -> Pick<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    Box::new(move |record: &Shared| {
        let bytes = match record.encoded(Format::Json) {
            Ok(bytes) => bytes,
            Err(message) => {
                return Picked::Undecodable(DecodeError {
                    field: None,
                    message,
                });
            }
        };
        let payload: T = match Json::decode(&bytes) {
            Ok(payload) => payload,
            Err(err) => return Picked::Undecodable(err),
        };
        if let Some(filter) = &filter
            && !filter(&payload)
        {
            return Picked::Skip;
        }
        Picked::Take(Emitted::new(Arc::new(Record::new(
            record.meta().clone(),
            payload,
        ))))
    })
}

/// What an event handler may return: nothing, or a `Result` whose error is counted and logged.
pub trait HandlerResult {
    /// The failure, rendered, if there was one.
    ///
    /// # Errors
    ///
    /// The handler's error as text.
    fn into_result(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The task of a closure subscriber: one event at a time until the subscription ends.
async fn drive<T, H, Fut>(sub: Arc<Sub<T>>, handler: H)
where
    T: Send + Sync + 'static,
    H: Fn(Emitted<T>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    while let Some(event) = std::future::poll_fn(|cx| sub.poll_next(cx)).await {
        let id = event.id();
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
            Ok(run) => AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .map(HandlerResult::into_result),
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                tracing::warn!(
                    subscription = sub.id(),
                    event = sub.event_name(),
                    event_id = id,
                    "event handler failed: {message}"
                );
                sub.failed(message);
            }
            Err(panic) => {
                let message = format!("panicked: {}", panic_message(&*panic));
                tracing::error!(
                    subscription = sub.id(),
                    event = sub.event_name(),
                    event_id = id,
                    "event handler {message}"
                );
                sub.failed(message);
            }
        }
    }
}

/// An active subscription: one or several clauses, disposed together.
///
/// Dropping it disposes it; [`detach`](Self::detach) keeps it until the runtime stops.
#[must_use = "dropping a subscription disposes it at once; `detach` keeps it"]
pub struct Subscription {
    events: Arc<EventsShared>,
    subs: Vec<Arc<dyn Deliver>>,
    detached: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field(
                "clauses",
                &self.subs.iter().map(|s| s.id()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Subscription {
    /// Ends every clause: queued events are discarded and no handler starts after this returns
    /// (a handler already running finishes).
    pub fn dispose(self) {
        drop(self);
    }

    /// Keeps the subscription active until the runtime stops, without a handle.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Whether any clause is still active.
    pub fn is_active(&self) -> bool {
        self.subs.iter().any(|s| !s.is_ended())
    }

    /// What each clause has seen, in chain order.
    pub fn stats(&self) -> Vec<SubscriptionStats> {
        self.subs.iter().map(|s| s.stats()).collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        for sub in &self.subs {
            self.events.remove(sub.as_ref(), Ended::Disposed);
        }
    }
}

/// A clause's events as a [`Stream`](futures::Stream). It ends when the subscription ends;
/// dropping it disposes the subscription.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream<T> {
    sub: Arc<Sub<T>>,
    subscription: Subscription,
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscription", &self.subscription)
            .finish()
    }
}

impl<T: Send + Sync + 'static> EventStream<T> {
    /// The subscription the stream belongs to.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// What this clause has seen.
    pub fn stats(&self) -> SubscriptionStats {
        self.sub.stats()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Emitted<T>> {
        self.sub.try_pop()
    }
}

impl<T: Send + Sync + 'static> futures::Stream for EventStream<T> {
    type Item = Emitted<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Emitted<T>>> {
        self.sub.poll_next(cx)
    }
}
