//! Saving the run history to the store: off the services' paths, in batches.
//!
//! A service keeps its runs in its ring (`status::History`) and queues its history here when a
//! run is kept and it is not queued already. The saver wakes on the first, waits a moment for
//! more to join, and commits all of them in one write of the store, which joins the jobs'
//! changes waiting with it. A crash loses at most that moment's runs; an orderly stop saves
//! them all.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::status::{History, HistoryLimits, Unsaved};
use crate::store::{ServiceRuns, Store};

/// How long the saver waits, after a run is kept, for others to join its batch.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The runtime's saver of run histories.
#[derive(Debug)]
pub(crate) struct Saver {
    limits: HistoryLimits,
    unsaved: Arc<Unsaved>,
    /// Rings when the runtime stops, so that a waiting saver saves what it has at once.
    closing: Arc<Notify>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Saver {
    pub(crate) fn new(limits: HistoryLimits) -> Self {
        Saver {
            limits,
            unsaved: Arc::default(),
            closing: Arc::default(),
            task: std::sync::Mutex::new(None),
        }
    }

    /// Puts back into `history` the runs that `store` keeps of its service, then saves its
    /// runs from now on.
    pub(crate) fn keep(&self, store: &dyn Store, history: &Arc<History>) {
        match store.schedule(history.service()) {
            Ok(Some(mark)) => history.resume_from(mark),
            Ok(None) => {}
            Err(err) => tracing::warn!(
                service = history.service(),
                error = %err,
                "where the schedule stood cannot be read; it starts afresh"
            ),
        }
        // Marks are saved whatever the count; runs only when some are kept.
        history.save_to(self.unsaved.clone());
        if self.limits.runs == 0 {
            return;
        }
        let since = SystemTime::now()
            .checked_sub(self.limits.keep)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match store.runs(history.service(), self.limits.runs, since) {
            Ok(saved) => history.seed(saved),
            Err(err) => tracing::warn!(
                service = history.service(),
                error = %err,
                "the runs kept before cannot be read; the history starts anew"
            ),
        }
    }

    /// Saves, in the background, what is kept from now on.
    pub(crate) fn start(&self, store: Arc<dyn Store>) {
        let task = tokio::spawn(save_loop(
            store,
            self.unsaved.clone(),
            self.closing.clone(),
            self.limits,
        ));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the background saver, then saves what is left: the services have stopped, so
    /// every run is kept by now.
    pub(crate) async fn close(&self, store: &dyn Store, deadline: tokio::time::Instant) {
        self.closing.notify_one();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task
            && tokio::time::timeout_at(deadline, task).await.is_err()
        {
            tracing::warn!("the run history's saver did not stop by the shutdown deadline");
            return;
        }
        let saving = save(store, &self.unsaved, self.limits);
        if tokio::time::timeout_at(deadline, saving).await.is_err() {
            tracing::warn!("the last runs were not saved by the shutdown deadline");
        }
    }
}

async fn save_loop(
    store: Arc<dyn Store>,
    unsaved: Arc<Unsaved>,
    closing: Arc<Notify>,
    limits: HistoryLimits,
) {
    loop {
        tokio::select! {
            () = unsaved.wake.notified() => {}
            () = closing.notified() => return,
        }
        // Runs kept in the next moment join this batch.
        tokio::select! {
            () = tokio::time::sleep(SAVE_EVERY) => {}
            () = closing.notified() => return,
        }
        save(&*store, &unsaved, limits).await;
    }
}

/// Commits, in one write, the runs of every history queued since the last save.
async fn save(store: &dyn Store, unsaved: &Unsaved, limits: HistoryLimits) {
    let batch: Vec<ServiceRuns> = unsaved
        .take()
        .into_iter()
        .filter_map(|history| {
            let unsaved = history.take_unsaved();
            if unsaved.runs.is_empty() && unsaved.mark.is_none() {
                return None;
            }
            let runs = ServiceRuns::new(history.service(), unsaved.runs);
            Some(match unsaved.mark {
                Some(mark) => runs.schedule(mark),
                None => runs,
            })
        })
        .collect();
    if batch.is_empty() {
        return;
    }
    let before = SystemTime::now()
        .checked_sub(limits.keep)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let runs: usize = batch.iter().map(|s| s.runs.len()).sum();
    if let Err(err) = store.record_runs(batch, limits.runs, before).await {
        // What the rings hold is still read; only a restart would miss these.
        tracing::warn!(runs, error = %err, "runs could not be saved");
    }
}
