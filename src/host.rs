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

mod actor;
mod guard;
mod inbox;
mod job;
mod messages;
mod reply;
mod scheduler;
mod shared;

pub(crate) use actor::{HostActor, HostArgs};
pub(crate) use guard::panic_message;
pub(crate) use inbox::{Delivery, Door, inbox};
pub(crate) use messages::{Drain, EnvelopeKind, InternalKind};
pub use messages::{Envelope, Internal, Query, ServiceMessage, Subscribe};
pub(crate) use reply::{ReplyTo, SlimReceiver};
pub(crate) use shared::{BACKGROUND_NONE, ServiceShared};

tokio::task_local! {
    /// The correlation id of the call whose handler is running on this task.
    pub(crate) static CORRELATION: Option<std::sync::Arc<str>>;
}

/// The correlation id of the call running on this task, if any.
pub(crate) fn current_correlation() -> Option<std::sync::Arc<str>> {
    CORRELATION.try_with(|c| c.clone()).ok().flatten()
}
