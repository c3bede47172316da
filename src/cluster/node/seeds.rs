//! The seeds this node keeps connected to, dialled again with backoff whenever their session is
//! gone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::super::transport;
use super::ClusterShared;
use super::sessions::PeerState;

/// Where this node stands with one of its seeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeedState {
    /// Not reached yet.
    Connecting,
    /// Connected and authenticated: its services are resolvable.
    Ready,
    /// The seed closed the link before authenticating: its secret differs, or it is not a node.
    Refused {
        /// What happened.
        reason: String,
    },
    /// Nothing answered at the seed's address.
    Unreachable {
        /// What the connection attempt said.
        reason: String,
    },
}

/// A seed and where this node stands with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct SeedInfo {
    /// The seed's address as configured.
    pub address: String,
    /// Where this node stands with it.
    pub state: SeedState,
}

pub(super) struct Seed {
    pub(super) address: String,
    pub(super) state: Mutex<SeedState>,
}

impl Seed {
    pub(super) fn set(&self, state: SeedState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub(super) fn get(&self) -> SeedState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Whether a configured address (`host:port`) and an address a session reports are one.
fn same_address(configured: &str, reported: &str) -> bool {
    if configured == reported {
        return true;
    }
    let Ok(reported) = reported.parse::<SocketAddr>() else {
        return false;
    };
    use std::net::ToSocketAddrs;
    configured
        .to_socket_addrs()
        .map(|mut all| all.any(|a| a == reported))
        .unwrap_or(false)
}

impl ClusterShared {
    /// Marks the seeds at `address` refused, for `reason`.
    pub(super) fn seeds_refused(&self, address: &str, reason: String) {
        for seed in &self.seeds {
            if same_address(&seed.address, address) {
                seed.set(SeedState::Refused {
                    reason: reason.clone(),
                });
            }
        }
    }

    /// Whether a ready session reaches `seed`, whichever node opened it.
    pub(super) fn seed_ready(&self, seed: &Seed) -> bool {
        self.peers.iter().any(|p| {
            p.info.state == PeerState::Ready
                && (p.info.outgoing && same_address(&seed.address, &p.info.address)
                    || p.info
                        .listens_on
                        .as_deref()
                        .is_some_and(|l| same_address(&seed.address, l)))
        })
    }

    async fn dial(&self, seed: &Seed) -> Result<(), String> {
        let server = self.server.get().ok_or("the node is not started")?;
        transport::dial(server, &self.links, &self.config, &seed.address).await
    }
}

/// Keeps this node connected to one seed: dials, waits for the handshake, and dials again with
/// backoff whenever the session is gone.
pub(super) async fn keep_connected(cluster: Weak<ClusterShared>, seed: Arc<Seed>) {
    let Some(strong) = cluster.upgrade() else {
        return;
    };
    let (min, max) = strong.config.reconnect;
    let handshake = strong.config.handshake_timeout;
    let mut changed = strong.changed.subscribe();
    drop(strong);
    let mut delay = min;
    loop {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if cluster.seed_ready(&seed) {
            if seed.get() != SeedState::Ready {
                seed.set(SeedState::Ready);
                cluster.bump();
            }
            delay = min;
            drop(cluster);
            // Connected: nothing to do until the sessions change.
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        }
        if seed.get() == SeedState::Ready {
            tracing::warn!(seed = %seed.address, "lost the seed; reconnecting");
            seed.set(SeedState::Connecting);
            cluster.bump();
        }
        match cluster.dial(&seed).await {
            Err(reason) => {
                tracing::debug!(seed = %seed.address, %reason, "cannot reach the seed");
                seed.set(SeedState::Unreachable { reason });
                cluster.bump();
            }
            Ok(()) => {
                let deadline = tokio::time::Instant::now() + handshake;
                seed.set(SeedState::Connecting);
                loop {
                    if cluster.seed_ready(&seed) || matches!(seed.get(), SeedState::Refused { .. })
                    {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, changed.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            // The link closes itself at its deadline and says so (see
                            // `transport.rs`); this is the same deadline, seen from here.
                            seed.set(SeedState::Refused {
                                reason: format!("no handshake within {handshake:?}"),
                            });
                            break;
                        }
                    }
                }
                if cluster.seed_ready(&seed) {
                    continue;
                }
            }
        }
        drop(cluster);
        let jitter = delay.mul_f64(fastrand::f64() * 0.25);
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(max);
    }
}
