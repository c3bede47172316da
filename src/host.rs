//! The service host: one supervised actor per service.
//!
//! # Responsive while busy
//!
//! Calls from handles arrive through an inbox beside the mailbox, announced by a doorbell
//! message (see `host/inbox.rs`), so that a burst of commands costs one turn of the host; other
//! messages, and calls sent with ractor's own `cast` and `call`, arrive through the mailbox.
//!
//! The host never awaits user code inside its own `handle`. It schedules: an action or command
//! that finds a free slot (the service's concurrency limit) starts on a task of its own, and one
//! that does not waits in a priority queue. A task that finishes its job takes the next one from
//! that queue itself, so a busy service keeps its slots full without a round trip through the
//! host. Periodic runs, health checks and the background `run` hook run on tasks too. The host's
//! mailbox is therefore always short, and status, info and health answer while work is in
//! progress; status is also kept in a shared snapshot that handles read without a message. See
//! `docs/design/host.md` for the options weighed and the figures.
//!
//! # Failure
//!
//! A panic in a handler, in a periodic run or in `run`, or an error from `run`, fails the
//! incarnation: every in-flight call gets [`Error::ServiceFailed`](crate::Error::ServiceFailed),
//! every queued call is refused the same way, and the actor fails so that the supervisor can
//! apply the restart policy.

use std::cell::Cell;
use std::sync::Arc;

mod actor;
mod cell;
mod guard;
mod inbox;
mod job;
mod messages;
mod reply;
mod reply_future;
mod scheduler;
mod shared;

pub(crate) use actor::{HostActor, HostArgs};
pub(crate) use cell::{ErasedService, ServiceCell};
pub(crate) use guard::panic_message;
pub(crate) use inbox::{Delivery, Door, inbox};
pub(crate) use messages::{Drain, EnvelopeKind, InternalKind};
pub use messages::{Envelope, Internal, Query, ServiceMessage, Subscribe};
pub(crate) use reply::{ReplyTo, SlimReceiver, slim};
pub(crate) use reply_future::ReplyFuture;
pub(crate) use shared::ServiceShared;

thread_local! {
    /// The correlation id of the call whose handler is being polled on this thread, if it has
    /// one: set only around such a poll.
    static CORRELATION: Cell<Option<Arc<str>>> = const { Cell::new(None) };
    /// Whether `CORRELATION` holds an id. A type without a destructor, so that a call made
    /// without an id (the common case) learns it has none from one load.
    static CORRELATED: Cell<bool> = const { Cell::new(false) };
}

/// The correlation id of the call being polled on this thread, if any.
pub(crate) fn current_correlation() -> Option<Arc<str>> {
    if !CORRELATED.get() {
        return None;
    }
    CORRELATION
        .try_with(|current| {
            let id = current.take();
            let copy = id.clone();
            current.set(id);
            copy
        })
        .ok()
        .flatten()
}

/// Runs `poll` with `id` as the current correlation id, and puts the previous one back after,
/// also when `poll` unwinds.
pub(crate) fn with_correlation<R>(id: Arc<str>, poll: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CORRELATED.set(previous.is_some());
            let _ = CORRELATION.try_with(|current| current.set(previous));
        }
    }
    let _restore = Restore(CORRELATION.with(|current| current.replace(Some(id))));
    CORRELATED.set(true);
    poll()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correlation_scope_nests_and_is_undone_after_a_panic() {
        assert_eq!(current_correlation(), None);
        with_correlation("outer".into(), || {
            assert_eq!(current_correlation().as_deref(), Some("outer"));
            with_correlation("inner".into(), || {
                assert_eq!(current_correlation().as_deref(), Some("inner"));
            });
            assert_eq!(current_correlation().as_deref(), Some("outer"));
            let unwound = std::panic::catch_unwind(|| {
                with_correlation("panicking".into(), || panic!("in a handler"))
            });
            assert!(unwound.is_err());
            assert_eq!(current_correlation().as_deref(), Some("outer"));
        });
        assert_eq!(current_correlation(), None);
    }
}
