//! The way into a host for calls from handles: an inbox beside the actor's mailbox, and a
//! doorbell that is rung through the mailbox.
//!
//! The inbox is a lock-free queue that allocates nothing until its first call, so an idle
//! service pays a few hundred bytes for it.
//!
//! A handle pushes a call into the incarnation's inbox and rings the bell only if nobody has rung
//! it since the host last answered: a burst of commands then costs the host one mailbox message,
//! and the host takes the whole burst in one turn. A call that finds the bell silent (the common
//! request and reply) goes straight to the mailbox, as before.
//!
//! Order per caller holds on every path. A caller's pushes precede its own ring; the host
//! silences the bell *before* it empties the inbox. So a caller that finds the bell silent knows
//! that the host silenced it after that caller's last push, in the turn that empties the inbox:
//! a message it now sends to the mailbox is handled after that turn, after its earlier calls.
//! See `docs/design/host.md` for the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_queue::SegQueue;
use ractor::ActorRef;

use super::messages::{EnvelopeKind, Internal, InternalKind, ServiceMessage};
use crate::service::Service;

/// How many calls a host takes from its inbox in one turn before it lets the other messages of
/// its mailbox (queries, stop) through.
const TURN: usize = 128;

/// Whether the host has been asked to look at its inbox and has not yet done so.
#[derive(Debug, Default)]
struct Bell(AtomicBool);

impl Bell {
    /// Rings; true if this ring is the one that must reach the host.
    fn ring(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    fn is_silent(&self) -> bool {
        !self.0.load(Ordering::SeqCst)
    }

    /// Silences the bell. A swap, so that every push made before the ring it silences is
    /// visible to the host afterwards.
    fn answer(&self) {
        self.0.swap(false, Ordering::SeqCst);
    }
}

/// The calls waiting for one incarnation, shared by its door and its host.
pub(crate) struct Inbox<S: Service> {
    calls: SegQueue<EnvelopeKind<S>>,
    bell: Bell,
    /// Set when the incarnation stops taking calls.
    closed: AtomicBool,
}

/// How a handle reaches one incarnation of a service.
pub(crate) struct Door<S: Service> {
    pub(crate) actor: ActorRef<ServiceMessage<S>>,
    inbox: Arc<Inbox<S>>,
}

/// Where the host is in one turn over its inbox; see [`Inbox::next_call`].
#[derive(Debug, Default)]
pub(crate) struct Turn {
    taken: usize,
    /// Once the bell is silenced: how many calls are still to be taken in this turn.
    left: Option<usize>,
    /// Calls are left for another turn.
    pub(crate) more: bool,
}

impl<S: Service> Inbox<S> {
    /// The next call of this turn of the host, which began when the bell rang.
    ///
    /// First up to [`TURN`] calls with the bell still rung, so that prompt calls go through the
    /// inbox behind them; if that many are taken, `turn.more` is set, the bell stays rung, and
    /// the host must send itself the doorbell message again. If the inbox runs dry first, the
    /// bell is silenced and every call in the inbox at that moment is taken in the same turn: a
    /// caller that then finds the bell silent and sends to the mailbox has no call of its own
    /// left behind in the inbox.
    pub(crate) fn next_call(&self, turn: &mut Turn) -> Option<EnvelopeKind<S>> {
        match &mut turn.left {
            None => {
                if turn.taken == TURN {
                    turn.more = true;
                    return None;
                }
                if let Some(call) = self.calls.pop() {
                    turn.taken += 1;
                    return Some(call);
                }
                self.bell.answer();
                turn.left = Some(self.calls.len());
                self.next_call(turn)
            }
            Some(0) => None,
            Some(left) => {
                *left -= 1;
                self.calls.pop()
            }
        }
    }

    /// Stops taking calls and hands back every call that waits. A call pushed while the inbox
    /// closes is refused by its sender (see [`Door::deliver`]).
    pub(crate) fn close(&self) -> Vec<EnvelopeKind<S>> {
        self.closed.store(true, Ordering::SeqCst);
        self.take_all()
    }

    fn take_all(&self) -> Vec<EnvelopeKind<S>> {
        std::iter::from_fn(|| self.calls.pop()).collect()
    }
}

/// A new, empty inbox; it allocates nothing more until its first call.
pub(crate) fn inbox<S: Service>() -> Arc<Inbox<S>> {
    Arc::new(Inbox {
        calls: SegQueue::new(),
        bell: Bell::default(),
        closed: AtomicBool::new(false),
    })
}

/// Whether a call may wait for others to be batched with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Fire and forget: always through the inbox, so that a burst is one turn of the host.
    Batched,
    /// The caller waits for the reply: straight to the mailbox unless calls are waiting.
    Prompt,
}

impl<S: Service> Door<S> {
    pub(crate) fn new(actor: ActorRef<ServiceMessage<S>>, inbox: Arc<Inbox<S>>) -> Self {
        Door { actor, inbox }
    }

    /// Delivers a call. `Err` when the incarnation no longer takes calls: the call is dropped
    /// unanswered, and the caller reports the service unavailable.
    #[inline(always)]
    pub(crate) fn deliver(&self, call: EnvelopeKind<S>, delivery: Delivery) -> Result<(), ()> {
        let inbox = &self.inbox;
        if delivery == Delivery::Prompt && inbox.bell.is_silent() {
            return self
                .actor
                .send_message(ServiceMessage::Call(super::Envelope(call)))
                .map_err(drop);
        }
        inbox.calls.push(call);
        if inbox.closed.load(Ordering::SeqCst) {
            // The host has closed the inbox, before or while the call went in. Whatever is left
            // there is dropped unanswered: each waiting caller hears from its reply port that
            // the service is gone, and this one is told at once.
            drop(inbox.take_all());
            return Err(());
        }
        if inbox.bell.ring() {
            // If the host is gone, the supervisor detaches this door; once the last reference
            // to the inbox goes, the calls in it are dropped and their callers hear that the
            // service is unavailable.
            let _ = self
                .actor
                .cast(ServiceMessage::Internal(Internal(InternalKind::Wake)));
        }
        Ok(())
    }
}
