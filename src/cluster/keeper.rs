//! The keeper: the supervisor of a node's gateway.
//!
//! Other nodes reach this one only through its gateway, so a gateway that stopped would leave a
//! node that looks alive and serves nobody. The keeper restarts it, with the same backoff as a
//! service's restarts; the new gateway joins the same process groups, and the node's health is
//! degraded, naming the gateway, while it is down.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use super::gateway::{Gateway, GatewayArgs, GatewayMessage};
use super::node::ClusterShared;
use crate::supervisor::Backoff;

pub(super) struct Keeper;

pub(super) enum KeeperMessage {
    /// Starts a gateway again (the one that stopped is gone).
    Restart,
}

impl ractor::Message for KeeperMessage {}

pub(super) struct KeeperArgs {
    pub(super) cluster: Weak<ClusterShared>,
    pub(super) gateway: GatewayArgs,
}

pub(super) struct KeeperState {
    cluster: Weak<ClusterShared>,
    args: GatewayArgs,
    gateway: Option<ActorRef<GatewayMessage>>,
    started: Instant,
    /// Restarts since the gateway last ran stably.
    attempt: u32,
}

impl KeeperState {
    async fn spawn(&mut self, myself: &ActorRef<KeeperMessage>) -> Result<(), ActorProcessingErr> {
        // From the attempt: a gateway that fails to start ran for no time at all.
        self.started = Instant::now();
        let (gateway, _) =
            Actor::spawn_linked(None, Gateway, self.args.clone(), myself.get_cell()).await?;
        self.gateway = Some(gateway);
        Ok(())
    }

    /// Marks the gateway down for `reason` and schedules its restart.
    fn lost(&mut self, myself: &ActorRef<KeeperMessage>, reason: String) {
        self.gateway = None;
        // As for a service: a gateway that ran stably starts over from the first delay.
        let backoff = Backoff::default();
        if self.started.elapsed() >= backoff.reset_after {
            self.attempt = 0;
        }
        self.attempt += 1;
        let delay = backoff.delay(self.attempt);
        tracing::error!(%reason, ?delay, attempt = self.attempt, "cluster: the gateway stopped; restarting it");
        if let Some(cluster) = self.cluster.upgrade() {
            cluster.gateway_down(Some(reason));
        }
        drop(myself.send_after(delay, || KeeperMessage::Restart));
    }
}

impl Actor for Keeper {
    type Msg = KeeperMessage;
    type State = KeeperState;
    type Arguments = KeeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KeeperMessage>,
        args: KeeperArgs,
    ) -> Result<KeeperState, ActorProcessingErr> {
        let mut state = KeeperState {
            cluster: args.cluster,
            args: args.gateway,
            gateway: None,
            started: Instant::now(),
            attempt: 0,
        };
        state.spawn(&myself).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<KeeperMessage>,
        message: KeeperMessage,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            KeeperMessage::Restart if state.gateway.is_none() => match state.spawn(&myself).await {
                Ok(()) => {
                    tracing::info!(
                        groups = state.args.groups.len(),
                        "cluster: the gateway is back and has joined its groups"
                    );
                    if let Some(cluster) = state.cluster.upgrade() {
                        cluster.gateway_down(None);
                    }
                }
                Err(err) => state.lost(&myself, format!("it could not start again: {err}")),
            },
            KeeperMessage::Restart => {}
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<KeeperMessage>,
        event: SupervisionEvent,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        let current = state.gateway.as_ref().map(|g| g.get_id());
        let (id, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id(),
                format!(
                    "stopped: {}",
                    reason.as_deref().unwrap_or("no reason given")
                ),
            ),
            _ => return Ok(()),
        };
        if current == Some(id) {
            state.lost(&myself, reason);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KeeperMessage>,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(gateway) = state.gateway.take() {
            gateway.stop(None);
            let _ = gateway.wait(Some(Duration::from_secs(5))).await;
        }
        Ok(())
    }
}

/// Starts the keeper, and with it the node's first gateway.
pub(super) async fn start(
    cluster: &Arc<ClusterShared>,
    gateway: GatewayArgs,
) -> Result<ActorRef<KeeperMessage>, String> {
    let args = KeeperArgs {
        cluster: Arc::downgrade(cluster),
        gateway,
    };
    let (keeper, _) = Actor::spawn(None, Keeper, args)
        .await
        .map_err(|e| format!("cannot start the gateway: {e}"))?;
    Ok(keeper)
}
