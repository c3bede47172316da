//! The control plane as one of the runtime's planes: bound before the services start, built
//! before they emit, served once the runtime runs.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::HttpConfig;
use super::server::{Bound, Prepared};
use crate::Error;
use crate::config::Loaded;
use crate::runtime::plane::{self, Plane, PlaneKind, Settings};
use crate::runtime::{RuntimeBuilder, RuntimeHandle, RuntimeShared};

/// The control plane, for the composition root's list.
pub(crate) const PLANE: PlaneKind = PlaneKind {
    name: "http",
    resolve,
};

fn resolve(loaded: &Loaded, explicit: Option<Settings>) -> Result<Option<Box<dyn Plane>>, Error> {
    let config = HttpConfig::resolve(loaded, plane::settings(explicit))?;
    Ok(config.map(|config| Box::new(Stage::Configured(config)) as Box<dyn Plane>))
}

/// How far the control plane has come in the runtime's start.
enum Stage {
    Configured(HttpConfig),
    Bound(Bound),
    Prepared(Prepared),
    /// Between two stages, or after a failed bind.
    Moving,
}

impl Plane for Stage {
    fn bind<'a>(&'a mut self, shared: &'a Arc<RuntimeShared>) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let config = match std::mem::replace(self, Stage::Moving) {
                Stage::Configured(config) => config,
                other => {
                    *self = other;
                    return Ok(());
                }
            };
            let address = config.address;
            let bound = Bound::bind(config)
                .await
                .map_err(|e| Error::StartupFailed {
                    service: PLANE.name.into(),
                    reason: format!("cannot listen on {address}: {e}"),
                })?;
            let _ = shared.http_address.set(bound.local_addr().ok());
            // Calls are counted from the first, start-up included.
            shared.metrics();
            *self = Stage::Bound(bound);
            Ok(())
        })
    }

    fn prepare(&mut self, runtime: &RuntimeHandle) {
        // Its live stream subscribes now, to keep the events services emit as they start.
        *self = match std::mem::replace(self, Stage::Moving) {
            Stage::Bound(bound) => Stage::Prepared(bound.prepare(runtime.clone())),
            other => other,
        };
    }

    fn serve(self: Box<Self>, runtime: &RuntimeHandle) {
        if let Stage::Prepared(prepared) = *self {
            let task = prepared.serve();
            *runtime
                .shared
                .http_task
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
    }
}

impl RuntimeBuilder {
    /// Serves the HTTP control plane (see [`http`](crate::http)) while the runtime runs, with
    /// these settings instead of the configuration's `[http]` table (which alone serves it
    /// too); only the token still comes from `SORA_TOKEN` or the file when none is set here.
    ///
    /// The address is bound before any service starts: a taken port fails the start with
    /// [`Error::StartupFailed`] naming `http`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default)] struct Monitor;
    /// # impl sora::Service for Monitor {}
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// use sora::http::HttpConfig;
    ///
    /// let runtime = sora::Runtime::builder()
    ///     .service(Monitor::default)
    ///     .http(HttpConfig::local(0))
    ///     .start()
    ///     .await?;
    /// assert!(runtime.handle().http_address().is_some());
    /// runtime.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self, config: HttpConfig) -> Self {
        self.plane(PLANE.name, config)
    }
}
