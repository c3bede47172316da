//! The composition root: which planes this build runs beside its services.
//!
//! The runtime starts the planes without knowing them (see `runtime::plane`); this module, the
//! only one above the edge, names each and hands the list to every builder.

use crate::runtime::plane::PlaneKind;
use crate::runtime::{Runtime, RuntimeBuilder};

/// In the order their settings are read, so that a start with a bad `[http]` and a bad
/// `[cluster]` reports the first. Each moment runs for every plane before the next moment
/// runs for any (see `runtime::plane`).
static PLANES: &[PlaneKind] = &[
    #[cfg(feature = "http")]
    crate::http::plane::PLANE,
    #[cfg(feature = "cluster")]
    crate::cluster::plane::PLANE,
];

impl Runtime {
    /// Starts building a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default)] struct Monitor;
    /// # impl sora::Service for Monitor {}
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder().service(Monitor::default).start().await?;
    /// assert!(runtime.is_ready().await);
    /// runtime.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new(PLANES)
    }
}
