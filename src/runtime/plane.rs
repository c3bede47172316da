//! The seam between the runtime and what runs beside its services: the HTTP control plane and
//! the cluster.
//!
//! The runtime starts a plane at fixed moments of its own start, but it does not know which planes
//! exist: the composition root (`crate::planes`) lists them and hands the list to the builder.
//! A plane reads its settings itself, from what the program gave the builder and from the
//! configuration, so that an `[http]` table alone turns the control plane on.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{RuntimeHandle, RuntimeShared};
use crate::Error;
use crate::config::Loaded;

/// A kind of plane this build can run.
pub(crate) struct PlaneKind {
    /// Its name: the key of what the builder was given for it, and the service named in its
    /// start-up errors.
    pub(crate) name: &'static str,
    /// Reads its settings: what the builder was given (`explicit`, the plane's own type) over
    /// the configuration. `None` if this run does not ask for the plane.
    pub(crate) resolve: Resolve,
}

/// How a [`PlaneKind`] reads its settings.
pub(crate) type Resolve = fn(&Loaded, Option<Settings>) -> Result<Option<Box<dyn Plane>>, Error>;

/// What the program gave the builder for a plane, as the plane's own type.
pub(crate) type Settings = Box<dyn Any + Send>;

/// A plane of this run, configured. The runtime calls each moment once, in this order, for
/// every plane in the order the composition root lists them; a failure stops the start and is
/// the start's error.
///
/// There is no undo: a plane that fails, or that a later failure leaves behind, is dropped, so
/// what it holds (a bound listener) must be released by `Drop`; and what it starts for the
/// runtime's lifetime (the node, the server's task) it leaves in [`RuntimeShared`], where the
/// runtime's shutdown stops it.
pub(crate) trait Plane: Send {
    /// Before any service is built: take what must be held first (the control plane's port, so
    /// that a taken port fails the start before any service has run).
    fn bind<'a>(&'a mut self, _shared: &'a Arc<RuntimeShared>) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// The supervision tree runs and no service has started yet.
    fn prepare(&mut self, _runtime: &RuntimeHandle) {}

    /// Every enabled service has started; the runtime is not running yet (the node joins its
    /// cluster here, so that peers never see a service that is still starting).
    fn join<'a>(&'a mut self, _runtime: &'a RuntimeHandle) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// The runtime runs: serve until it stops.
    fn serve(self: Box<Self>, _runtime: &RuntimeHandle) {}
}

/// Takes the explicit settings of a plane back as its own type.
///
/// # Panics
///
/// If they are of another type: only the plane's own builder method stores them.
#[cfg_attr(not(any(feature = "http", feature = "cluster")), allow(dead_code))]
pub(crate) fn settings<T: Any>(explicit: Option<Settings>) -> Option<T> {
    explicit.map(|s| {
        *s.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("a plane's settings are stored by its own method"))
    })
}
