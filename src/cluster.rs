//! Services across nodes, through `ractor_cluster` (feature `cluster`).
//!
//! A runtime given a [`ClusterConfig`] becomes a node: it listens for other nodes, connects to
//! its seeds, and serves the services it runs to the nodes that share its secret. A service that
//! runs on another node is reached through the same handles as a local one:
//!
//! - by name: [`RuntimeHandle::service_by_name`](crate::RuntimeHandle::service_by_name) finds a
//!   service of another node when none of that name runs here;
//! - by type: declare the type with
//!   [`RuntimeBuilder::remote`](crate::RuntimeBuilder::remote) (or disable it here) and
//!   [`RuntimeHandle::service`](crate::RuntimeHandle::service) gives a typed handle whose calls go
//!   to a node that runs it.
//!
//! A call goes to the local service when there is one, otherwise to one of the nodes that serve
//! it. Actions cross the wire as bincode through the action's declaration
//! ([`Definition::action`](crate::Definition::action)); priority, timeout and correlation id
//! travel with them, and errors come back as the same [`Error`](crate::Error) a local caller
//! would get. A call to a node that is lost meanwhile fails at once with
//! [`Error::ServiceUnavailable`](crate::Error::ServiceUnavailable) naming the node.
//!
//! ractor's process groups are process-wide, so a process is one node at most; a second runtime
//! with a cluster in the same process fails to start.
//!
//! See `docs/cluster.md` for setting a cluster up and what is guaranteed.

mod config;
mod events;
mod gateway;
mod keeper;
mod node;
pub(crate) mod plane;
mod remote;
mod transport;
mod wire;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::{ClusterConfig, ClusterTls, DEFAULT_MAX_PENDING, DEFAULT_PORT};
pub(crate) use node::ClusterShared;
pub use node::{PeerInfo, PeerState, SchemaKind, SchemaMismatch, SeedInfo, SeedState};
pub(crate) use wire::ServiceSchemas;

/// `tokio_rustls`, as ractor_cluster takes it, to build a [`ClusterTls`].
pub use tokio_rustls as tls;

/// The `ractor_cluster` that Sora's nodes run on, for programs that speak to a node as a plain
/// `ractor_cluster` node does (tools, and tests that attack one). A crate of the same build
/// that depended on `ractor_cluster` itself would turn on ractor's `cluster` feature for every
/// crate, Sora's own build without its `cluster` feature included, which then does not
/// compile: use this one.
pub use ractor_cluster;

/// This runtime's node: its name, its peers, its seeds.
///
/// Got from [`RuntimeHandle::cluster`](crate::RuntimeHandle::cluster).
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<ClusterShared>,
}

impl Cluster {
    pub(crate) fn new(shared: Arc<ClusterShared>) -> Self {
        Cluster { shared }
    }

    /// This node's name as its peers know it (`node@host`).
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Where this node listens for other nodes, as bound (a configured port 0 is a free one).
    pub fn listen_address(&self) -> std::net::SocketAddr {
        self.shared.listen_address()
    }

    /// The nodes this one has a session with, ready or not.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peers()
    }

    /// The seeds, and where this node stands with each.
    pub fn seeds(&self) -> Vec<SeedInfo> {
        self.shared.seeds()
    }

    /// Healthy when every seed is joined; degraded otherwise, naming each seed that is not and
    /// why (connecting, refused, unreachable). The HTTP plane's `/health` reports it.
    pub fn health(&self) -> crate::Health {
        self.shared.health()
    }

    /// Whether every seed has authenticated and its services are resolvable.
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// Waits until every seed is ready. A seed that refuses this node (another secret) is
    /// never ready: bound the wait with a timeout.
    pub async fn ready(&self) {
        self.shared.ready().await;
    }

    /// Waits until `condition` holds. It is checked at once, then after every change of the
    /// peers, the seeds, or the services other nodes serve; bound the wait with a timeout.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn f(runtime: sora::RuntimeHandle) {
    /// let cluster = runtime.cluster().expect("a node");
    /// cluster.wait_until(|c| c.serves("Translator")).await;
    /// # }
    /// ```
    pub async fn wait_until(&self, mut condition: impl FnMut(&Cluster) -> bool) {
        let me = self.clone();
        self.shared.wait_until(|_| condition(&me)).await;
    }

    /// Whether a node of the cluster other than this one serves `service` now.
    pub fn serves(&self, service: &str) -> bool {
        self.shared.serves(service)
    }

    /// The other nodes of the cluster that serve `service` now, by name, sorted.
    pub fn nodes_serving(&self, service: &str) -> Vec<String> {
        self.shared.nodes_serving(service)
    }

    /// The other nodes that forward events of `service` to this one now, by name, sorted:
    /// those that serve it while a subscription here takes its events.
    pub fn forwarding(&self, service: &str) -> Vec<String> {
        self.shared.forwarding(service)
    }

    /// The actions and events that another node serves with other types than this node
    /// declares them: calls and subscriptions to them are refused with
    /// [`Error::Incompatible`](crate::Error::Incompatible). Nodes compare their schemas as they
    /// join; [`health`](Self::health) is degraded while there is any.
    pub fn schema_mismatches(&self) -> Vec<SchemaMismatch> {
        self.shared.schema_mismatches()
    }

    /// How many messages from other nodes could not be decoded: malformed, or asking for more
    /// than [`DECODE_LIMIT`](crate::codec::DECODE_LIMIT). A request among them is answered with
    /// [`Error::Incompatible`](crate::Error::Incompatible); anything else is dropped.
    pub fn undecodable(&self) -> u64 {
        self.shared.undecodable.load(Ordering::Relaxed)
    }

    /// How many incoming connections are waiting to authenticate now (at most
    /// [`ClusterConfig::max_pending_connections`]).
    pub fn pending_connections(&self) -> usize {
        self.shared.links.pending(self.shared.config.max_pending)
    }

    /// How many incoming connections were closed as soon as they were accepted, because as many
    /// as [`ClusterConfig::max_pending_connections`] were already waiting to authenticate.
    pub fn turned_away(&self) -> u64 {
        self.shared.links.turned_away.load(Ordering::Relaxed)
    }
}

impl crate::RuntimeHandle {
    /// This runtime's node, when it has joined a cluster.
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster(&self) -> Option<Cluster> {
        ClusterShared::shared_of(&self.shared).map(Cluster::new)
    }
}
