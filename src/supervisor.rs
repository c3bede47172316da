//! Supervision: how Sora keeps services up.
//!
//! A root supervisor actor owns every service host. When a service fails (a panic in a handler,
//! an error from `run`, a failed `start`), the supervisor consults the service's [`Restart`]
//! settings and the runtime's [`Strategy`]:
//!
//! | policy | restarted after a failure | restarted after a normal stop |
//! |---|---|---|
//! | [`RestartPolicy::Permanent`] (default) | yes | yes |
//! | [`RestartPolicy::Transient`] | yes | no |
//! | [`RestartPolicy::Temporary`] | no | no |
//!
//! Restarts wait an exponential [`Backoff`] with jitter. More than
//! [`Restart::max_restarts`] restarts within [`Restart::within`] escalate: a critical service stops
//! the runtime with [`Error::CriticalFailure`](crate::Error::CriticalFailure); any other is
//! marked failed and unhealthy and left down.
//!
//! A service's handle survives its restarts: the supervisor points it at the new actor.

mod actor;
mod messages;
mod policy;

pub use crate::service::restart::{Backoff, Restart, RestartPolicy, Strategy};

pub(crate) use actor::{Supervisor, SupervisorArgs};
pub(crate) use messages::SupervisorMessage;
