//! The node: ractor_cluster's `NodeServer`, its process groups, and the calls this node sends to
//! the others. The sessions with its peers (`sessions`), the seeds it keeps connected to
//! (`seeds`) and the comparison of schemas with each peer (`schemas`) have modules of their own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorId, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ClusterConfig;
use super::gateway::{GatewayArgs, GatewayMessage};
use super::keeper::{self, KeeperMessage};
use super::transport::{self, Links};
use super::wire::{self, Reply, Request};
use crate::system::RuntimeShared;
use crate::{Error, Health};

mod schemas;
mod seeds;
mod sessions;

pub use schemas::{SchemaKind, SchemaMismatch};
use seeds::{Seed, keep_connected};
pub use seeds::{SeedInfo, SeedState};
use sessions::{Peer, Watcher};
pub use sessions::{PeerInfo, PeerState};

/// One runtime's part in a cluster.
pub(crate) struct ClusterShared {
    /// This node's name as its peers know it (`node@host`).
    pub(crate) node: String,
    pub(super) config: ClusterConfig,
    /// The runtime's event bus, where events of other nodes are delivered.
    events: Arc<crate::event::EventsShared>,
    /// The runtime, whose declarations the schemas of other nodes are compared with.
    runtime: Weak<RuntimeShared>,
    /// Each node whose schemas were compared with this one's: the gateway that answered (a
    /// restarted node is compared again), and what differs.
    compared: Mutex<std::collections::HashMap<String, (ActorId, Vec<SchemaMismatch>)>>,
    server: OnceLock<ActorRef<NodeServerMessage>>,
    /// The supervisor of this node's gateway.
    keeper: OnceLock<ActorRef<KeeperMessage>>,
    /// Why the gateway is down, while it is.
    gateway_down: Mutex<Option<String>>,
    /// The connections that have not authenticated yet.
    pub(super) links: Arc<Links>,
    /// Where the node listens, as bound.
    listening: OnceLock<SocketAddr>,
    peers: DashMap<u64, Peer>,
    seeds: Vec<Arc<Seed>>,
    changed: watch::Sender<u64>,
    /// Messages from other nodes that could not be decoded.
    pub(crate) undecodable: AtomicU64,
    /// The peers already warned about for such a message (at most [`COMPLAINTS`]).
    complained: Mutex<std::collections::HashSet<String>>,
    next: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set once the node has left and given the process's slot back.
    left: AtomicBool,
    /// The events of other nodes that subscriptions here take.
    pub(super) interests: Mutex<super::events::Interests>,
    /// What this node forwards to each node that takes its events, by node.
    pub(super) forwarders: Mutex<std::collections::HashMap<String, Arc<super::events::Forwarder>>>,
}

/// A gateway of another node that serves a service, that node's name, and its session's token.
#[derive(Clone)]
pub(super) struct Serving {
    pub(super) gateway: ActorCell,
    pub(super) node: String,
    pub(super) lost: CancellationToken,
}

impl std::fmt::Debug for ClusterShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterShared")
            .field("node", &self.node)
            .field("cluster", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// How many peers a node names in warnings about messages it could not decode; past them, it
/// counts such messages and logs them at debug level only, so that no peer can flood its log.
const COMPLAINTS: usize = 64;

/// Whether a process already hosts a node: ractor's process groups are process-wide, so two
/// nodes in one process would see each other's services as their own.
static NODE_IN_PROCESS: Mutex<bool> = Mutex::new(false);

impl ClusterShared {
    /// The process group of the gateways that serve `service`.
    pub(crate) fn group(&self, service: &str) -> String {
        format!("sora:{}:service:{service}", self.config.name)
    }

    /// The process group of the gateway of the node called `node`.
    fn node_group(&self, node: &str) -> String {
        format!("sora:{}:node:{node}", self.config.name)
    }

    /// The gateway of the node called `node`, waiting for its process groups to arrive (at
    /// most the handshake timeout): a node may ask for events before this one has its groups.
    pub(super) async fn gateway_of(&self, node: &str) -> Option<ActorRef<GatewayMessage>> {
        let found = tokio::time::timeout(
            self.config.handshake_timeout,
            self.wait_until(|c| c.gateway_now(node).is_some()),
        )
        .await;
        found.ok().and_then(|()| self.gateway_now(node))
    }

    /// The gateway of the node called `node`, if this node knows it now.
    pub(super) fn gateway_now(&self, node: &str) -> Option<ActorRef<GatewayMessage>> {
        ractor::pg::get_members(&self.node_group(node))
            .into_iter()
            .find(|cell| !cell.get_id().is_local())
            .map(ActorRef::from)
    }

    /// Starts the node: its server, its gateway (in the groups of `services`) and a connector
    /// per seed.
    pub(crate) async fn start(
        config: ClusterConfig,
        runtime: &Arc<RuntimeShared>,
        services: Vec<String>,
    ) -> Result<Arc<Self>, Error> {
        let refuse = |reason: String| Error::StartupFailed {
            service: "cluster".into(),
            reason,
        };
        if let Some((key, why)) = config.invalid() {
            return Err(refuse(format!("`{key}` {why}")));
        }
        {
            let mut taken = NODE_IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
            if *taken {
                return Err(refuse(
                    "this process already hosts a node of a cluster (ractor's process groups are \
                     process-wide, so a process can be one node only)"
                        .into(),
                ));
            }
            *taken = true;
        }
        let host = config.listen.ip().to_string();
        let node = format!("{}@{host}", config.node);
        let seeds = config
            .seeds
            .iter()
            .map(|address| {
                Arc::new(Seed {
                    address: address.clone(),
                    state: Mutex::new(SeedState::Connecting),
                })
            })
            .collect();
        let links = Arc::new(Links::new(config.max_pending));
        let cluster = Arc::new(ClusterShared {
            node,
            seeds,
            config,
            events: runtime.events.clone(),
            runtime: Arc::downgrade(runtime),
            compared: Mutex::default(),
            server: OnceLock::new(),
            keeper: OnceLock::new(),
            gateway_down: Mutex::new(None),
            links,
            listening: OnceLock::new(),
            peers: DashMap::new(),
            changed: watch::Sender::new(0),
            undecodable: AtomicU64::new(0),
            complained: Mutex::default(),
            next: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
            left: AtomicBool::new(false),
            interests: Mutex::default(),
            forwarders: Mutex::default(),
        });
        if let Err(err) = cluster.spawn(runtime, services).await {
            cluster.stop().await;
            return Err(refuse(err));
        }
        Ok(cluster)
    }

    async fn spawn(
        self: &Arc<Self>,
        runtime: &Arc<RuntimeShared>,
        services: Vec<String>,
    ) -> Result<(), String> {
        let config = &self.config;
        // Connections are accepted here, guarded, and handed over; ractor_cluster's own
        // listener gets a door that opens to no one (see `transport.rs`).
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let listening = listener.local_addr().map_err(|e| e.to_string())?;
        let _ = self.listening.set(listening);
        let (door, refusing) = transport::closed_door();
        let server = NodeServer::new(
            0,
            config.secret.clone(),
            config.node.clone(),
            config.listen.ip().to_string(),
            Some(refusing),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(door.ip())
        .with_max_inbound_frame_size(transport::max_frame(config));
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| format!("cannot start the node's server: {e}"))?;
        let _ = self.server.set(server.clone());
        // Other nodes learn where this one listens from its handshake.
        server
            .cast(NodeServerMessage::PortChanged {
                port: listening.port(),
            })
            .map_err(|e| e.to_string())?;
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "sora".into(),
                subscription: Box::new(Watcher(Arc::downgrade(self))),
            })
            .map_err(|e| e.to_string())?;
        let mut groups: Vec<String> = services.iter().map(|s| self.group(s)).collect();
        groups.push(self.node_group(&self.node));
        let args = GatewayArgs {
            runtime: runtime.clone(),
            groups,
        };
        let keeper = keeper::start(self, args).await?;
        let _ = self.keeper.set(keeper);
        let me = Arc::downgrade(self);
        runtime.events.on_removed(Box::new(move |id| {
            if let Some(cluster) = me.upgrade() {
                cluster.subscription_ended(id);
            }
        }));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(tokio::spawn(transport::accept(
            listener,
            server,
            self.links.clone(),
            config.clone(),
        )));
        tasks.push(tokio::spawn(follow_events(Arc::downgrade(self))));
        for seed in &self.seeds {
            tasks.push(tokio::spawn(keep_connected(
                Arc::downgrade(self),
                seed.clone(),
            )));
        }
        tracing::info!(node = %self.node, listen = %listening, seeds = ?config.seeds, "joined the cluster");
        Ok(())
    }

    /// Leaves the cluster in order: stops connecting, stops the gateway and the server (which
    /// closes every session), then frees the process's slot.
    pub(crate) async fn stop(&self) {
        self.stop_connecting();
        if let Some(keeper) = self.keeper.get() {
            keeper.stop(None);
            let _ = keeper.wait(Some(Duration::from_secs(5))).await;
        }
        if let Some(server) = self.server.get() {
            server.stop(None);
            let _ = server.wait(Some(Duration::from_secs(5))).await;
        }
        self.leave();
    }

    /// Leaves the cluster at once, without waiting: for a runtime dropped without a shutdown.
    pub(crate) fn leave_now(&self) {
        self.stop_connecting();
        if let Some(keeper) = self.keeper.get() {
            // Its gateway is linked to it, and goes with it.
            keeper.kill();
        }
        if let Some(server) = self.server.get() {
            server.kill();
        }
        self.leave();
    }

    fn stop_connecting(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn leave(&self) {
        for peer in self.peers.iter() {
            peer.lost.cancel();
        }
        self.peers.clear();
        if !self.left.swap(true, Ordering::AcqRel) {
            *NODE_IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner()) = false;
        }
        self.bump();
    }

    /// Counts a message from `peer` (as far as it says) that could not be decoded, and says so:
    /// a warning the first time for each peer, debug after that.
    pub(crate) fn undecodable(&self, peer: Option<&str>, what: &str, err: &dyn std::fmt::Display) {
        self.undecodable.fetch_add(1, Ordering::Relaxed);
        let peer = peer.unwrap_or("a node that did not name itself");
        let first = {
            let mut complained = self.complained.lock().unwrap_or_else(|e| e.into_inner());
            if complained.len() < COMPLAINTS {
                complained.insert(peer.to_owned())
            } else {
                // So many names (made up, perhaps): said at 1, 2, 4, 8… more such messages.
                let past = self.undecodable.load(Ordering::Relaxed);
                !complained.contains(peer) && past.is_power_of_two()
            }
        };
        if first {
            tracing::warn!(
                %peer,
                %err,
                "{what} from another node could not be decoded; it is refused (further ones from \
                 this node are only counted, in `Cluster::undecodable`)"
            );
        } else {
            tracing::debug!(%peer, %err, "{what} from another node could not be decoded");
        }
    }

    /// Records that the gateway went down for `reason`, or (`None`) came back.
    pub(super) fn gateway_down(&self, reason: Option<String>) {
        *self.gateway_down.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        self.bump();
    }

    pub(crate) fn listen_address(&self) -> SocketAddr {
        self.listening.get().copied().unwrap_or(self.config.listen)
    }

    pub(crate) fn events(&self) -> Arc<crate::event::EventsShared> {
        self.events.clone()
    }

    /// Whether every seed has authenticated and exchanged its groups: read from the sessions
    /// themselves, so it changes the moment a session does.
    pub(crate) fn is_ready(&self) -> bool {
        self.seeds.iter().all(|s| self.seed_ready(s))
    }

    /// Waits until every seed is ready.
    pub(crate) async fn ready(&self) {
        self.wait_until(|c| c.is_ready()).await;
    }

    /// Waits until `condition` holds; it is checked at once and after every change of the
    /// peers, the seeds or the process groups.
    pub(crate) async fn wait_until(&self, mut condition: impl FnMut(&Self) -> bool) {
        let mut changed = self.changed.subscribe();
        while !condition(self) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Healthy when every seed is joined; degraded, naming each seed that is not, otherwise:
    /// this node works, but the services of a missing seed cannot be reached.
    pub(crate) fn health(&self) -> Health {
        let mut problems = Vec::new();
        if let Some(reason) = &*self.gateway_down.lock().unwrap_or_else(|e| e.into_inner()) {
            problems.push(format!(
                "the gateway is down ({reason}); other nodes cannot reach this one until it is \
                 restarted"
            ));
        }
        let missing: Vec<String> = self
            .seeds()
            .into_iter()
            .filter_map(|seed| match seed.state {
                SeedState::Ready => None,
                SeedState::Connecting => Some(format!("{} connecting", seed.address)),
                SeedState::Refused { reason } => {
                    Some(format!("{} refused: {reason}", seed.address))
                }
                SeedState::Unreachable { reason } => {
                    Some(format!("{} unreachable: {reason}", seed.address))
                }
            })
            .collect();
        if !missing.is_empty() {
            problems.push(format!("seeds not joined: {}", missing.join("; ")));
        }
        let mismatches = self.schema_mismatches();
        if !mismatches.is_empty() {
            let listed: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "types differ from this node's: {}",
                listed.join(", ")
            ));
        }
        if problems.is_empty() {
            Health::Healthy
        } else {
            Health::degraded(problems.join("; "))
        }
    }

    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self.peers.iter().map(|p| p.info.clone()).collect();
        peers.sort_by(|a, b| a.node.cmp(&b.node).then(a.address.cmp(&b.address)));
        peers
    }

    pub(crate) fn seeds(&self) -> Vec<SeedInfo> {
        self.seeds
            .iter()
            .map(|s| SeedInfo {
                address: s.address.clone(),
                state: match s.get() {
                    _ if self.seed_ready(s) => SeedState::Ready,
                    // Ready when last looked at, and the session has just ended.
                    SeedState::Ready => SeedState::Connecting,
                    other => other,
                },
            })
            .collect()
    }

    /// The gateways of other nodes that serve `service`.
    pub(crate) fn remote_members(&self, service: &str) -> Vec<ActorCell> {
        ractor::pg::get_members(&self.group(service))
            .into_iter()
            .filter(|cell| !cell.get_id().is_local())
            .collect()
    }

    /// Whether another node serves `service` now.
    pub(crate) fn serves(&self, service: &str) -> bool {
        !self.remote_members(service).is_empty()
    }

    /// Sends a query and decodes its answer.
    pub(crate) async fn query<T: serde::de::DeserializeOwned>(
        self: &Arc<Self>,
        request: Request,
    ) -> Result<T, Error> {
        let (node, reply) = self.exchange(request).await;
        wire::decode(&reply?).map_err(|err| {
            self.undecodable(Some(&node), "an answer", &err);
            Error::Incompatible {
                node,
                reason: format!("its answer could not be decoded: {err}"),
            }
        })
    }

    /// Sends `request` to a node that serves its service now, so that requests leave in the
    /// order they are made; the future waits for the reply and names the node that answered.
    /// It fails at once with [`Error::ServiceUnavailable`] naming the node if the node is lost
    /// meanwhile.
    pub(crate) fn exchange(
        self: &Arc<Self>,
        request: Request,
    ) -> BoxFuture<'static, (String, Reply)> {
        match self.pick(request.service()) {
            Ok(to) => {
                let node = to.node.clone();
                let reply = self.call(&to, request);
                Box::pin(async move { (node, reply.await) })
            }
            Err(err) => Box::pin(std::future::ready((String::new(), Err(err)))),
        }
    }

    /// Sends `request` now to the gateway of `node`, which must serve the request's service (a
    /// job is followed on the node that committed it); fails at once with
    /// [`Error::ServiceUnavailable`] if that node is not among those that serve it now.
    pub(crate) fn exchange_with(
        self: &Arc<Self>,
        node: &str,
        request: Request,
    ) -> BoxFuture<'static, Reply> {
        let service = request.service().to_owned();
        match self.serving(&service).into_iter().find(|s| s.node == node) {
            Some(to) => self.call(&to, request),
            None => Box::pin(std::future::ready(Err(Error::ServiceUnavailable {
                service,
                reason: format!("node `{node}`, which keeps the job, is not reachable now"),
            }))),
        }
    }

    /// Sends `request` to the gateway `to` now; the future waits for the reply, and fails at
    /// once with [`Error::ServiceUnavailable`] naming the node if it is lost meanwhile.
    pub(super) fn call(
        self: &Arc<Self>,
        to: &Serving,
        request: Request,
    ) -> BoxFuture<'static, Reply> {
        let service = request.service().to_owned();
        let bytes = match self.sized(&request) {
            Ok(bytes) => bytes,
            Err(err) => return Box::pin(std::future::ready(Err(err))),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gateway: ActorRef<GatewayMessage> = to.gateway.clone().into();
        let sent = gateway.cast(GatewayMessage::Call(bytes, tx.into()));
        let (node, lost) = (to.node.clone(), to.lost.clone());
        let cluster = self.clone();
        Box::pin(async move {
            if sent.is_err() {
                return Err(node_lost(&service, &node));
            }
            let answer = tokio::select! {
                answer = rx => answer,
                () = lost.cancelled() => return Err(node_lost(&service, &node)),
            };
            match answer {
                Ok(bytes) => wire::decode::<Reply>(&bytes).unwrap_or_else(|err| {
                    cluster.undecodable(Some(&node), "a reply", &err);
                    Err(Error::Incompatible {
                        node: node.clone(),
                        reason: format!("its reply could not be decoded: {err}"),
                    })
                }),
                // The session dropped the reply port: the link is gone.
                Err(_) => Err(node_lost(&service, &node)),
            }
        })
    }

    /// Sends `request` to a node that serves its service, without waiting.
    pub(crate) fn tell(&self, request: Request) -> Result<(), Error> {
        let service = request.service().to_owned();
        let to = self.pick(&service)?;
        let bytes = self.sized(&request)?;
        ActorRef::<GatewayMessage>::from(to.gateway)
            .cast(GatewayMessage::Tell(bytes))
            .map_err(|_| node_lost(&service, &to.node))
    }

    /// A request as it crosses, if it fits the largest message a node takes.
    fn sized(&self, request: &Request) -> Result<Vec<u8>, Error> {
        let limit = self.config.max_message_size;
        wire::fits(wire::encode_request(&self.node, request), limit).map_err(|len| {
            Error::BadParameters {
                service: request.service().to_owned(),
                action: request.label(),
                field: None,
                message: format!(
                    "the request is {len} bytes, more than the {limit} a node of the cluster \
                     takes in one message"
                ),
            }
        })
    }

    /// The gateways of other nodes that serve `service` and whose sessions are up.
    pub(super) fn serving(&self, service: &str) -> Vec<Serving> {
        self.remote_members(service)
            .into_iter()
            .filter_map(|gateway| {
                let ActorId::Remote { node_id, .. } = gateway.get_id() else {
                    return None;
                };
                let peer = self.peers.get(&node_id)?;
                let node = peer
                    .info
                    .node
                    .clone()
                    .unwrap_or_else(|| peer.info.address.clone());
                let lost = peer.lost.clone();
                Some(Serving {
                    gateway,
                    node,
                    lost,
                })
            })
            .collect()
    }

    pub(crate) fn nodes_serving(&self, service: &str) -> Vec<String> {
        node_names(self.serving(service))
    }

    /// A gateway that serves `service`: round robin among the nodes that serve it now.
    fn pick(&self, service: &str) -> Result<Serving, Error> {
        let serving = self.serving(service);
        if serving.is_empty() {
            let reason = if self.remote_members(service).is_empty() {
                "no node of the cluster serves it"
            } else {
                "the nodes that served it are lost"
            };
            return Err(Error::ServiceUnavailable {
                service: service.to_owned(),
                reason: reason.into(),
            });
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(serving[start % serving.len()].clone())
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The names of the nodes of `serving`, sorted, each once.
pub(super) fn node_names(serving: impl IntoIterator<Item = Serving>) -> Vec<String> {
    let mut nodes: Vec<String> = serving.into_iter().map(|s| s.node).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

fn node_lost(service: &str, node: &str) -> Error {
    Error::ServiceUnavailable {
        service: service.to_owned(),
        reason: format!("node `{node}` was lost"),
    }
}

/// Follows the nodes as they come and go: compares the schemas of each new one, and keeps the
/// events of other nodes flowing (see `events.rs`).
async fn follow_events(cluster: Weak<ClusterShared>) {
    let Some(strong) = cluster.upgrade() else {
        return;
    };
    let mut changed = strong.changed.subscribe();
    drop(strong);
    while changed.changed().await.is_ok() {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        // Neither waits for the other: a slow node holds up neither its comparison's peers nor
        // the subscriptions.
        tokio::join!(cluster.compare_schemas(), cluster.resubscribe());
    }
}
