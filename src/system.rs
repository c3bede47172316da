//! What the system actors share with each other and with the runtime that owns them: the tables
//! of services, the actors' references, the runtime's settings and the phase it is in. It is the
//! actors' state, below the builder and the handles: they hold it, and the layers above add
//! what they keep per runtime (the control plane's task and metrics, the cluster's node) in
//! fields whose types the lower layers do not name.

#[cfg(feature = "http")]
use std::any::Any;
use std::any::TypeId;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use ractor::ActorRef;
use tokio::sync::watch;

use crate::Error;
use crate::event::EventsShared;
use crate::host::ErasedService;
use crate::registry::RegistryMessage;
use crate::service::environment::Environment;
use crate::service::restart::Strategy;
use crate::supervisor::SupervisorMessage;

pub(crate) const STARTING: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const SHUTTING_DOWN: u8 = 2;
pub(crate) const STOPPED: u8 = 3;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
pub(crate) struct RuntimeConfig {
    pub(crate) strategy: Strategy,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) startup_timeout: Duration,
    pub(crate) fail_fast: bool,
    pub(crate) enabled: bool,
    pub(crate) environment: Environment,
    /// How many runs each service keeps in its history, and for how long.
    pub(crate) history: crate::status::HistoryLimits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            strategy: Strategy::OneForOne,
            shutdown_timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(120),
            fail_fast: true,
            enabled: true,
            environment: Environment::Production,
            history: crate::status::HistoryLimits::default(),
        }
    }
}

/// What every part of one runtime shares.
pub(crate) struct RuntimeShared {
    pub(crate) id: u64,
    pub(crate) phase: AtomicU8,
    pub(crate) by_name: DashMap<String, Arc<dyn ErasedService>>,
    pub(crate) by_type: DashMap<TypeId, Arc<dyn ErasedService>>,
    pub(crate) registry: ArcSwapOption<ActorRef<RegistryMessage>>,
    pub(crate) supervisor: OnceLock<ActorRef<SupervisorMessage>>,
    exit: watch::Sender<Option<Result<(), Error>>>,
    pub(crate) config: RuntimeConfig,
    pub(crate) events: Arc<EventsShared>,
    /// When the runtime's start must be over; set as it begins.
    startup_deadline: OnceLock<tokio::time::Instant>,
    /// Where the control plane listens, if it is served.
    pub(crate) http_address: OnceLock<Option<std::net::SocketAddr>>,
    /// The control plane's server, which stops once the runtime has.
    pub(crate) http_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The runtime's metrics, kept once something serves them (the control plane's
    /// `http::metrics::Metrics`).
    #[cfg(feature = "http")]
    pub(crate) metrics: OnceLock<Arc<dyn Recorder>>,
    /// This runtime's node, when it has joined a cluster.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: OnceLock<Arc<dyn crate::remote::Node>>,
    /// The dispatcher of durable jobs, once the store is open.
    pub(crate) jobs: OnceLock<Arc<crate::jobs::Dispatcher>>,
}

impl RuntimeShared {
    pub(crate) fn new(config: RuntimeConfig) -> Arc<Self> {
        Arc::new(RuntimeShared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(STARTING),
            by_name: DashMap::new(),
            by_type: DashMap::new(),
            registry: ArcSwapOption::empty(),
            supervisor: OnceLock::new(),
            exit: watch::Sender::new(None),
            config,
            events: EventsShared::new(),
            startup_deadline: OnceLock::new(),
            http_address: OnceLock::new(),
            http_task: std::sync::Mutex::new(None),
            #[cfg(feature = "http")]
            metrics: OnceLock::new(),
            #[cfg(feature = "cluster")]
            cluster: OnceLock::new(),
            jobs: OnceLock::new(),
        })
    }

    /// Starts the clock of the runtime's start-up timeout; returns its deadline.
    pub(crate) fn begin_startup(&self) -> tokio::time::Instant {
        *self
            .startup_deadline
            .get_or_init(|| tokio::time::Instant::now() + self.config.startup_timeout)
    }

    /// The deadline of the runtime's start, while it is starting.
    pub(crate) fn startup_deadline(&self) -> Option<tokio::time::Instant> {
        if self.phase.load(Ordering::Acquire) == STARTING {
            self.startup_deadline.get().copied()
        } else {
            None
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Arc<Self> {
        Self::new(RuntimeConfig::default())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= SHUTTING_DOWN
    }

    pub(crate) fn begin_shutdown(&self) {
        self.phase.fetch_max(SHUTTING_DOWN, Ordering::AcqRel);
    }

    /// Records how the runtime ended; the first outcome wins.
    pub(crate) fn finish(&self, outcome: Result<(), Error>) {
        self.phase.fetch_max(SHUTTING_DOWN, Ordering::AcqRel);
        self.exit.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(outcome);
                true
            } else {
                false
            }
        });
    }

    pub(crate) async fn wait(&self) -> Result<(), Error> {
        let mut rx = self.exit.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        }
    }
}

/// Where the hosts report each call they served, when the runtime keeps metrics.
#[cfg(feature = "http")]
pub(crate) trait Recorder: Send + Sync + 'static {
    /// `service` served `call` in `took`, and it failed or not.
    fn record(&self, service: &Arc<str>, call: &str, took: Duration, failed: bool);

    /// The recorder itself, for the layer that made it.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}
