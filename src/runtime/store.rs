//! Which store a runtime keeps its durable jobs in, and opening it at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{RuntimeBuilder, RuntimeShared};
use crate::Error;
use crate::host::ErasedService;
use crate::jobs::{Clock, Dispatcher, Retention};
use crate::store::{RedbStore, Store};

/// Where the store is kept when neither the program nor the configuration says: a file in the
/// working directory, created on first start.
pub const DEFAULT_STORE_PATH: &str = "sora.redb";

/// The store the program or the configuration chose.
pub(crate) enum StoreChoice {
    /// Given on the builder.
    Given(Arc<dyn Store>),
    /// A file: from the builder, the configuration, or the default.
    Path(PathBuf),
}

impl RuntimeBuilder {
    /// Keeps durable jobs in `store`: a [`RedbStore`] opened by the program, or its in-memory
    /// form for tests. Without it, the runtime opens the file of `[store] path` in the
    /// configuration (`SORA__STORE__PATH`), or else [`DEFAULT_STORE_PATH`], once a service
    /// declares a durable action.
    ///
    /// # Examples
    ///
    /// ```
    /// use sora::store::RedbStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder()
    ///     .store(RedbStore::in_memory()?)
    ///     .start()
    ///     .await?;
    /// assert!(runtime.jobs().is_some());
    /// # runtime.shutdown().await }
    /// ```
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(StoreChoice::Given(Arc::new(store)));
        self
    }

    /// Keeps durable jobs in the redb file at `path`, created on first start (over
    /// `[store] path` in the configuration).
    pub fn store_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(StoreChoice::Path(path.into()));
        self
    }
}

/// The store this run uses: the builder's, the configuration's, the default file; `None` when
/// nothing asks for one (no store given or configured, and no service that runs here declares
/// a durable action or state).
pub(super) fn choose(
    given: Option<StoreChoice>,
    configured: Option<PathBuf>,
    services: &[Arc<dyn ErasedService>],
) -> Option<StoreChoice> {
    if given.is_some() {
        return given;
    }
    let runs_here = |s: &Arc<dyn ErasedService>| s.shared().enabled && !s.shared().remote;
    let needs = |s: &Arc<dyn ErasedService>| (s.has_durable() || s.keeps_state()) && runs_here(s);
    if configured.is_none() && !services.iter().any(needs) {
        return None;
    }
    Some(StoreChoice::Path(
        configured.unwrap_or_else(|| DEFAULT_STORE_PATH.into()),
    ))
}

/// Opens the store and gives the runtime its dispatcher, serving the durable services that
/// run here and keeping the run history of every service that runs here.
pub(super) fn open(
    choice: StoreChoice,
    retention: Retention,
    shared: &Arc<RuntimeShared>,
    services: &[Arc<dyn ErasedService>],
) -> Result<Arc<Dispatcher>, Error> {
    let store: Arc<dyn Store> = match choice {
        StoreChoice::Given(store) => store,
        StoreChoice::Path(path) => Arc::new(open_file(&path)?),
    };
    let owner = format!("pid {} #{:016x}", std::process::id(), fastrand::u64(..));
    let history = shared.config.history;
    let dispatcher = Dispatcher::new(store, owner, Clock::new(), retention, history);
    for service in services {
        let here = service.shared().enabled && !service.shared().remote;
        if here && service.has_durable() {
            dispatcher.serve(service.clone());
        }
        if here {
            dispatcher.keep_runs(&**service);
        }
    }
    let _ = shared.jobs.set(dispatcher.clone());
    Ok(dispatcher)
}

fn open_file(path: &Path) -> Result<RedbStore, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return Err(Error::Store {
            path: path.display().to_string(),
            message: format!("its directory cannot be created: {e}"),
        });
    }
    let store = RedbStore::open(path)?;
    tracing::info!(store = %path.display(), "durable jobs are kept in this file");
    Ok(store)
}
