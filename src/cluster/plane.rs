//! The cluster as one of the runtime's planes: the node joins once every service has started.

use futures::future::BoxFuture;

use super::{ClusterConfig, ClusterShared};
use crate::Error;
use crate::config::Loaded;
use crate::runtime::plane::{self, Plane, PlaneKind, Settings};
use crate::runtime::{RuntimeBuilder, RuntimeHandle};

/// The cluster, for the composition root's list.
pub(crate) const PLANE: PlaneKind = PlaneKind {
    name: "cluster",
    resolve,
};

fn resolve(loaded: &Loaded, explicit: Option<Settings>) -> Result<Option<Box<dyn Plane>>, Error> {
    let config = ClusterConfig::resolve(loaded, plane::settings(explicit))?;
    Ok(config.map(|config| Box::new(Joining(Some(config))) as Box<dyn Plane>))
}

/// The node's settings until it joins.
struct Joining(Option<ClusterConfig>);

impl Plane for Joining {
    fn join<'a>(&'a mut self, runtime: &'a RuntimeHandle) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let Some(config) = self.0.take() else {
                return Ok(());
            };
            let shared = &runtime.shared;
            // The node serves the services that run here.
            let services = shared
                .by_name
                .iter()
                .filter(|s| s.shared().enabled)
                .map(|s| s.name().to_owned())
                .collect();
            let node = ClusterShared::start(config, shared, services).await?;
            let _ = shared.cluster.set(node);
            Ok(())
        })
    }
}

impl RuntimeBuilder {
    /// Makes the runtime a node of a cluster (see [`cluster`](crate::cluster)), with these
    /// settings instead of the configuration's `[cluster]` table (which alone joins too).
    ///
    /// The node listens once every service has started; if it cannot, the services are stopped
    /// and [`start`](Self::start) fails with [`Error::StartupFailed`] naming `cluster`.
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster(self, config: ClusterConfig) -> Self {
        self.plane(PLANE.name, config)
    }
}
