//! The sessions with other nodes: what ractor_cluster says of each, kept in the peer table.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServerMessage};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ClusterShared;

/// How far a session with another node has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// The link is open; the nodes have not proved they share the secret yet.
    Connecting,
    /// The secret matched; the nodes are exchanging their process groups.
    Authenticated,
    /// The peer's services are resolvable from here.
    Ready,
}

/// Another node this node has a session with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct PeerInfo {
    /// The peer's name (`node@host`), once it has authenticated.
    pub node: Option<String>,
    /// Where the peer listens for other nodes, once it has authenticated.
    pub listens_on: Option<String>,
    /// The address of the link's other end.
    pub address: String,
    /// Whether this node opened the link.
    pub outgoing: bool,
    /// How far the session has come.
    pub state: PeerState,
}

pub(super) struct Peer {
    pub(super) info: PeerInfo,
    /// Fired when the session ends: calls waiting on this peer fail at once.
    pub(super) lost: CancellationToken,
}

/// Follows ractor_cluster's session events into the peer table.
pub(super) struct Watcher(pub(super) Weak<ClusterShared>);

impl Watcher {
    fn update(&self, session: &NodeServerSessionInformation, state: PeerState) {
        let Some(cluster) = self.0.upgrade() else {
            return;
        };
        let mut peer = cluster
            .peers
            .entry(session.node_id)
            .or_insert_with(|| Peer {
                info: PeerInfo {
                    node: None,
                    listens_on: None,
                    address: session.peer_addr.clone(),
                    outgoing: !session.is_server,
                    state,
                },
                lost: CancellationToken::new(),
            });
        peer.info.state = state;
        if let Some(name) = &session.peer_name {
            peer.info.node = Some(name.name.clone());
            peer.info.listens_on = Some(name.connection_string.clone());
        }
        drop(peer);
        cluster.bump();
    }
}

impl NodeEventSubscription for Watcher {
    fn node_session_opened(&self, session: NodeServerSessionInformation) {
        if let Some(cluster) = self.0.upgrade() {
            cluster.links.opened(session.node_id, &session.peer_addr);
            // Should ractor_cluster ever restart its own (shut) listener, it would advertise that
            // listener's port again: the port this node listens on is said once more.
            if let Some(server) = cluster.server.get() {
                let port = cluster.listen_address().port();
                let _ = server.cast(NodeServerMessage::PortChanged { port });
            }
        }
        self.update(&session, PeerState::Connecting);
    }

    fn node_session_authenticated(&self, session: NodeServerSessionInformation) {
        if let Some(cluster) = self.0.upgrade() {
            cluster.links.authenticated(session.node_id);
        }
        self.update(&session, PeerState::Authenticated);
    }

    fn node_session_ready(&self, session: NodeServerSessionInformation) {
        self.update(&session, PeerState::Ready);
        if let Some(name) = &session.peer_name {
            tracing::info!(peer = %name.name, address = %session.peer_addr, "a node joined");
        }
    }

    fn node_session_disconnected(&self, session: NodeServerSessionInformation) {
        let Some(cluster) = self.0.upgrade() else {
            return;
        };
        let timed_out = cluster.links.closed(session.node_id);
        let Some((_, peer)) = cluster.peers.remove(&session.node_id) else {
            return;
        };
        peer.lost.cancel();
        if let Some(node) = &peer.info.node {
            // Two nodes that dial each other keep one of their two sessions.
            if !cluster
                .peers
                .iter()
                .any(|p| p.info.node.as_ref() == Some(node))
            {
                cluster.drop_forwarder(node);
                cluster.compared().remove(node);
            }
        }
        match (&peer.info.node, peer.info.state) {
            (Some(node), PeerState::Authenticated | PeerState::Ready) => {
                tracing::warn!(peer = %node, address = %peer.info.address, "lost a node");
            }
            _ if timed_out => {
                let handshake = cluster.config.handshake_timeout;
                let address = &peer.info.address;
                if peer.info.outgoing {
                    tracing::warn!(
                        %address,
                        "the seed did not complete a handshake within {handshake:?}; the \
                         connection is closed and the seed tried again"
                    );
                    cluster.seeds_refused(address, format!("no handshake within {handshake:?}"));
                } else {
                    // Anyone can open these: said at 1, 2, 4, 8… of them, not each time.
                    let late = cluster.links.late.fetch_add(1, Ordering::Relaxed) + 1;
                    if late.is_power_of_two() {
                        tracing::warn!(
                            %address,
                            connections = late,
                            "a connection did not authenticate within {handshake:?}; closed"
                        );
                    }
                }
            }
            _ if peer.info.outgoing => {
                tracing::warn!(
                    address = %peer.info.address,
                    "the node refused this one before authenticating: are the secrets the same?"
                );
                cluster.seeds_refused(
                    &peer.info.address,
                    "the node closed the link before authenticating (a different secret?)".into(),
                );
            }
            _ => {
                tracing::warn!(
                    address = %peer.info.address,
                    "refused a node that did not authenticate: are the secrets the same?"
                );
            }
        }
        cluster.bump();
    }
}
