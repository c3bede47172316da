//! Services that register themselves where they are defined, with [`register!`](crate::register).
//!
//! Each `register!` adds an entry to a link-time list (the `inventory` crate); one call to
//! [`RuntimeBuilder::discover`](crate::RuntimeBuilder::discover) registers every entry of the
//! program, whatever module or crate defined it.

use crate::Service;
use crate::runtime::{Pending, PendingService};

/// One service registered with [`register!`](crate::register). Not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registered {
    make: fn() -> Discovered,
}

inventory::collect!(Registered);

impl Registered {
    /// An entry that builds its service's registration when the runtime starts.
    pub const fn new(make: fn() -> Discovered) -> Self {
        Registered { make }
    }
}

/// A discovered service's registration. Not for direct use.
#[doc(hidden)]
pub struct Discovered(pub(crate) Box<dyn Pending>);

impl std::fmt::Debug for Discovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Discovered").field(&self.0.name()).finish()
    }
}

/// The registration of `S`, built with `factory`. Not for direct use.
#[doc(hidden)]
pub fn discovered<S, F>(factory: F) -> Discovered
where
    S: Service,
    F: Fn() -> S + Send + Sync + 'static,
{
    Discovered(Box::new(PendingService::new(factory, |_| {})))
}

/// Every service registered in the program, sorted by name so that start order does not
/// depend on the linker.
pub(crate) fn all() -> Vec<Box<dyn Pending>> {
    let mut found: Vec<Box<dyn Pending>> = inventory::iter::<Registered>
        .into_iter()
        .map(|r| (r.make)().0)
        .collect();
    found.sort_by(|a, b| a.name().cmp(b.name()));
    found
}

/// Registers a service type where it is defined, so that
/// [`RuntimeBuilder::discover`](crate::RuntimeBuilder::discover) starts it.
///
/// `register!(Type)` builds the service with `Default`; `register!(Type, factory)` with a
/// function or a closure that captures nothing. The service's
/// [`define`](crate::Service::define) names it and declares its defaults, as with explicit
/// registration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::{Definition, Schedule, Service};
///
/// #[derive(Default)]
/// struct Cleanup;
///
/// impl Service for Cleanup {
///     fn define(def: &mut Definition<Self>) {
///         def.name("cleanup").periodic(Schedule::every(Duration::from_secs(3600)));
///     }
/// }
/// sora::register!(Cleanup);
///
/// struct Mailer { retries: u32 }
/// impl Service for Mailer {
///     async fn start(&self, _: &sora::Context) -> Result<(), sora::BoxError> {
///         assert_eq!(self.retries, 3);
///         Ok(())
///     }
/// }
/// sora::register!(Mailer, || Mailer { retries: 3 });
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), sora::Error> {
/// let runtime = sora::Runtime::builder().discover().start().await?;
/// assert!(runtime.service_by_name("cleanup").is_ok());
/// assert!(runtime.service::<Mailer>().is_ok());
/// # runtime.shutdown().await }
/// ```
#[macro_export]
macro_rules! register {
    ($service:ty $(,)?) => {
        $crate::register!($service, <$service as ::core::default::Default>::default);
    };
    ($service:ty, $factory:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::__private::Registered::new(|| {
                $crate::__private::discovered::<$service, _>($factory)
            })
        }
    };
}
