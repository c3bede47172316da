//! One subscription: its bounded queue, what it takes from the bus, and where its events go.
//!
//! The bus sees a subscription as a [`Deliver`]: it offers every event of the subscribed name,
//! and the subscription decides, without waking anybody, whether the event is for it (source,
//! type, filter, `once`). What passes goes into the subscription's own bounded queue, and only
//! then is the subscriber woken, if it was waiting.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};

use ractor::ActorCell;

use super::Overflow;
use super::emitted::Emitted;
use super::record::Shared;
use crate::codec::DecodeError;

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Ended {
    /// Its handle was disposed or dropped.
    Disposed,
    /// It was `once` and has had its event.
    Once,
    /// Its queue overflowed and its policy is [`Overflow::Disconnect`].
    Disconnected,
    /// Its subscriber actor stopped.
    SubscriberStopped,
    /// The runtime stopped.
    RuntimeStopped,
}

/// What one subscription has seen, for status and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// The subscription's id, unique in its runtime (it names the subscription in logs).
    pub id: u64,
    /// The event it subscribes to.
    pub event: String,
    /// The service whose events it takes; `None` for every service.
    pub service: Option<String>,
    /// Events put in its queue.
    pub delivered: u64,
    /// Events lost to its overflow policy.
    pub dropped: u64,
    /// Handler runs that failed or panicked.
    pub failed: u64,
    /// Events whose payload could not be decoded into the subscriber's type.
    pub undecodable: u64,
    /// The last failure or decoding error.
    pub last_error: Option<String>,
    /// Events waiting in its queue.
    pub queued: usize,
    /// Why it ended; `None` while it is active.
    pub ended: Option<Ended>,
}

/// What the bus does with a subscription after offering it an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// It stays in the table.
    Keep,
    /// It has ended: take it out of the table.
    Remove,
}

/// A subscription as the event bus sees it.
pub(crate) trait Deliver: Send + Sync + 'static {
    fn id(&self) -> u64;

    /// The event name it subscribes to.
    fn event(&self) -> &str;

    /// Offers one event of the subscribed name and source that passed the clause's filter.
    fn offer(&self, record: &Shared) -> Offer;

    /// Ends the subscription at once, discarding its queue (the first reason stays).
    fn end(&self, why: Ended);

    /// Ends the subscription once its subscriber has taken what its queue holds.
    fn end_after_queue(&self, why: Ended);

    fn is_ended(&self) -> bool;

    /// The subscriber actor, for subscriptions that deliver to one.
    fn actor(&self) -> Option<ActorCell>;

    fn stats(&self) -> SubscriptionStats;
}

/// What a subscription takes out of an event.
pub(crate) enum Picked<T> {
    /// Not for it: another source, another type, or filtered out.
    Skip,
    Take(Emitted<T>),
    Undecodable(DecodeError),
}

pub(crate) type Pick<T> = Box<dyn Fn(&Shared) -> Picked<T> + Send + Sync>;

/// Sends an event to a subscriber actor; `false` when the actor is gone.
pub(crate) type SendTo<T> = Box<dyn Fn(Emitted<T>) -> bool + Send + Sync>;

/// Where a subscription's events go.
pub(crate) enum Sink<T> {
    /// A task or a stream polls the queue.
    Poll,
    /// An actor of the user's: one event at a time is in its mailbox, the next goes when it
    /// drops the last.
    Actor { cell: ActorCell, send: SendTo<T> },
}

struct State<T> {
    items: VecDeque<Emitted<T>>,
    /// The consumer's waker, kept between waits so that it is cloned once, not per event.
    waker: Option<Waker>,
    /// The consumer waits for an event: the next push wakes it.
    waiting: bool,
    /// An actor subscriber holds an event.
    busy: bool,
    ended: Option<Ended>,
    /// After the runtime stops, the queue is still emptied before the end is seen.
    drain: bool,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    undecodable: AtomicU64,
}

/// One subscription to one event name.
pub(crate) struct Sub<T> {
    id: u64,
    event: Arc<str>,
    source: Option<Arc<str>>,
    once: bool,
    fired: AtomicBool,
    capacity: usize,
    overflow: Overflow,
    pick: Pick<T>,
    sink: Sink<T>,
    state: Mutex<State<T>>,
    /// Mirrors `state.ended` for the bus, which skips ended subscriptions without the lock.
    ended: AtomicBool,
    counters: Counters,
    last_error: Mutex<Option<String>>,
    me: Weak<Sub<T>>,
}

/// How a subscription is set up.
pub(crate) struct Spec {
    pub(crate) id: u64,
    pub(crate) event: Arc<str>,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) once: bool,
    pub(crate) capacity: usize,
    pub(crate) overflow: Overflow,
}

impl<T: Send + Sync + 'static> Sub<T> {
    pub(crate) fn new(spec: Spec, pick: Pick<T>, sink: Sink<T>) -> Arc<Self> {
        Arc::new_cyclic(|me| Sub {
            id: spec.id,
            event: spec.event,
            source: spec.source,
            once: spec.once,
            fired: AtomicBool::new(false),
            capacity: spec.capacity.max(1),
            overflow: spec.overflow,
            pick,
            sink,
            state: Mutex::new(State {
                items: VecDeque::new(),
                waker: None,
                waiting: false,
                busy: false,
                ended: None,
                drain: false,
            }),
            ended: AtomicBool::new(false),
            counters: Counters::default(),
            last_error: Mutex::new(None),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The lock guards no invariant that a panic could break halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next event for a task or a stream; `None` once the subscription has ended.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Emitted<T>>> {
        let mut state = self.lock();
        if let Some(event) = state.items.pop_front() {
            return Poll::Ready(Some(event));
        }
        if state.ended.is_some() {
            return Poll::Ready(None);
        }
        state.waiting = true;
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next event if one is waiting.
    pub(crate) fn try_pop(&self) -> Option<Emitted<T>> {
        self.lock().items.pop_front()
    }

    /// Counts a failed handler run and keeps its message.
    pub(crate) fn failed(&self, message: String) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.note_error(message);
    }

    /// Puts an event in the queue, or hands it to the subscriber actor if it holds none.
    fn push(&self, event: Emitted<T>) -> Offer {
        let mut state = self.lock();
        if state.ended.is_some() {
            return Offer::Remove;
        }
        if let Sink::Actor { send, .. } = &self.sink
            && !state.busy
        {
            state.busy = true;
            drop(state);
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            return if send(self.ticketed(event)) {
                self.after_delivery()
            } else {
                self.end(Ended::SubscriberStopped);
                Offer::Remove
            };
        }
        if state.items.len() >= self.capacity {
            match self.overflow {
                Overflow::DropOldest => {
                    if let Some(oldest) = state.items.pop_front() {
                        self.count_drop(&oldest);
                    }
                }
                Overflow::DropNewest => {
                    drop(state);
                    self.count_drop(&event);
                    return Offer::Keep;
                }
                Overflow::Disconnect => {
                    drop(state);
                    self.count_drop(&event);
                    tracing::warn!(
                        subscription = self.id,
                        event = &*self.event,
                        capacity = self.capacity,
                        "subscriber queue full; disconnecting it"
                    );
                    self.end(Ended::Disconnected);
                    return Offer::Remove;
                }
            }
        }
        state.items.push_back(event);
        if std::mem::take(&mut state.waiting)
            && let Some(waker) = &state.waker
        {
            waker.wake_by_ref();
        }
        drop(state);
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        self.after_delivery()
    }

    fn after_delivery(&self) -> Offer {
        if self.once {
            self.finish(Ended::Once, true);
            Offer::Remove
        } else {
            Offer::Keep
        }
    }

    fn count_drop(&self, event: &Emitted<T>) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        event.source().dropped.fetch_add(1, Ordering::Relaxed);
        if dropped.is_power_of_two() {
            tracing::warn!(
                subscription = self.id,
                event = &*self.event,
                capacity = self.capacity,
                policy = ?self.overflow,
                dropped,
                "subscriber queue full; dropping events"
            );
        }
    }

    fn ticketed(&self, mut event: Emitted<T>) -> Emitted<T> {
        if let Some(me) = self.me.upgrade() {
            event.ticket = Some(Ticket(me));
        }
        event
    }

    /// The actor has dropped its event: send the next one, if any.
    fn release(&self) {
        let Sink::Actor { send, .. } = &self.sink else {
            return;
        };
        let mut state = self.lock();
        let next = if state.ended.is_some() && !state.drain {
            None
        } else {
            state.items.pop_front()
        };
        let Some(next) = next else {
            state.busy = false;
            return;
        };
        drop(state);
        if !send(self.ticketed(next)) {
            self.end(Ended::SubscriberStopped);
        }
    }

    /// Ends the subscription (the first reason stays). With `keep_queue`, what the queue holds
    /// stays for the subscriber to take; without, it is discarded.
    fn finish(&self, why: Ended, keep_queue: bool) {
        let mut state = self.lock();
        if state.ended.is_none() {
            state.ended = Some(why);
            state.drain = keep_queue;
        }
        let discarded = if keep_queue {
            VecDeque::new()
        } else {
            state.drain = false;
            std::mem::take(&mut state.items)
        };
        self.ended.store(true, Ordering::Release);
        let waker = state.waker.take();
        drop(state);
        drop(discarded);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Keeps the last failure or decoding error for the statistics.
    fn note_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

impl<T: Send + Sync + 'static> Deliver for Sub<T> {
    fn id(&self) -> u64 {
        self.id
    }

    fn event(&self) -> &str {
        &self.event
    }

    fn offer(&self, record: &Shared) -> Offer {
        if self.ended.load(Ordering::Acquire) {
            return Offer::Remove;
        }
        match (self.pick)(record) {
            Picked::Skip => Offer::Keep,
            Picked::Take(event) => {
                if self.once && self.fired.swap(true, Ordering::AcqRel) {
                    return Offer::Remove;
                }
                self.push(event)
            }
            Picked::Undecodable(err) => {
                let count = self.counters.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
                let message = match &err.field {
                    Some(field) => format!("`{}` at `{field}`: {err}", self.event),
                    None => format!("`{}`: {err}", self.event),
                };
                if count.is_power_of_two() {
                    tracing::warn!(
                        subscription = self.id,
                        event = &*self.event,
                        undecodable = count,
                        "event payload does not decode into the subscriber's type: {message}"
                    );
                }
                self.note_error(message);
                Offer::Keep
            }
        }
    }

    fn end(&self, why: Ended) {
        self.finish(why, false);
    }

    fn end_after_queue(&self, why: Ended) {
        self.finish(why, true);
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn actor(&self) -> Option<ActorCell> {
        match &self.sink {
            Sink::Actor { cell, .. } => Some(cell.clone()),
            Sink::Poll => None,
        }
    }

    fn stats(&self) -> SubscriptionStats {
        let (queued, ended) = {
            let state = self.lock();
            (state.items.len(), state.ended)
        };
        SubscriptionStats {
            id: self.id,
            event: self.event.to_string(),
            service: self.source.as_ref().map(|s| s.to_string()),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            undecodable: self.counters.undecodable.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            queued,
            ended,
        }
    }
}

/// Held by the event an actor subscriber has; dropping it sends the next one.
pub(crate) struct Ticket(Arc<dyn Release>);

trait Release: Send + Sync {
    fn release(&self);
}

impl<T: Send + Sync + 'static> Release for Sub<T> {
    fn release(&self) {
        Sub::release(self);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(all(test, sora_loom))]
mod loom;
