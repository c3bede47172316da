//! The way into a host for calls from handles: an inbox beside the actor's mailbox, and a
//! doorbell that is rung through the mailbox.
//!
//! The inbox is a lock-free queue that allocates nothing until its first call, so an idle
//! service pays a few hundred bytes for it.
//!
//! A handle pushes a call into the incarnation's inbox and rings the bell only if nobody has rung
//! it since the host last answered: a burst of commands then costs the host one mailbox message,
//! and the host takes the whole burst in one turn. A call whose caller waits for the reply (the
//! common request and reply) goes straight to the mailbox when the inbox is empty and the bell
//! silent: it rings the bell itself and travels as the bell's message, which the host answers
//! after it.
//!
//! Order per caller holds on every path:
//!
//! - Only one message rings the bell at a time: a wake-up, or a call sent straight to the
//!   mailbox. Whoever rings it last holds it until the host answers, and every call pushed
//!   meanwhile waits for the turn the host takes after that message; so a call pushed after a
//!   caller's direct call is never taken before it.
//! - A call goes straight to the mailbox only if the inbox is empty: every earlier call of its
//!   caller has been taken by the host already, in a turn that comes before the call's message.
//! - After the host silences the bell, it looks at the inbox once more and takes what came
//!   meanwhile if it can ring the bell again; if somebody else rang first, their message is on
//!   its way, and the calls wait for its turn. No call is left behind with nobody coming for it.
//!
//! Loom checks these (`inbox/loom.rs`). It found the two ways the first version lost a caller's
//! order: a direct call that only *looked* at the bell (another caller could ring and send its
//! wake-up in between, and the first caller's next call was taken in that wake-up's turn), and a
//! host that took, after silencing the bell, whatever the inbox held (calls pushed after another
//! caller's direct call among them).
//!
//! See `docs/design/host.md` for the figures.

use std::sync::Arc;

use ractor::ActorRef;

use super::messages::{EnvelopeKind, Internal, InternalKind, ServiceMessage};
use crate::service::Service;
use crate::sync::{AtomicBool, Ordering, Queue};

/// How many calls a host takes from its inbox in one turn before it lets the other messages of
/// its mailbox (queries, stop) through.
const TURN: usize = 128;

/// Whether the host has been asked to look at its inbox and has not yet done so.
#[derive(Debug)]
struct Bell(AtomicBool);

impl Bell {
    fn new() -> Self {
        Bell(AtomicBool::new(false))
    }

    /// Rings; true if this ring is the one that must reach the host.
    fn ring(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    /// Silences the bell. A swap, so that every push made before the ring it silences is
    /// visible to the host afterwards.
    fn answer(&self) {
        self.0.swap(false, Ordering::SeqCst);
    }
}

/// The calls waiting for one incarnation, shared by its door and its host.
pub(crate) struct Inbox<T> {
    calls: Queue<T>,
    bell: Bell,
    /// Set when the incarnation stops taking calls.
    closed: AtomicBool,
}

/// The inbox of a service's incarnation.
pub(crate) type ServiceInbox<S> = Inbox<EnvelopeKind<S>>;

/// How a handle reaches one incarnation of a service.
pub(crate) struct Door<S: Service> {
    pub(crate) actor: ActorRef<ServiceMessage<S>>,
    inbox: Arc<ServiceInbox<S>>,
}

/// Where the host is in one turn over its inbox; see [`Inbox::next_call`].
#[derive(Debug)]
pub(crate) struct Turn {
    taken: usize,
    /// How many calls the turn takes before it lets the mailbox through.
    limit: usize,
    /// Calls are left for another turn.
    pub(crate) more: bool,
}

impl Default for Turn {
    fn default() -> Self {
        Turn::with_limit(TURN)
    }
}

impl Turn {
    fn with_limit(limit: usize) -> Self {
        Turn {
            taken: 0,
            limit,
            more: false,
        }
    }
}

/// What became of a call a door offered to its inbox.
pub(crate) enum Offered<T> {
    /// The caller rang the silent bell: the call goes to the mailbox as the bell's message,
    /// which the host answers after handling it.
    Send(T),
    /// The call waits in the inbox; with `ring`, the caller must send the host the doorbell
    /// message (nobody has since the host last answered).
    Queued { ring: bool },
    /// The inbox is closed: the call was dropped unanswered.
    Closed,
}

impl<T> Inbox<T> {
    /// A new, empty inbox; it allocates nothing more until its first call.
    pub(crate) fn new() -> Self {
        Inbox {
            calls: Queue::new(),
            bell: Bell::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The door's half of the protocol: where `call` goes.
    #[inline(always)]
    pub(crate) fn offer(&self, call: T, delivery: Delivery) -> Offered<T> {
        // Straight to the mailbox only with nothing in the inbox (so none of this caller's
        // calls is left behind there) and by ringing the bell (so that the calls pushed after
        // it wait for the turn the host takes after it).
        if delivery == Delivery::Prompt && self.calls.is_empty() && self.bell.ring() {
            return Offered::Send(call);
        }
        self.calls.push(call);
        if self.closed.load(Ordering::SeqCst) {
            // The host has closed the inbox, before or while the call went in. Whatever is left
            // there is dropped unanswered: each waiting caller hears from its reply port that
            // the service is gone, and this one is told at once.
            drop(self.take_all());
            return Offered::Closed;
        }
        Offered::Queued {
            ring: self.bell.ring(),
        }
    }

    /// The next call of this turn of the host, which began when the bell rang.
    ///
    /// Up to the turn's limit of calls ([`TURN`]) with the bell still rung, so that prompt calls
    /// go through the inbox behind them; if that many are taken, `turn.more` is set, the bell
    /// stays rung, and the host must send itself the doorbell message again. If the inbox runs
    /// dry first, the bell is silenced, and if calls have come meanwhile the host rings it again
    /// to take them, unless somebody else has: then that caller's message is on its way, and the
    /// calls wait for it. Either way no call is left in the inbox with nobody coming for it, and
    /// no call pushed after a caller's message to the mailbox is taken before that message.
    pub(crate) fn next_call(&self, turn: &mut Turn) -> Option<T> {
        loop {
            if turn.taken == turn.limit {
                turn.more = true;
                return None;
            }
            if let Some(call) = self.calls.pop() {
                turn.taken += 1;
                return Some(call);
            }
            self.bell.answer();
            if self.calls.is_empty() || !self.bell.ring() {
                return None;
            }
        }
    }

    /// Stops taking calls and hands back every call that waits. A call pushed while the inbox
    /// closes is refused by its sender (see [`Door::deliver`]).
    pub(crate) fn close(&self) -> Vec<T> {
        self.closed.store(true, Ordering::SeqCst);
        self.take_all()
    }

    fn take_all(&self) -> Vec<T> {
        std::iter::from_fn(|| self.calls.pop()).collect()
    }
}

/// A new, empty inbox for a service's incarnation.
pub(crate) fn inbox<S: Service>() -> Arc<ServiceInbox<S>> {
    Arc::new(Inbox::new())
}

/// Whether a call may wait for others to be batched with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Fire and forget: always through the inbox, so that a burst is one turn of the host.
    Batched,
    /// The caller waits for the reply: straight to the mailbox, as the bell's message, unless
    /// the bell is rung already (then behind what waits).
    Prompt,
}

impl<S: Service> Door<S> {
    pub(crate) fn new(actor: ActorRef<ServiceMessage<S>>, inbox: Arc<ServiceInbox<S>>) -> Self {
        Door { actor, inbox }
    }

    /// Delivers a call. `Err` when the incarnation no longer takes calls: the call is dropped
    /// unanswered, and the caller reports the service unavailable.
    #[inline(always)]
    pub(crate) fn deliver(&self, call: EnvelopeKind<S>, delivery: Delivery) -> Result<(), ()> {
        match self.inbox.offer(call, delivery) {
            Offered::Send(mut call) => {
                call.ring();
                self.actor
                    .send_message(ServiceMessage::Call(super::Envelope(call)))
                    .map_err(drop)
            }
            Offered::Queued { ring } => {
                if ring {
                    // If the host is gone, the supervisor detaches this door; once the last
                    // reference to the inbox goes, the calls in it are dropped and their
                    // callers hear that the service is unavailable.
                    let _ = self
                        .actor
                        .cast(ServiceMessage::Internal(Internal(InternalKind::Wake)));
                }
                Ok(())
            }
            Offered::Closed => Err(()),
        }
    }
}

#[cfg(all(test, sora_loom))]
mod loom;
