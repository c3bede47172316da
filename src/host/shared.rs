//! The part of a service that outlives its incarnations: counters and the status snapshot.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::scheduler::Gate;
use crate::Error;
use crate::event::{Declared, Source};
use crate::service::{ScheduleMark, SettingsValue};
use crate::status::{History, LastRun, ServiceState, ServiceStatus};
use crate::system::RuntimeShared;

/// Whether the service's `run` hook does background work.
pub(crate) const BACKGROUND_UNKNOWN: u8 = 0;
pub(crate) const BACKGROUND_RUNNING: u8 = 1;
pub(crate) const BACKGROUND_NONE: u8 = 2;
pub(crate) const BACKGROUND_DONE: u8 = 3;

pub(crate) struct ServiceShared {
    pub(crate) name: Arc<str>,
    pub(crate) runtime: Arc<RuntimeShared>,
    /// The events it declared.
    pub(crate) events: Box<[Declared]>,
    /// Its events' counters, shared by every event it emits.
    pub(crate) source: Arc<Source>,
    /// Its typed settings, read from configuration at start.
    pub(crate) settings: Option<SettingsValue>,
    /// Whether it runs in this runtime; a disabled service is never started.
    pub(crate) enabled: bool,
    /// Declared here to reach it on other nodes of a cluster; never run here.
    pub(crate) remote: bool,
    /// Its handle on the nodes that serve it, once a call went there (see `remote::route`).
    #[cfg(feature = "cluster")]
    pub(crate) elsewhere: std::sync::OnceLock<Arc<dyn crate::remote::Remote>>,
    /// Whether it declared that it keeps state in the store.
    pub(crate) keeps_state: bool,
    /// Paused by an operator: its scheduled ticks are skipped until it is resumed.
    pub(crate) paused: AtomicBool,
    state: AtomicU8,
    pub(crate) runs: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) calls: AtomicU64,
    /// Calls refused because the queue was at its limit.
    pub(crate) rejected: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// The current incarnation's running and queued jobs.
    gate: ArcSwap<Gate>,
    pub(crate) tick_running: AtomicBool,
    pub(crate) background: AtomicU8,
    pub(crate) last_run: Mutex<Option<LastRun>>,
    pub(crate) next_run: Mutex<Option<Instant>>,
    pub(crate) last_failure: Mutex<Option<String>>,
    /// Its last runs.
    pub(crate) history: Arc<History>,
    /// Woken when the service may have become idle, while an orderly stop waits for that.
    pub(crate) idle: Notify,
    draining: AtomicBool,
}

impl std::fmt::Debug for ServiceShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceShared")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ServiceShared {
    /// Why `event` cannot be emitted or subscribed to: the service does not declare it. Names
    /// what it does emit, in declaration order.
    pub(crate) fn unknown_event(&self, event: &str) -> Error {
        Error::UnknownEvent {
            service: self.name.to_string(),
            event: event.to_owned(),
            emits: self.events.iter().map(|d| d.name.to_string()).collect(),
        }
    }

    pub(crate) fn new(
        name: &str,
        events: Vec<Declared>,
        settings: Option<SettingsValue>,
        enabled: bool,
        runtime: Arc<RuntimeShared>,
    ) -> Self {
        let name: Arc<str> = Arc::from(name);
        let state = if enabled {
            ServiceState::Starting
        } else {
            ServiceState::Disabled
        };
        let history = Arc::new(History::new(name.clone(), runtime.config.history));
        ServiceShared {
            source: Source::new(name.clone()),
            name,
            runtime,
            events: events.into_boxed_slice(),
            settings,
            enabled,
            remote: false,
            #[cfg(feature = "cluster")]
            elsewhere: std::sync::OnceLock::new(),
            keeps_state: false,
            paused: AtomicBool::new(false),
            state: AtomicU8::new(state.as_u8()),
            runs: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            gate: ArcSwap::from_pointee(Gate::default()),
            tick_running: AtomicBool::new(false),
            background: AtomicU8::new(BACKGROUND_UNKNOWN),
            last_run: Mutex::new(None),
            next_run: Mutex::new(None),
            last_failure: Mutex::new(None),
            history,
            idle: Notify::new(),
            draining: AtomicBool::new(false),
        }
    }

    /// The state as stored: `Idle` stands for every "up" state, refined by [`Self::state`].
    pub(crate) fn stored_state(&self) -> ServiceState {
        ServiceState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ServiceState) {
        self.state.store(state.as_u8(), Ordering::Release);
    }

    /// The state as reported: an up service is busy, running or idle by what is in progress.
    pub(crate) fn state(&self) -> ServiceState {
        match self.stored_state() {
            ServiceState::Idle | ServiceState::Running | ServiceState::Busy => {
                if self.in_flight() > 0 || self.tick_running.load(Ordering::Acquire) {
                    ServiceState::Busy
                } else if self.background.load(Ordering::Acquire) == BACKGROUND_RUNNING {
                    ServiceState::Running
                } else {
                    ServiceState::Idle
                }
            }
            other => other,
        }
    }

    /// Whether the service's `run` hook does background work (known once it has started).
    pub(crate) fn has_background(&self) -> bool {
        matches!(
            self.background.load(Ordering::Acquire),
            BACKGROUND_RUNNING | BACKGROUND_DONE
        )
    }

    /// Makes `gate` the one that counts the running and queued jobs: a new incarnation's.
    pub(crate) fn set_gate(&self, gate: Arc<Gate>) {
        self.gate.store(gate);
    }

    /// How many actions and commands are running.
    pub(crate) fn in_flight(&self) -> usize {
        self.gate.load().running()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight() == 0 && !self.tick_running.load(Ordering::SeqCst)
    }

    /// Marks that an orderly stop waits for the service to become idle.
    ///
    /// Sequentially consistent with [`Self::wake_if_draining`]: either the stop sees the work
    /// gone, or the work sees the stop waiting and wakes it.
    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    /// Wakes an orderly stop waiting for the service to become idle, if there is one.
    pub(crate) fn wake_if_draining(&self) {
        if self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn record_failure(&self, reason: &str) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }

    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Moves the schedule's mark to the runtime's time now (`set` says which of its times),
    /// to be saved with the runs; nothing without a store.
    pub(crate) fn mark_schedule(&self, set: fn(&mut ScheduleMark, SystemTime)) {
        if let Some(jobs) = self.runtime.jobs.get() {
            let now = jobs.now();
            self.history.mark(|mark| set(mark, now));
        }
    }

    /// Where the schedule stood when the last process stopped, and the runtime's time now:
    /// once, at the first start of the service in this process; `None` after, and without a
    /// store.
    pub(crate) fn resumed_schedule(&self) -> Option<(ScheduleMark, SystemTime)> {
        let mark = self.history.take_resumed()?;
        Some((mark, self.runtime.jobs.get()?.now()))
    }

    pub(crate) fn set_next_run(&self, at: Option<Instant>) {
        *self.next_run.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Why the service cannot take a call now.
    pub(crate) fn unavailable(&self) -> Error {
        let service = self.name.to_string();
        if self.remote {
            return Error::ServiceUnavailable {
                service,
                reason: "no node of the cluster serves it".into(),
            };
        }
        if !self.enabled {
            return Error::ServiceDisabled { service };
        }
        if self.runtime.is_shutting_down() {
            return Error::ShuttingDown;
        }
        let last = self.last_failure();
        match self.stored_state() {
            ServiceState::Failed => Error::ServiceFailed {
                service,
                reason: last.unwrap_or_else(|| "failed".into()),
            },
            ServiceState::Restarting => Error::ServiceUnavailable {
                service,
                reason: match last {
                    Some(l) => format!("restarting after: {l}"),
                    None => "restarting".into(),
                },
            },
            ServiceState::Starting => Error::ServiceUnavailable {
                service,
                reason: "starting".into(),
            },
            _ => Error::ServiceUnavailable {
                service,
                reason: "stopped".into(),
            },
        }
    }

    /// The error for a call whose reply was dropped unanswered: its incarnation died.
    pub(crate) fn lost(&self) -> Error {
        if self.runtime.is_shutting_down() {
            return Error::ShuttingDown;
        }
        Error::ServiceFailed {
            service: self.name.to_string(),
            reason: self
                .last_failure()
                .unwrap_or_else(|| "stopped while holding the call".into()),
        }
    }

    pub(crate) fn status(&self) -> ServiceStatus {
        let now = Instant::now();
        let next_run_in = self
            .next_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.saturating_duration_since(now));
        ServiceStatus {
            name: self.name.to_string(),
            state: self.state(),
            last_run: self
                .last_run
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            next_run_in,
            runs: self.runs.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            queue_depth: self.gate.load().queued(),
            in_flight: self.in_flight(),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_failure: self.last_failure(),
            events_emitted: self.source.emitted.load(Ordering::Relaxed),
            events_dropped: self.source.dropped.load(Ordering::Relaxed),
            paused: self.paused.load(Ordering::Relaxed),
        }
    }
}

impl crate::service::Served for ServiceShared {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn declared(&self) -> &[Declared] {
        &self.events
    }

    fn source(&self) -> &Arc<Source> {
        &self.source
    }

    fn settings(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        self.settings.as_deref()
    }

    fn publish(&self, record: crate::event::record::Shared) -> bool {
        self.runtime.events.publish(record)
    }

    fn unknown_event(&self, event: &str) -> Error {
        ServiceShared::unknown_event(self, event)
    }

    fn no_background_work(&self) {
        self.background.store(BACKGROUND_NONE, Ordering::Release);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
