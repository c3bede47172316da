//! Run history: the last runs of a service, bounded by count and by age.
//!
//! A service's host records each periodic run, each attempt of a durable job, each command its
//! caller waited for (or sent with a timeout or a correlation id), and each plain `tell` and
//! in-memory action that failed: a `tell` or an action that succeeded is counted, not kept, so
//! that those paths stay free of the bookkeeping. The records live in a ring per service, so
//! recording is a short, uncontended lock and a push; the oldest record goes when the ring is
//! full, and those past the age are left out where the ring is read or saved. With a store,
//! the runtime saves the rings in batches (see `jobs::history`).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::service::ScheduleMark;
use crate::store::id::JobId;

/// What a recorded run was.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RunKind {
    /// A periodic run, scheduled or triggered.
    Tick,
    /// A command: a trigger of a service that is not periodic, a batch, a queue check, or one of
    /// the service's own. A plain `tell` is kept only if it failed.
    Command,
    /// An in-memory action; only those that failed are kept.
    Action,
    /// An attempt of a durable job.
    Job,
}

/// How a recorded run ended.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// It succeeded.
    Ok,
    /// It returned an error.
    Failed,
    /// It ran past its timeout and was cancelled.
    TimedOut,
    /// It was cancelled as the service stopped.
    Cancelled,
    /// It panicked; the service was failed and handed to its supervisor.
    Panicked,
}

/// One run of a service, as [`ServiceHandle::runs`](crate::ServiceHandle::runs) reports it.
///
/// ```
/// use sora::{BoxError, Context, Definition, Runtime, Schedule, Service};
/// use sora::status::{RunKind, RunOutcome};
///
/// #[derive(Default)]
/// struct Sweeper;
///
/// impl Service for Sweeper {
///     fn define(def: &mut Definition<Self>) {
///         def.periodic(Schedule::every(std::time::Duration::from_secs(60)));
///     }
///
///     async fn tick(&self, _ctx: &Context) -> Result<(), BoxError> {
///         Err("the disk is full".into())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sora::Error> {
/// let runtime = Runtime::builder().service(Sweeper::default).start().await?;
/// let sweeper = runtime.service::<Sweeper>()?;
/// let _ = sweeper.trigger().await;
///
/// let runs = sweeper.runs()?;
/// assert_eq!(runs[0].kind, RunKind::Tick);
/// assert_eq!(runs[0].outcome, RunOutcome::Failed);
/// assert_eq!(runs[0].error.as_deref(), Some("the disk is full"));
/// # runtime.shutdown().await
/// # }
/// ```
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// What ran.
    pub kind: RunKind,
    /// `tick`, the command's name, or the action's.
    pub name: String,
    /// When it started (wall clock).
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::TimeSchema))]
    pub started_at: SystemTime,
    /// How long it ran. Absent for an in-memory action while no metrics are kept: its start is
    /// not timed, so that the common call reads no clock.
    #[cfg_attr(feature = "http", schema(value_type = Option<crate::schema::DurationSchema>))]
    pub duration: Option<Duration>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Its error, if it did not succeed.
    pub error: Option<String>,
    /// The correlation id it ran with, if any.
    pub correlation_id: Option<String>,
    /// The durable job it was an attempt of.
    pub job: Option<String>,
    /// Which attempt of that job it was, from 1.
    pub attempt: Option<u32>,
}

/// How many runs a service keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    pub(crate) runs: usize,
    pub(crate) keep: Duration,
}

impl HistoryLimits {
    /// The default number of runs kept per service.
    pub(crate) const RUNS: usize = 100;
    /// The default age past which a run is dropped.
    pub(crate) const KEEP: Duration = Duration::from_secs(24 * 3600);
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            runs: Self::RUNS,
            keep: Self::KEEP,
        }
    }
}

/// A run as the ring keeps it: its names borrowed or shared where they can be.
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub(crate) kind: RunKind,
    pub(crate) name: Cow<'static, str>,
    pub(crate) started_at: SystemTime,
    pub(crate) duration: Option<Duration>,
    pub(crate) outcome: RunOutcome,
    pub(crate) error: Option<Box<str>>,
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) job: Option<(JobId, u32)>,
}

impl From<RunRecord> for Run {
    fn from(r: RunRecord) -> Self {
        Run {
            kind: r.kind,
            name: r.name.into_owned(),
            started_at: r.started_at,
            duration: r.duration,
            outcome: r.outcome,
            error: r.error.map(String::from),
            correlation_id: r.correlation_id.map(|c| c.to_string()),
            job: r.job.map(|(id, _)| id.to_string()),
            attempt: r.job.map(|(_, attempt)| attempt),
        }
    }
}

impl From<Run> for RunRecord {
    fn from(r: Run) -> Self {
        let job = r.job.and_then(|id| id.parse::<JobId>().ok());
        RunRecord {
            kind: r.kind,
            name: Cow::Owned(r.name),
            started_at: r.started_at,
            duration: r.duration,
            outcome: r.outcome,
            error: r.error.map(String::into_boxed_str),
            correlation_id: r.correlation_id.map(Arc::from),
            job: job.map(|id| (id, r.attempt.unwrap_or(1))),
        }
    }
}

/// A service's last runs, newest last.
#[derive(Debug)]
pub(crate) struct History {
    /// The service's name, for the store.
    service: Arc<str>,
    limits: HistoryLimits,
    ring: Mutex<Ring>,
    /// Where runs go to be saved, once the runtime has a store.
    saver: OnceLock<Arc<Unsaved>>,
    /// Whether this history waits in its saver's queue.
    queued: AtomicBool,
}

#[derive(Debug, Default)]
struct Ring {
    runs: VecDeque<RunRecord>,
    /// How many of the newest are not yet saved.
    unsaved: usize,
    /// Where the service's schedule stands, and whether that is saved.
    mark: ScheduleMark,
    mark_unsaved: bool,
    /// Where it stood when the last process stopped, until the first start takes it.
    resumed: Option<ScheduleMark>,
}

/// What a history has that is not yet saved.
#[derive(Debug, Default)]
pub(crate) struct UnsavedRuns {
    /// Its runs, oldest first.
    pub(crate) runs: Vec<Run>,
    /// Where its schedule stands, if that moved since the last save.
    pub(crate) mark: Option<ScheduleMark>,
}

/// The histories with runs that are not yet saved, for whoever saves them; each is queued once
/// until it is taken.
#[derive(Debug, Default)]
pub(crate) struct Unsaved {
    queue: Mutex<Vec<Arc<History>>>,
    /// Rings when a history is queued.
    pub(crate) wake: tokio::sync::Notify,
}

impl Unsaved {
    /// The histories queued since the last take.
    pub(crate) fn take(&self) -> Vec<Arc<History>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl History {
    pub(crate) fn new(service: Arc<str>, limits: HistoryLimits) -> Self {
        History {
            service,
            limits,
            ring: Mutex::new(Ring::default()),
            saver: OnceLock::new(),
            queued: AtomicBool::new(false),
        }
    }

    /// The service's name.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// Keeps `run`, dropping the oldest past the count; with a saver, queues this history to
    /// be saved, unless it waits there already. Runs past the age are dropped where they are
    /// read and saved, not here, so that this stays a push.
    pub(crate) fn push(self: &Arc<Self>, run: RunRecord) {
        if self.limits.runs == 0 {
            return;
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.runs.len() >= self.limits.runs {
                ring.runs.pop_front();
            }
            ring.runs.push_back(run);
            ring.unsaved = (ring.unsaved + 1).min(ring.runs.len());
        }
        self.queue();
    }

    /// Moves the schedule's mark, to be saved with the runs; nothing without a store to save
    /// it in (there is no next process to read it then). Kept whatever the run count is.
    pub(crate) fn mark(self: &Arc<Self>, change: impl FnOnce(&mut ScheduleMark)) {
        if self.saver.get().is_none() {
            return;
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut ring.mark);
            ring.mark_unsaved = true;
        }
        self.queue();
    }

    /// Puts back where the schedule stood when the last process stopped: the first start of
    /// the service takes it ([`Self::take_resumed`]), and later marks move on from it.
    pub(crate) fn resume_from(&self, mark: ScheduleMark) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.mark = mark;
        ring.resumed = Some(mark);
    }

    /// Where the schedule stood when the last process stopped, once: `None` after the first
    /// call, and when there was no last process.
    pub(crate) fn take_resumed(&self) -> Option<ScheduleMark> {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.resumed.take()
    }

    /// Queues this history in its saver, unless it waits there already.
    fn queue(self: &Arc<Self>) {
        // The lock orders this read after a take that cleared the flag before taking the runs:
        // a run the take missed always finds the flag clear.
        if let Some(saver) = self.saver.get()
            && !self.queued.load(Ordering::Relaxed)
            && !self.queued.swap(true, Ordering::AcqRel)
        {
            saver
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.clone());
            saver.wake.notify_one();
        }
    }

    /// From now on, each run kept queues this history in `saver`.
    pub(crate) fn save_to(&self, saver: Arc<Unsaved>) {
        let _ = self.saver.set(saver);
    }

    /// The runs not yet saved, oldest first, and the schedule's mark if it moved; they count
    /// as saved from now on.
    pub(crate) fn take_unsaved(&self) -> UnsavedRuns {
        self.queued.store(false, Ordering::Release);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let from = ring.runs.len() - ring.unsaved;
        ring.unsaved = 0;
        let mark = std::mem::take(&mut ring.mark_unsaved).then_some(ring.mark);
        UnsavedRuns {
            runs: ring.runs.range(from..).cloned().map(Run::from).collect(),
            mark,
        }
    }

    /// Puts back runs saved by an earlier process, newest first, behind those kept since.
    pub(crate) fn seed(&self, saved: Vec<Run>) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for run in saved {
            if ring.runs.len() >= self.limits.runs {
                break;
            }
            ring.runs.push_front(RunRecord::from(run));
        }
    }

    /// Up to `limit` runs that are not past the age, newest first.
    pub(crate) fn newest(&self, limit: usize, now: SystemTime) -> Vec<Run> {
        let oldest = now.checked_sub(self.limits.keep);
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.runs
            .iter()
            .rev()
            .take_while(|r| oldest.is_none_or(|oldest| r.started_at >= oldest))
            .take(limit)
            .cloned()
            .map(Run::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(at: u64, name: &'static str) -> RunRecord {
        RunRecord {
            kind: RunKind::Command,
            name: Cow::Borrowed(name),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            duration: Some(Duration::from_millis(3)),
            outcome: RunOutcome::Ok,
            error: None,
            correlation_id: None,
            job: None,
        }
    }

    fn history(runs: usize, keep_secs: u64) -> Arc<History> {
        Arc::new(History::new(
            Arc::from("books"),
            HistoryLimits {
                runs,
                keep: Duration::from_secs(keep_secs),
            },
        ))
    }

    fn names(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn keeps_the_newest_by_count_and_answers_newest_first() {
        let history = history(3, 3600);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            history.push(run(1000 + i as u64, name));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1010);
        assert_eq!(names(&history.newest(10, now)), ["d", "c", "b"]);
        assert_eq!(names(&history.newest(2, now)), ["d", "c"]);
    }

    #[test]
    fn hides_runs_past_their_age() {
        let history = history(10, 60);
        history.push(run(1000, "old"));
        history.push(run(1050, "recent"));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1070);
        assert_eq!(names(&history.newest(10, later)), ["recent"]);
        history.push(run(1100, "new"));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1105);
        assert_eq!(names(&history.newest(10, later)), ["new", "recent"]);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let history = history(0, 60);
        history.push(run(1000, "a"));
        assert!(history.newest(10, SystemTime::UNIX_EPOCH).is_empty());
    }

    #[test]
    fn a_run_shows_its_job_and_attempt() {
        let mut record = run(1000, "send");
        record.kind = RunKind::Job;
        record.job = Some((JobId(7), 2));
        let shown = Run::from(record);
        assert_eq!(shown.attempt, Some(2));
        assert_eq!(shown.job.as_deref(), Some(&*JobId(7).to_string()));
    }

    #[test]
    fn runs_not_yet_saved_are_taken_once_and_queue_their_history_once() {
        let history = history(3, 3600);
        history.push(run(1000, "before"));
        let saver = Arc::new(Unsaved::default());
        history.save_to(saver.clone());
        history.push(run(1001, "a"));
        history.push(run(1002, "b"));
        assert_eq!(saver.take().len(), 1, "queued once for two runs");
        assert_eq!(names(&history.take_unsaved().runs), ["before", "a", "b"]);
        assert!(history.take_unsaved().runs.is_empty(), "taken once");
        assert!(saver.take().is_empty());

        // More runs than the ring holds between two takes: the newest it holds.
        for at in 0..5 {
            history.push(run(1010 + at, "c"));
        }
        assert_eq!(saver.take().len(), 1, "queued again after the take");
        assert_eq!(history.take_unsaved().runs.len(), 3);
    }

    #[test]
    fn saved_runs_go_behind_the_newer_and_count_as_saved() {
        let history = history(3, 3600);
        history.push(run(2000, "new"));
        let saved: Vec<Run> = [run(1002, "c"), run(1001, "b"), run(1000, "a")]
            .into_iter()
            .map(Run::from)
            .collect();
        history.seed(saved);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2001);
        assert_eq!(names(&history.newest(10, now)), ["new", "c", "b"]);
        assert_eq!(names(&history.take_unsaved().runs), ["new"]);
    }

    #[test]
    fn a_saved_run_comes_back_as_it_was() {
        let mut record = run(1000, "send");
        record.kind = RunKind::Job;
        record.job = Some((JobId(7), 2));
        record.error = Some("declined".into());
        record.correlation_id = Some("order-1".into());
        let run = Run::from(record);
        assert_eq!(Run::from(RunRecord::from(run.clone())), run);
    }
}
