//! Events: what services emit, and how subscribers receive it.
//!
//! An event is a plain type that implements [`Event`]; its name is a compile-time constant. A
//! service declares the events it emits with [`Definition::emits`](crate::Definition::emits) and
//! emits them from any hook or handler with [`Context::emit`](crate::Context::emit). The
//! runtime's event bus, a supervised actor, fans every event out to the subscriptions of its
//! name.
//!
//! # Subscribing
//!
//! A subscription is a chain of `on` clauses, each with its own filter, `once`, queue and
//! subscriber, subscribed together and disposed together:
//!
//! ```
//! # use sora::{Definition, Event, Runtime, Service};
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Completed { file: String }
//! # impl Event for Completed { const NAME: &'static str = "translation-completed"; }
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Failed { file: String, error: String }
//! # impl Event for Failed { const NAME: &'static str = "translation-failed"; }
//! # #[derive(Default)] struct Translator;
//! # impl Service for Translator {
//! #     fn define(def: &mut Definition<Self>) { def.emits::<Completed>().emits::<Failed>(); }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
//! let runtime = Runtime::builder().service(Translator::default).start().await?;
//! let translator = runtime.service::<Translator>()?;
//! let subscription = translator
//!     .on::<Completed>()
//!     .filter(|done| done.file.ends_with(".txt"))
//!     .run(|done| async move { println!("{} is translated", done.file) })
//!     .on::<Failed>()
//!     .once()
//!     .run(|failed| async move { eprintln!("{}: {}", failed.file, failed.error) })
//!     .subscribe()
//!     .await?;
//! // ... later: disposing (or dropping) it discards what its queues hold.
//! subscription.dispose();
//! # runtime.shutdown().await }
//! ```
//!
//! A subscriber is one of:
//! - an async closure ([`On::run`]), run on a task of the subscription's own, one event at a
//!   time; a panic or an error in it is counted, logged with the subscription, and the next event
//!   runs as usual;
//! - a [`Stream`](futures::Stream) of events ([`On::stream`]);
//! - an actor of the user's ([`On::send_to`]) that receives the events as its own messages.
//!
//! Subscribe to one service's events through its handle, or to an event from every service that
//! emits it through [`RuntimeHandle::on`](crate::RuntimeHandle::on). Callers that know an event
//! only by name subscribe through [`ServiceRef::on_named`](crate::ServiceRef::on_named) and
//! receive its payload decoded from JSON into a type of their choosing.
//!
//! # Guarantees
//!
//! - An event is built once and shared by every local subscriber; it is encoded only for
//!   subscribers that want bytes, once per format.
//! - A filter runs on the bus before delivery: a filtered-out subscriber is never woken.
//! - A `once` clause receives exactly one event, then ends, however many are emitted at once.
//! - Each subscriber sees the events of one emitter in emission order (in fact, every event in
//!   the order of [`Emitted::id`]).
//! - Each subscription has a bounded queue ([`On::queue`]): a slow subscriber never blocks the
//!   emitter, the bus or other subscribers. When its queue is full, its [`Overflow`] policy
//!   decides, and every lost event is counted (in [`SubscriptionStats`] and in the emitting
//!   service's status).
//! - A subscription ends when its handle is disposed or dropped, when its subscriber actor
//!   stops, or when the runtime stops (its queue is delivered first).
//! - The bus is supervised; if it restarts, every subscription stays, and no emitted event is
//!   lost.

mod bus;
mod capture;
mod chain;
mod emitted;
mod index;
pub(crate) mod record;
mod subscription;
mod work;

use serde::Serialize;

pub use capture::Captured;
pub use chain::{
    All, Both, Chain, Decoded, EventStream, Filter, HandlerResult, On, Subscription, Take, Typed,
};
pub use emitted::Emitted;
pub use record::Event;
pub use subscription::{Ended, SubscriptionStats};

pub(crate) use bus::{Bus, EventsShared, Wake};
pub(crate) use chain::Target;
#[cfg(feature = "cluster")]
pub(crate) use index::{ANY_EVENT, Member, Whole};
#[cfg(feature = "cluster")]
pub(crate) use record::{AnyRecord, Meta, Shared};
pub(crate) use record::{Declared, Source};
#[cfg(feature = "cluster")]
pub(crate) use subscription::{Deliver, Offer};

/// What a subscription does when its queue is full and another event comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Drops the oldest waiting event to make room (the default): a slow subscriber sees the
    /// latest events.
    #[default]
    DropOldest,
    /// Drops the new event: a slow subscriber sees the earliest events.
    DropNewest,
    /// Ends the subscription: a subscriber that cannot keep up is cut off.
    Disconnect,
}

/// A subscription's queue holds this many events unless it says otherwise.
pub const DEFAULT_QUEUE: usize = 1024;

/// The runtime's event bus, as its owner sees it: [`RuntimeHandle::events`](crate::RuntimeHandle::events).
#[derive(Debug, Clone)]
pub struct Events {
    shared: std::sync::Arc<EventsShared>,
}

impl Events {
    pub(crate) fn new(shared: std::sync::Arc<EventsShared>) -> Self {
        Events { shared }
    }

    /// Waits until every event emitted before this call has been fanned out: it is in the
    /// queue of every subscriber it is for (a handler may still be running it).
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) if the runtime has stopped.
    pub async fn flush(&self) -> Result<(), crate::Error> {
        if self.shared.flush().await {
            Ok(())
        } else {
            Err(crate::Error::ShuttingDown)
        }
    }

    /// How many subscriptions are active.
    pub fn subscriptions(&self) -> usize {
        self.shared.subscriptions()
    }

    /// The id of the last event fanned out (0 before the first).
    pub fn last_event_id(&self) -> u64 {
        self.shared.last_event()
    }

    /// How many times the bus actor has been restarted.
    pub fn restarts(&self) -> u64 {
        self.shared
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bus actor's cell, while it runs: to watch it from a supervision tree of one's own.
    pub fn actor(&self) -> Option<ractor::ActorCell> {
        self.shared.actor()
    }
}
