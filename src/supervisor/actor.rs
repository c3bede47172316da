//! The root supervisor: owns every service host, restarts them, stops them in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use super::messages::SupervisorMessage;
use super::policy::{admit_restart, group, restarts};
use crate::Error;
use crate::event::{Bus, Wake};
use crate::host::ErasedService;
use crate::registry::{Registry, RegistryMessage};
use crate::service::restart::RestartPolicy;
use crate::status::ServiceState;
use crate::system::RuntimeShared;

pub(crate) struct Supervisor;

pub(crate) struct SupervisorArgs {
    pub(crate) shared: Arc<RuntimeShared>,
    /// Services in start order.
    pub(crate) services: Vec<Arc<dyn ErasedService>>,
}

struct Slot {
    service: Arc<dyn ErasedService>,
    actor: Option<ActorId>,
    history: VecDeque<Instant>,
    generation: u64,
    /// When the running incarnation started.
    started: Instant,
    /// Restarts since the service last ran for its backoff's `reset_after`.
    consecutive: u32,
}

pub(crate) struct SupervisorState {
    shared: Arc<RuntimeShared>,
    slots: Vec<Slot>,
    registry: ActorRef<RegistryMessage>,
    bus: ActorRef<Wake>,
    shutting_down: bool,
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registry = spawn_registry(&myself, &args.shared, &args.services).await?;
        let (bus, _) =
            Bus::spawn_linked(None, Bus, args.shared.events.clone(), myself.get_cell()).await?;
        let slots = args
            .services
            .into_iter()
            .map(|service| Slot {
                service,
                actor: None,
                history: VecDeque::new(),
                generation: 0,
                started: Instant::now(),
                consecutive: 0,
            })
            .collect();
        Ok(SupervisorState {
            shared: args.shared,
            slots,
            registry,
            bus,
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Start(reply) => {
                let result = start_all(&myself, state).await;
                let failed = result.is_err();
                let _ = reply.send(result);
                if failed {
                    myself.stop(Some("start-up failed".into()));
                }
            }
            SupervisorMessage::Restart(targets) => {
                for (idx, generation) in targets {
                    let slot = &state.slots[idx];
                    if state.shutting_down || slot.generation != generation || slot.actor.is_some()
                    {
                        continue;
                    }
                    let service = slot.service.clone();
                    service.shared().restarts.fetch_add(1, Ordering::Relaxed);
                    // From the attempt: a restart whose start fails ran for no time at all, and
                    // the next one waits longer.
                    state.slots[idx].started = Instant::now();
                    match service.clone().spawn(myself.get_cell()).await {
                        Ok(cell) => {
                            tracing::info!(service = service.name(), "service restarted");
                            state.slots[idx].actor = Some(cell.get_id());
                        }
                        Err(reason) => on_exit(&myself, state, idx, Some(reason)).await,
                    }
                }
            }
            SupervisorMessage::Shutdown(reply) => {
                stop_all(state).await;
                let _ = reply.send(());
                myself.stop(Some("shut down".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, failure) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            _ => return Ok(()),
        };
        if id == state.registry.get_id() {
            if !state.shutting_down {
                tracing::error!(?failure, "registry stopped; starting a new one");
                let services: Vec<_> = state.slots.iter().map(|s| s.service.clone()).collect();
                state.registry = spawn_registry(&myself, &state.shared, &services).await?;
            }
            return Ok(());
        }
        if id == state.bus.get_id() {
            if !state.shutting_down {
                tracing::error!(?failure, "event bus stopped; starting a new one");
                let events = state.shared.events.clone();
                events.restarts.fetch_add(1, Ordering::Relaxed);
                (state.bus, _) = Bus::spawn_linked(None, Bus, events, myself.get_cell()).await?;
            }
            return Ok(());
        }
        if let Some(idx) = state.slots.iter().position(|s| s.actor == Some(id)) {
            on_exit(&myself, state, idx, failure).await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.finish(Ok(()));
        Ok(())
    }
}

async fn spawn_registry(
    myself: &ActorRef<SupervisorMessage>,
    shared: &Arc<RuntimeShared>,
    services: &[Arc<dyn ErasedService>],
) -> Result<ActorRef<RegistryMessage>, ActorProcessingErr> {
    let (registry, _) =
        Registry::spawn_linked(None, Registry, shared.clone(), myself.get_cell()).await?;
    for service in services {
        registry.cast(RegistryMessage::Register(service.clone()))?;
    }
    // A round trip makes every registration visible before start-up goes on.
    ractor::call!(registry, RegistryMessage::List)?;
    shared.registry.store(Some(Arc::new(registry.clone())));
    Ok(registry)
}

async fn start_all(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
) -> Result<(), Error> {
    let deadline = state.shared.begin_startup();
    for idx in 0..state.slots.len() {
        if state.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let service = state.slots[idx].service.clone();
        if service.shared().remote {
            tracing::debug!(
                service = service.name(),
                "runs on other nodes; not started here"
            );
            continue;
        }
        if !service.shared().enabled {
            tracing::info!(service = service.name(), "service disabled; not started");
            continue;
        }
        state.slots[idx].started = Instant::now();
        let spawned = service.clone().spawn(myself.get_cell()).await;
        if Instant::now() >= deadline {
            // Whatever this service did, the runtime's start ran out of time with it.
            if let Ok(cell) = &spawned {
                state.slots[idx].actor = Some(cell.get_id());
            }
            let reason = format!(
                "the runtime's start-up timeout of {:?} elapsed",
                state.shared.config.startup_timeout
            );
            service.shared().record_failure(&reason);
            return Err(abort_start(state, service.name(), reason).await);
        }
        match spawned {
            Ok(cell) => state.slots[idx].actor = Some(cell.get_id()),
            Err(reason) => {
                let shared = service.shared();
                shared.record_failure(&reason);
                let Some(startup) = service.startup() else {
                    on_exit(myself, state, idx, Some(reason)).await;
                    continue;
                };
                shared.set_state(ServiceState::Failed);
                if startup.continue_on_failure || !state.shared.config.fail_fast {
                    tracing::warn!(service = service.name(), %reason, "start-up service failed; continuing");
                    continue;
                }
                return Err(abort_start(state, service.name(), reason).await);
            }
        }
    }
    Ok(())
}

/// Gives up the start because of `service`: stops what had started, and records the outcome.
async fn abort_start(state: &mut SupervisorState, service: &str, reason: String) -> Error {
    tracing::error!(service, %reason, "start-up failed; stopping");
    stop_all(state).await;
    let err = Error::StartupFailed {
        service: service.to_owned(),
        reason,
    };
    state.shared.finish(Err(err.clone()));
    err
}

/// Shuts down: refuses new work, then stops every running service in reverse start order, all
/// within one shutdown timeout.
async fn stop_all(state: &mut SupervisorState) {
    state.shutting_down = true;
    state.shared.begin_shutdown();
    let deadline = Instant::now() + state.shared.config.shutdown_timeout;
    // No job is claimed for a service that is about to stop.
    if let Some(jobs) = state.shared.jobs.get() {
        jobs.stop();
    }
    for slot in state.slots.iter_mut().rev() {
        if slot.actor.take().is_some() {
            slot.service.drain(deadline, Error::ShuttingDown).await;
        }
        slot.generation += 1;
    }
    // Every attempt under way has ended with its service; its outcome is recorded.
    if let Some(jobs) = state.shared.jobs.get() {
        jobs.close(deadline).await;
    }
    // The events the services emitted up to their stop hooks reach their subscribers; then the
    // bus stops, and every subscription ends once its queue is delivered.
    let events = &state.shared.events;
    if tokio::time::timeout(BUS_FLUSH, events.flush())
        .await
        .is_err()
    {
        tracing::warn!("the event bus did not flush within {BUS_FLUSH:?}");
    }
    events.close();
    state.bus.stop(Some("shut down".into()));
}

/// How long shutdown waits for the event bus to fan out the last events.
const BUS_FLUSH: Duration = Duration::from_secs(5);

/// A service's actor has stopped (`failure` is `None` for a normal stop): apply its policy.
///
/// In turn: the policy decides whether it comes back; the intensity limit whether it may (past
/// it, the service is left failed, or the runtime stops for a critical one); the backoff how long
/// it waits; the strategy which siblings stop and come back with it.
async fn on_exit(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
    idx: usize,
    failure: Option<String>,
) {
    let slot = &mut state.slots[idx];
    slot.actor = None;
    slot.service.detach();
    if state.shutting_down {
        return;
    }
    let service = slot.service.clone();
    let shared = service.shared();
    let restart = service.restart();
    if let Some(reason) = &failure {
        shared.record_failure(reason);
    }
    if !restarts(restart.policy, failure.is_some()) {
        shared.set_state(if failure.is_some() {
            ServiceState::Failed
        } else {
            ServiceState::Stopped
        });
        tracing::info!(service = service.name(), ?failure, policy = ?restart.policy, "service not restarted");
        return;
    }
    let now = Instant::now();
    if !admit_restart(&mut slot.history, now, restart.max_restarts, restart.within) {
        give_up(myself, state, &*service, failure).await;
        return;
    }
    // A service that ran stably before it failed starts over from the first delay.
    if slot.started.elapsed() >= restart.backoff.reset_after {
        slot.consecutive = 0;
    }
    slot.consecutive += 1;
    let attempt = slot.consecutive;
    let delay = restart.backoff.delay(attempt);
    let targets = stop_group(state, idx, &*service).await;
    tracing::warn!(
        service = service.name(),
        ?failure,
        ?delay,
        attempt,
        "restarting"
    );
    // The timer task runs on its own; its handle is not needed.
    drop(myself.send_after(delay, move || SupervisorMessage::Restart(targets)));
}

/// A service went past its restart intensity: it is left failed, and a critical one stops the
/// runtime.
async fn give_up(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
    service: &dyn ErasedService,
    failure: Option<String>,
) {
    let shared = service.shared();
    let restart = service.restart();
    let last = failure
        .or_else(|| shared.last_failure())
        .unwrap_or_else(|| "stopped".into());
    let reason = format!(
        "more than {} restarts within {:?}; last failure: {last}",
        restart.max_restarts, restart.within
    );
    shared.record_failure(&reason);
    shared.set_state(ServiceState::Failed);
    if service.critical() {
        tracing::error!(service = service.name(), %reason, "critical service failed; stopping the runtime");
        let err = Error::CriticalFailure {
            service: service.name().to_owned(),
            reason,
        };
        state.shared.finish(Err(err));
        stop_all(state).await;
        myself.stop(Some("critical service failed".into()));
    } else {
        tracing::error!(service = service.name(), %reason, "service failed; left down");
    }
}

/// Stops, in reverse start order, the running siblings that the strategy restarts with the
/// service at `idx`, and marks every member restarting. Returns each member's slot and the
/// generation its restart is for; a temporary sibling is stopped and not restarted.
async fn stop_group(
    state: &mut SupervisorState,
    idx: usize,
    service: &dyn ErasedService,
) -> Vec<(usize, u64)> {
    let mut members = vec![idx];
    let deadline = Instant::now() + state.shared.config.shutdown_timeout;
    for j in group(state.shared.config.strategy, idx, state.slots.len()).rev() {
        if j == idx {
            continue;
        }
        let sibling = &mut state.slots[j];
        if sibling.actor.take().is_none() {
            continue;
        }
        let reason = Error::ServiceFailed {
            service: sibling.service.name().to_owned(),
            reason: format!("restarted with `{}`", service.name()),
        };
        sibling.service.drain(deadline, reason).await;
        if sibling.service.restart().policy != RestartPolicy::Temporary {
            members.push(j);
        } else {
            sibling.service.shared().set_state(ServiceState::Stopped);
        }
    }
    members.sort_unstable();
    members
        .into_iter()
        .map(|j| {
            let slot = &mut state.slots[j];
            slot.generation += 1;
            slot.service.shared().set_state(ServiceState::Restarting);
            (j, slot.generation)
        })
        .collect()
}
