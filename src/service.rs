//! The service model: what a user implements.
//!
//! A type becomes a service by implementing [`Service`]. Its state lives inside the service's
//! host actor; Sora calls its hooks and handlers, never concurrently with `start`. Every hook
//! has a default, so a service implements only what it does.
//!
//! # Kinds
//!
//! The kinds of the seeds are not separate traits: one type may be several at once, and the
//! service says which in [`Service::define`].
//!
//! | kind | how to declare it | what Sora calls |
//! |---|---|---|
//! | long-running | implement [`Service::run`] | `run` once after `start`, supervised, cancelled at stop |
//! | periodic | [`Definition::periodic`] with a [`Schedule`] | [`Service::tick`] on the schedule, never overlapping |
//! | pokable | [`Definition::command`] for each accepted [`Command`] | [`Service::command`]; `trigger` runs a tick now |
//! | start-up | [`Definition::startup`] with a [`Startup`] | `start` before every other service, in order, within a timeout |
//! | with actions | [`Definition::action`] for each [`Handler`](crate::Handler) | the handler, with priority, timeout and correlation id |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sora::{BoxError, Context, Definition, Schedule, Service};
//!
//! #[derive(Default)]
//! struct Cleanup;
//!
//! impl Service for Cleanup {
//!     fn define(def: &mut Definition<Self>) {
//!         def.periodic(Schedule::every(Duration::from_secs(3600)).run_on_start());
//!     }
//!
//!     async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
//!         tracing::info!(service = ctx.name(), "cleaning up");
//!         Ok(())
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), sora::Error> {
//! let runtime = sora::Runtime::builder().service(Cleanup::default).start().await?;
//! let status = runtime.service::<Cleanup>()?.status().await?;
//! assert_eq!(status.next_run_in, Some(Duration::from_secs(3600)));
//! # runtime.shutdown().await }
//! ```

mod command;
pub(crate) mod context;
mod definition;
pub(crate) mod downtime;
pub(crate) mod environment;
mod health;
pub(crate) mod restart;
pub(crate) mod retry;

use std::future::Future;

#[cfg(feature = "http")]
pub(crate) use command::BatchArgs;
pub use command::Command;
pub use context::Context;
pub(crate) use context::{Life, Served};
pub use definition::{Definition, MissedTick, Schedule, Startup};
pub(crate) use definition::{Field, SettingsValue};
pub use downtime::ScheduleMark;
pub use health::Health;

use crate::BoxError;

/// A background service: the user type that Sora hosts in a supervised actor.
///
/// All hooks take `&self`: with a concurrency above one, several actions run at once on the same
/// service, so mutable state lives behind a `Mutex` or in atomics. Periodic runs never overlap
/// one another, and `start` completes before anything else is called.
///
/// A panic or an `Err` from `start`, `run` or a handler's panic fails the service; its supervisor
/// restarts it according to its [`Restart`](crate::Restart) policy, building a fresh value with
/// the factory the service was registered with.
pub trait Service: Send + Sync + 'static {
    /// Declares what the service is: name, schedule, start-up order, actions, commands, policies.
    ///
    /// Called once, when the service is registered. The default declares nothing: the service is
    /// named after its type and has no schedule, actions or commands.
    fn define(def: &mut Definition<Self>)
    where
        Self: Sized,
    {
        let _ = def;
    }

    /// Runs when the service starts, before any tick, command or action reaches it.
    ///
    /// For a start-up service this is its start-up work, bounded by [`Startup::timeout`].
    ///
    /// # Errors
    ///
    /// An error fails the start: a start-up service fails the runtime's start (unless it
    /// continues on failure), any other service is restarted by its supervisor.
    fn start(&self, ctx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// The service's own background work, started once after `start` and supervised.
    ///
    /// It should return when [`Context::cancelled`] fires. Returning `Ok` ends the background work
    /// and leaves the service up; an error or a panic fails the service.
    ///
    /// # Errors
    ///
    /// An error fails the service, which is then restarted according to its policy.
    fn run(&self, ctx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        ctx.no_background_work();
        async { Ok(()) }
    }

    /// One run of a periodic service, and what `trigger` runs on demand.
    ///
    /// # Errors
    ///
    /// An error is counted as a failed run and reported in status; the service stays up.
    fn tick(&self, ctx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles a command the service declared with [`Definition::command`].
    ///
    /// A `trigger` command on a periodic service is not delivered here: it runs [`tick`](Self::tick).
    ///
    /// # Errors
    ///
    /// An error is returned to the caller as [`Error::ActionFailed`](crate::Error::ActionFailed).
    fn command(
        &self,
        command: Command,
        ctx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (command, ctx);
        async { Ok(()) }
    }

    /// Runs when the service stops in order (shutdown, or a restart of its group), after its
    /// in-flight work has finished or its stop timeout has passed.
    fn stop(&self, ctx: &Context) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Reports the service's own health. Supervision adds to it: a failed or restarting
    /// service is unhealthy whatever this returns.
    fn health(&self, ctx: &Context) -> impl Future<Output = Health> + Send {
        let _ = ctx;
        async { Health::Healthy }
    }

    /// Whether the service is ready for work; the runtime is ready when every service is.
    fn ready(&self, ctx: &Context) -> impl Future<Output = bool> + Send {
        let _ = ctx;
        async { true }
    }
}

/// The short name of a type: `my_app::jobs::Cleanup<T>` becomes `Cleanup`.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_type_name_strips_paths_and_generics() {
        struct Cleanup<T>(T);
        assert_eq!(
            super::short_type_name::<Cleanup<std::string::String>>(),
            "Cleanup"
        );
        assert_eq!(super::short_type_name::<u32>(), "u32");
    }
}
