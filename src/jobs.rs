//! Durable jobs: the dispatcher between a service's durable actions and the store.
//!
//! A call of a durable action is committed to the store before its caller hears that it was
//! accepted. When the service runs here and has room, the job is committed already claimed and
//! handed to the service's host at once, as an in-memory call of the same action would be (its
//! priority, timeout and correlation id apply); otherwise it waits in the store, and the
//! dispatcher's pump claims it when the service has room or its time comes. The outcome of each
//! attempt is committed: completed with its reply, retried at a stored time, or dead. The design
//! is in `docs/design/store.md`.

mod clock;
mod history;
mod lane;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use futures::FutureExt;
use tokio::sync::{Notify, oneshot};

pub(crate) use clock::Clock;
use lane::Lane;

use crate::Error;
use crate::action::{CallOptions, JobRun, Permanent};
use crate::host::ErasedService;
use crate::service::retry::{JobDead, Retry};
use crate::status::HistoryLimits;
use crate::store::{Claim, Enqueued, Job, JobId, JobState, NewJob, Outcome, Store};

/// How a job is enqueued: when it may run, its idempotency key, and the options of its calls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::JobOptions;
///
/// let options = JobOptions::default()
///     .key("invoice-1042")
///     .delay(Duration::from_secs(60))
///     .priority(5);
/// assert_eq!(options.key.as_deref(), Some("invoice-1042"));
/// assert_eq!(options.call.priority, 5);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobOptions {
    /// A job enqueued with the key of an earlier job of the same service and action is not
    /// enqueued again: the caller gets the earlier job's id.
    pub key: Option<String>,
    /// Not before this long after it is committed.
    pub delay: Option<Duration>,
    /// Not before this time (wins over [`delay`](Self::delay)).
    pub at: Option<SystemTime>,
    /// The options of each attempt's call: priority, timeout (of one attempt) and correlation id.
    pub call: CallOptions,
}

impl JobOptions {
    /// With this idempotency key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Runs it no sooner than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Runs it no sooner than `at`.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
        self
    }

    /// With this priority among the service's waiting jobs and queued calls.
    pub fn priority(mut self, priority: i32) -> Self {
        self.call.priority = priority;
        self
    }

    /// Each attempt gives up after `timeout`, and counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.call.timeout = Some(timeout);
        self
    }

    /// Tags the job, and everything its attempts do, with a correlation id.
    pub fn correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.call.correlation_id = Some(id.into());
        self
    }
}

/// The furthest a job may be delayed: a time past it is a mistake, not a plan.
const LONGEST_DELAY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How long a job the service could not take waits before it is handed over again.
const POSTPONED: Duration = Duration::from_secs(1);
/// How many times an attempt's outcome is offered to the store before it is left to recovery.
const RECORD_TRIES: u32 = 5;

/// How long shutdown waits, at least, for the outcomes of the last attempts to be committed.
const RECORDING_GRACE: Duration = Duration::from_secs(2);

/// How long finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// A completed job, and with it its idempotency key.
    pub(crate) completed: Duration,
    /// A dead job, in the dead letters.
    pub(crate) dead: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed: Duration::from_secs(24 * 3600),
            dead: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// How often the pump removes the finished jobs past their retention, and how many at most
/// in one commit.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: usize = 1000;

/// How a job ended, as its waiters hear it: its reply (JSON), or why it is dead.
type Settled = Result<Vec<u8>, Error>;

/// The dispatcher of one runtime's durable jobs.
pub(crate) struct Dispatcher {
    /// Until the runtime stops: then it is let go, so that the file can be opened again.
    store: std::sync::RwLock<Option<Arc<dyn Store>>>,
    /// Who claims jobs: this process, for as long as it runs.
    owner: String,
    clock: Clock,
    retention: Retention,
    /// When the finished jobs were last pruned, for the next prune to wait its turn.
    pruned: std::sync::Mutex<Option<SystemTime>>,
    /// The services whose jobs run here, by name.
    lanes: DashMap<String, Arc<Lane>>,
    /// Who waits for a job's end, by job.
    waiters: DashMap<JobId, Vec<oneshot::Sender<Settled>>>,
    /// Ends already told to the waiters whose outcome is not yet committed: a waiter that
    /// comes in between finds it here, and after the commit finds it in the store. Each is
    /// marked with the attempt that made it, which alone removes it.
    settled: DashMap<JobId, (u64, Settled)>,
    /// Marks the entries of `settled`.
    attempts: std::sync::atomic::AtomicU64,
    /// Wakes the pump: a job waits to be claimed, or a service has room again.
    wake: Notify,
    /// Rings whenever an attempt ends, for `close`.
    ended: Notify,
    closed: AtomicBool,
    pump: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Saves the services' run histories.
    runs: history::Saver,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "store",
                &self.store.read().unwrap_or_else(|e| e.into_inner()),
            )
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A claimed job, on its way to its service.
struct Run {
    id: JobId,
    action: String,
    params: Vec<u8>,
    key: Option<String>,
    attempt: u32,
    max_attempts: u32,
    options: CallOptions,
}

impl Run {
    fn of(job: Job) -> Self {
        let attempt = match job.state {
            JobState::Running { attempt } => attempt,
            _ => 1,
        };
        Run {
            id: job.id,
            action: job.action,
            params: job.params,
            key: job.key,
            attempt,
            max_attempts: job.max_attempts,
            options: CallOptions {
                priority: job.priority,
                timeout: job.timeout,
                correlation_id: job.correlation_id.map(Arc::from),
            },
        }
    }
}

impl Dispatcher {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        owner: String,
        clock: Clock,
        retention: Retention,
        history: HistoryLimits,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            store: std::sync::RwLock::new(Some(store)),
            owner,
            clock,
            retention,
            pruned: std::sync::Mutex::new(None),
            lanes: DashMap::new(),
            waiters: DashMap::new(),
            settled: DashMap::new(),
            attempts: std::sync::atomic::AtomicU64::new(0),
            wake: Notify::new(),
            ended: Notify::new(),
            closed: AtomicBool::new(false),
            pump: std::sync::Mutex::new(None),
            runs: history::Saver::new(history),
        })
    }

    /// The store, while the runtime runs.
    pub(crate) fn store(&self) -> Result<Arc<dyn Store>, Error> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store.clone().ok_or(Error::ShuttingDown)
    }

    /// The time now, by the dispatcher's clock (which a test on paused time drives).
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Runs `service`'s jobs in this process from now on.
    pub(crate) fn serve(&self, service: Arc<dyn ErasedService>) {
        let lane = Lane::new(service);
        self.lanes.insert(lane.name().to_owned(), Arc::new(lane));
    }

    /// Puts back the runs the store keeps of `service`, and saves its runs from now on.
    pub(crate) fn keep_runs(&self, service: &dyn ErasedService) {
        if let Ok(store) = self.store() {
            self.runs.keep(&*store, &service.shared().history);
        }
    }

    /// Starts claiming the jobs that wait: those a stopped process left, the delayed, the
    /// retried, and those that found their service without room.
    ///
    /// The first claims are made before it returns, so that the runtime's start hands what a
    /// stopped process left to its services before any new job can pass it.
    pub(crate) async fn start(self: &Arc<Self>) {
        let failed = self.claim_all().await;
        let pump = tokio::spawn(self.clone().pump(failed));
        *self.pump.lock().unwrap_or_else(|e| e.into_inner()) = Some(pump);
        if let Ok(store) = self.store() {
            self.runs.start(store);
        }
    }

    /// Takes no more jobs and claims none: the runtime is shutting down.
    pub(crate) fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits until `deadline` for the attempts under way to be recorded, and lets the store
    /// go. Their services have drained by now, so each attempt has ended or is about to.
    pub(crate) async fn close(&self, deadline: tokio::time::Instant) {
        self.stop();
        // The services have drained, so what is left is the recording of outcomes: it gets a
        // moment even when the drain used the whole shutdown timeout.
        let deadline = deadline.max(tokio::time::Instant::now() + RECORDING_GRACE);
        let pump = self.pump.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pump) = pump {
            // A claim under way ends with its commit; a store that does not answer is left.
            if tokio::time::timeout_at(deadline, pump).await.is_err() {
                tracing::warn!("the job pump did not stop by the shutdown deadline");
            }
        }
        loop {
            let ended = self.ended.notified();
            let running: usize = self.lanes.iter().map(|l| l.running()).sum();
            if running == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!(
                    running,
                    "jobs were still running at the shutdown deadline; they run again at the next start"
                );
                break;
            }
        }
        // A waiter left now would wait for a process that has stopped.
        self.waiters.clear();
        self.lanes.clear();
        if let Ok(store) = self.store() {
            self.runs.close(&*store, deadline).await;
        }
        let store = self.store.write().unwrap_or_else(|e| e.into_inner()).take();
        // The last handle closes the file once it has committed what waits, which it may do
        // itself: blocking work, made off the async runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    }

    /// Commits a job of `service`'s durable `action` with JSON `params`; runs it at once when
    /// it is due and the service runs here with room.
    pub(crate) async fn enqueue(
        self: &Arc<Self>,
        service: &Arc<dyn ErasedService>,
        action: &str,
        params: Vec<u8>,
        options: JobOptions,
    ) -> Result<Enqueued, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let Some(retry) = service.durable(action) else {
            return Err(Error::NotDurable {
                service: service.name().to_owned(),
                action: action.to_owned(),
            });
        };
        let shared = service.shared();
        if !shared.enabled {
            return Err(Error::ServiceDisabled {
                service: service.name().to_owned(),
            });
        }
        if shared.remote {
            return Err(kept_elsewhere(service.name()));
        }
        let now = self.clock.now();
        let too_far = |field: &str, what: String| Error::BadParameters {
            service: service.name().to_owned(),
            action: action.to_owned(),
            field: Some(field.into()),
            message: format!(
                "{what} is more than {} days away",
                LONGEST_DELAY.as_secs() / 86_400
            ),
        };
        let latest = now + LONGEST_DELAY;
        let run_at = match (options.at, options.delay) {
            (Some(at), _) if at > latest => return Err(too_far("at", format!("{at:?}"))),
            (Some(at), _) => Some(at),
            (None, Some(delay)) if delay > LONGEST_DELAY => {
                return Err(too_far("delay", format!("a delay of {delay:?}")));
            }
            (None, Some(delay)) => Some(now + delay),
            (None, None) => None,
        };
        let due = run_at.is_none_or(|at| at <= now);
        let lane = self.lanes.get(service.name()).map(|l| l.clone());
        // Straight to the host only when no job waits for the service in the store: one that
        // waits runs first, in its order, when the pump claims it.
        let lane = lane.filter(|lane| due && lane.backlog() == 0 && lane.take());
        let JobOptions { key, call, .. } = options;
        let job = NewJob {
            id: JobId::new(now),
            service: service.name().to_owned(),
            action: action.to_owned(),
            params,
            priority: call.priority,
            correlation_id: call.correlation_id.as_deref().map(str::to_owned),
            key,
            run_at,
            max_attempts: retry.max_attempts.max(1),
            timeout: call.timeout,
        };
        let run = lane.as_ref().map(|_| Run {
            id: job.id,
            action: job.action.clone(),
            params: job.params.clone(),
            key: job.key.clone(),
            attempt: 1,
            max_attempts: job.max_attempts,
            options: call,
        });
        let claim = lane.as_ref().map(|_| Claim::new(self.owner.clone(), now));
        let enqueued = match self.store() {
            Ok(store) => store.enqueue(job, claim, now).await,
            Err(err) => Err(err),
        };
        match (&enqueued, lane, run) {
            (Ok(Enqueued::Created(_)), Some(lane), Some(run)) => {
                tokio::spawn(self.clone().run(lane, run));
            }
            (Ok(Enqueued::Created(_)), None, _) => {
                if due && let Some(lane) = self.lanes.get(service.name()) {
                    lane.set_backlog();
                }
                self.wake.notify_one();
            }
            (_, Some(lane), _) => {
                lane.give_back();
                self.ended.notify_waiters();
            }
            _ => {}
        }
        enqueued
    }

    /// Waits for the end of job `id`: its reply (JSON) once it completed, or the error of its
    /// last attempt once it is dead. A job that is neither is waited for.
    pub(crate) async fn wait(&self, id: JobId) -> Result<Vec<u8>, Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiters.entry(id).or_default();
            // Those who stopped waiting leave no trace, however often a job is waited for.
            waiting.retain(|w| !w.is_closed());
            waiting.push(tx);
        }
        let known = match self.settled.get(&id) {
            Some(settled) => Some(settled.1.clone()),
            None => match self.store().and_then(|s| s.job(id)) {
                Err(err) => Some(Err(err)),
                Ok(None) => Some(Err(Error::UnknownJob { id: id.to_string() })),
                Ok(Some(job)) => ended(&job),
            },
        };
        if let Some(known) = known {
            drop(rx);
            self.waiters.remove_if_mut(&id, |_, waiting| {
                waiting.retain(|w| !w.is_closed());
                waiting.is_empty()
            });
            return known;
        }
        rx.await.unwrap_or(Err(Error::ShuttingDown))
    }

    /// Gives a dead job a new series of attempts, and wakes the pump to claim it.
    pub(crate) async fn retry(&self, id: JobId) -> Result<(), Error> {
        let store = self.store()?;
        match store.job(id)? {
            None => return Err(Error::UnknownJob { id: id.to_string() }),
            Some(job) if job.state != JobState::Dead => {
                return Err(Error::JobConflict {
                    id: id.to_string(),
                    state: job.state.name().into(),
                    reason: "only a dead job can be retried".into(),
                });
            }
            Some(_) => {}
        }
        store.retry(id).await?;
        // The end of the series before is no answer for the new one.
        self.settled.remove(&id);
        if let Some(job) = store.job(id)?
            && let Some(lane) = self.lanes.get(&job.service)
        {
            lane.set_backlog();
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Removes a job that is not running; its waiters hear that it is gone.
    pub(crate) async fn discard(&self, id: JobId) -> Result<bool, Error> {
        let store = self.store()?;
        if let Some(job) = store.job(id)?
            && matches!(job.state, JobState::Running { .. })
        {
            return Err(Error::JobConflict {
                id: id.to_string(),
                state: job.state.name().into(),
                reason: "a running job cannot be discarded; it can be once its attempt ends".into(),
            });
        }
        let gone = store.discard(id).await?;
        if gone {
            self.tell(id, &Err(Error::UnknownJob { id: id.to_string() }));
        }
        Ok(gone)
    }

    /// Tells every waiter of `id` how it ended.
    fn tell(&self, id: JobId, settled: &Settled) {
        if let Some((_, waiting)) = self.waiters.remove(&id) {
            for waiter in waiting {
                let _ = waiter.send(settled.clone());
            }
        }
    }

    /// One attempt: through the service's host, then its outcome committed.
    async fn run(self: Arc<Self>, lane: Arc<Lane>, run: Run) {
        let Run {
            id,
            action,
            params,
            key,
            attempt,
            max_attempts,
            options,
        } = run;
        let correlation = options.correlation_id.as_deref().map(str::to_owned);
        let job = Arc::new(JobRun {
            id,
            key: key.clone(),
            attempt,
            max_attempts,
        });
        let mut dead = None;
        let service = lane.service().clone();
        let result = std::panic::AssertUnwindSafe(
            service.clone().run_attempt(&action, params, options, job),
        )
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(Error::ServiceFailed {
                service: service.name().to_owned(),
                reason: "the call panicked".into(),
            })
        });
        let now = self.clock.now();
        let (outcome, settled) = match result {
            Ok(reply) => (Outcome::Completed(reply.clone()), Some(Ok(reply))),
            Err(err) if self.released(&*service, &err) => (Outcome::Released, None),
            // The service could not take it (restarting, or its queue full of other calls):
            // no fault of the job's, so no attempt counted; it comes back in a moment.
            Err(Error::ServiceUnavailable { .. } | Error::Overloaded { .. }) => {
                let at = now + POSTPONED;
                (Outcome::Postponed { at }, None)
            }
            Err(err) => {
                let error = err.to_string();
                if attempt >= max_attempts || is_permanent(&err) {
                    tracing::warn!(job = %id, service = service.name(), action, attempt, %error, "a job is dead");
                    dead = Some(JobDead {
                        id: id.to_string(),
                        action: action.clone(),
                        key: key.clone(),
                        attempts: attempt,
                        error: error.clone(),
                    });
                    (Outcome::Dead { error }, Some(Err(err)))
                } else {
                    let retry = service.durable(&action).unwrap_or_else(Retry::none);
                    let at = now + retry.delay(attempt);
                    tracing::info!(job = %id, service = service.name(), action, attempt, %error, "a job's attempt failed; it runs again later");
                    (Outcome::Retry { at, error }, None)
                }
            }
        };
        let mark = self.attempts.fetch_add(1, Ordering::Relaxed);
        if let Some(settled) = settled {
            self.settled.insert(id, (mark, settled.clone()));
            self.tell(id, &settled);
        }
        if self.record(id, outcome, now).await {
            if let Some(dead) = dead {
                // Said once it is in the dead letters, where a subscriber may look for it.
                let correlation = correlation.map(Arc::from);
                let _ = crate::service::context::emit_from(&**service.shared(), dead, correlation);
            }
            self.settled.remove_if(&id, |_, (made, _)| *made == mark);
        }
        // Not recorded: the answer stays for later waiters, and the store recovers the job,
        // still claimed, at its next open.
        lane.give_back();
        self.ended.notify_waiters();
        self.wake.notify_one();
    }

    /// Commits an attempt's outcome, trying again a few times if the store fails (a full disk
    /// may have room a moment later); answers whether it was committed.
    async fn record(&self, id: JobId, outcome: Outcome, now: SystemTime) -> bool {
        let mut pause = Duration::from_millis(100);
        for tried in 1..=RECORD_TRIES {
            let finished = match self.store() {
                Ok(store) => store.finish(id, outcome.clone(), now).await,
                Err(err) => Err(err),
            };
            match finished {
                Ok(()) => return true,
                // The last try, or a store already let go: it is left to recovery.
                Err(err) if tried == RECORD_TRIES || matches!(err, Error::ShuttingDown) => {
                    tracing::error!(job = %id, %err, "a job's outcome could not be recorded; it runs again at the next start");
                    return false;
                }
                Err(err) => {
                    tracing::warn!(job = %id, %err, tried, "a job's outcome could not be recorded yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        false
    }

    /// Whether an attempt ended for a reason of the process's, not the job's: it is given back.
    fn released(&self, service: &dyn ErasedService, err: &Error) -> bool {
        matches!(err, Error::ShuttingDown)
            || self.closed.load(Ordering::Acquire)
            || service.shared().runtime.is_shutting_down()
    }

    /// Claims what waits, for every service with room; sleeps until the next job is due or
    /// something wakes it.
    async fn pump(self: Arc<Self>, mut failed: bool) {
        // The earliest time a waiting job is due, as last read.
        let mut due: Option<SystemTime> = None;
        let mut first = true;
        while !self.closed.load(Ordering::Acquire) {
            // When the oldest finished job's retention ends: a read, and a commit only then.
            let prune_at = self.prune_at();
            if prune_at.is_some_and(|at| at <= self.clock.now()) {
                self.prune().await;
                continue;
            }
            let woken = self.wake.notified();
            // A job whose time has come may be any service's, and whichever claim runs first
            // moves it to its service's ready queue: every lane looks, however the pump woke.
            let looked = self.clock.now();
            let flagged = due.is_some_and(|at| at <= looked);
            if flagged {
                for lane in self.lanes.iter() {
                    lane.set_backlog();
                }
            }
            // The first round was made by `start`.
            if !std::mem::take(&mut first) {
                failed = self.claim_all().await;
            }
            due = if failed {
                Some(self.clock.now() + Duration::from_secs(1))
            } else {
                self.store()
                    .and_then(|s| s.next_due())
                    .unwrap_or_else(|err| {
                        tracing::error!(%err, "the store could not say when its next job is due");
                        Some(self.clock.now() + Duration::from_secs(1))
                    })
            };
            let sleep = async {
                match due {
                    // Due already when every lane looked, and none had room to claim it: the
                    // end of an attempt wakes the pump, which then looks again.
                    Some(at) if flagged && at <= looked => std::future::pending().await,
                    // A time to come, or one that came after the lanes looked (during the
                    // claim's commit, say), which a sleep until then answers at once.
                    Some(at) => tokio::time::sleep_until(self.clock.instant(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = woken => {}
                () = sleep => {}
                () = async {
                    match prune_at {
                        Some(at) => tokio::time::sleep_until(self.clock.instant(at)).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// When the next finished job's retention ends; `None` with none kept, or when the store
    /// cannot say (it is asked again at the next wake).
    fn prune_at(&self) -> Option<SystemTime> {
        let (completed, dead) = (self.retention.completed, self.retention.dead);
        let at = self
            .store()
            .and_then(|s| s.prunable_at(completed, dead))
            .ok()??;
        // Not more often than every PRUNE_EVERY, so that jobs finishing one by one past
        // their retention are removed in batches.
        Some(at.max(self.pruned_until()))
    }

    /// The earliest the next prune may come.
    fn pruned_until(&self) -> SystemTime {
        let pruned = *self.pruned.lock().unwrap_or_else(|e| e.into_inner());
        pruned.map_or(std::time::UNIX_EPOCH, |at| at + PRUNE_EVERY)
    }

    /// Removes the finished jobs past their retention, a batch per commit.
    async fn prune(&self) {
        let now = self.clock.now();
        *self.pruned.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        let before = |keep: Duration| now.checked_sub(keep).unwrap_or(std::time::UNIX_EPOCH);
        let (completed, dead) = (
            before(self.retention.completed),
            before(self.retention.dead),
        );
        loop {
            let pruned = match self.store() {
                Ok(store) => store.prune(completed, dead, PRUNE_BATCH).await,
                Err(err) => Err(err),
            };
            match pruned {
                Ok(n) if n == PRUNE_BATCH && !self.closed.load(Ordering::Acquire) => {}
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(pruned = n, "finished jobs past their retention removed");
                    }
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "finished jobs could not be removed; trying again later");
                    return;
                }
            }
        }
    }

    /// A claim for every lane that may have jobs waiting; answers whether one failed.
    async fn claim_all(self: &Arc<Self>) -> bool {
        let lanes: Vec<Arc<Lane>> = self.lanes.iter().map(|l| l.clone()).collect();
        let mut failed = false;
        for lane in lanes {
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            failed |= self.claim(&lane).await.is_err();
        }
        failed
    }

    /// Claims as many of `lane`'s waiting jobs as it has room for, and runs them.
    async fn claim(self: &Arc<Self>, lane: &Arc<Lane>) -> Result<(), Error> {
        let seen = lane.backlog();
        if seen == 0 {
            return Ok(());
        }
        let room = lane.reserve();
        if room == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let claim = Claim::new(self.owner.clone(), now);
        let claimed = match self.store() {
            Ok(store) => store.claim(lane.name(), claim, room, now).await,
            Err(err) => Err(err),
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(err) => {
                lane.unreserve(room);
                tracing::error!(service = lane.name(), %err, "jobs could not be claimed");
                return Err(err);
            }
        };
        let count = claimed.len();
        if count > room {
            // A store that answers more than it was asked for: run them all the same.
            lane.add(count - room);
        } else {
            lane.unreserve(room - count);
        }
        if count < room {
            lane.clear_backlog(seen);
        }
        for job in claimed {
            tokio::spawn(self.clone().run(lane.clone(), Run::of(job)));
        }
        Ok(())
    }
}

/// Why a service that runs on other nodes takes no job here.
pub(crate) fn kept_elsewhere(service: &str) -> Error {
    Error::ServiceUnavailable {
        service: service.to_owned(),
        reason: "it runs on other nodes, which keep its jobs, and none of them serves it now"
            .into(),
    }
}

/// How a stored job ended, if it has.
fn ended(job: &Job) -> Option<Settled> {
    match job.state {
        JobState::Completed => Some(Ok(job.reply.clone().unwrap_or_default())),
        JobState::Dead => Some(Err(Error::ActionFailed {
            service: job.service.clone(),
            action: job.action.clone(),
            message: job
                .errors
                .last()
                .map_or_else(|| "the job is dead".into(), |e| e.error.clone()),
            source: None,
        })),
        _ => None,
    }
}

/// Whether retrying cannot mend `err`: the handler said so, or the job's parameters no longer
/// fit its action.
fn is_permanent(err: &Error) -> bool {
    match err {
        Error::ActionFailed {
            source: Some(source),
            ..
        } => source.downcast_ref::<Permanent>().is_some(),
        Error::BadParameters { .. } | Error::UnknownAction { .. } | Error::NotDurable { .. } => {
            true
        }
        _ => false,
    }
}
