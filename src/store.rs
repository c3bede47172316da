//! The store: where durable work is kept, so that it survives a crash.
//!
//! A job is a call of a service's action that the store has committed: it is run at least once,
//! retried under its policy, and kept with its outcome. [`Store`] is the seam every engine
//! implements; [`RedbStore`] keeps jobs in one file (redb), or in memory for tests. The design,
//! and why redb, is in `docs/design/store.md`.
//!
//! ```
//! use std::time::SystemTime;
//! use sora::store::{Claim, Enqueued, JobState, NewJob, Outcome, RedbStore, Store};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
//! let store = RedbStore::in_memory()?;
//! let now = SystemTime::now();
//! let job = NewJob::new("mailer", "send", br#"{"to":"ada"}"#.to_vec());
//! let id = job.id;
//! assert_eq!(store.enqueue(job, None, now).await?, Enqueued::Created(id));
//! assert_eq!(store.job(id)?.unwrap().state, JobState::Queued);
//!
//! let claimed = store.claim("mailer", Claim::new("node-a", now), 10, now).await?;
//! assert_eq!(claimed[0].id, id);
//! store.finish(id, Outcome::Completed(b"sent".to_vec()), now).await?;
//! assert_eq!(store.job(id)?.unwrap().state, JobState::Completed);
//! # Ok(()) }
//! ```

mod group;
pub(crate) mod id;
mod record;
mod redb;
mod runs;
pub(crate) mod state;

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::Error;
pub use crate::service::ScheduleMark;
use crate::status::Run;
pub use id::{BadJobId, JobId};
pub use redb::RedbStore;

/// How many times a job may be interrupted (its process stopped while it was claimed) before it
/// is dead: a job that kills its process every time dies, instead of running forever.
pub const MAX_INTERRUPTIONS: u32 = 5;

/// A job to commit: which action of which service, with what parameters, and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewJob {
    /// Its id, made by the caller ([`JobId::new`]), so that it is known before the commit.
    pub id: JobId,
    /// The service that runs it.
    pub service: String,
    /// The action it calls.
    pub action: String,
    /// The action's value, encoded by the caller (JSON, for a job of a service's action).
    pub params: Vec<u8>,
    /// Among the ready jobs of one service, the higher priority is claimed first (default 0).
    pub priority: i32,
    /// Carried to the handler and into logs.
    pub correlation_id: Option<String>,
    /// A job enqueued with the key of an earlier job of the same service and action is not
    /// enqueued again: [`Store::enqueue`] answers the earlier job's id.
    pub key: Option<String>,
    /// Not before this time (a delayed job); `None` runs it as soon as it is claimed.
    pub run_at: Option<SystemTime>,
    /// How many attempts it gets before it is dead (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may run.
    pub timeout: Option<Duration>,
}

impl NewJob {
    /// A job of `service`'s `action` with encoded `params`, a new id, one attempt and
    /// priority 0.
    pub fn new(service: impl Into<String>, action: impl Into<String>, params: Vec<u8>) -> Self {
        NewJob {
            id: JobId::new(SystemTime::now()),
            service: service.into(),
            action: action.into(),
            params,
            priority: 0,
            correlation_id: None,
            key: None,
            run_at: None,
            max_attempts: 1,
            timeout: None,
        }
    }

    /// With this idempotency key (see [`key`](Self::key)).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Not before `at`.
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// With `attempts` attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// With this priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// Who runs a job, and until when: a claim that nobody extends runs out, and a store shared by
/// several nodes then lets another claim the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claiming process: its node name and incarnation.
    pub owner: String,
    /// When the claim runs out unless it is extended.
    pub until: SystemTime,
}

impl Claim {
    /// The default length of a claim: 60 seconds, extended while the job runs.
    pub const LEASE: Duration = Duration::from_secs(60);

    /// A claim by `owner` for [`LEASE`](Self::LEASE) from `now`.
    pub fn new(owner: impl Into<String>, now: SystemTime) -> Self {
        Claim {
            owner: owner.into(),
            until: now + Self::LEASE,
        }
    }
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The job was committed.
    Created(JobId),
    /// A job of the same service, action and key exists: this is its id, and nothing was
    /// committed.
    Existing(JobId),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// How an attempt ended, as [`Store::finish`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded with this reply (encoded by the caller).
    Completed(Vec<u8>),
    /// The attempt failed; run the job again at `at`.
    Retry {
        /// When to run it again.
        at: SystemTime,
        /// What the attempt failed with.
        error: String,
    },
    /// The attempt failed and there is no other: park the job with its errors.
    Dead {
        /// What the last attempt failed with.
        error: String,
    },
    /// The attempt did not run, or was stopped before its end, for a reason of the process's
    /// and not the job's (the runtime is shutting down): the attempt is given back and the job
    /// is ready again.
    Released,
    /// The attempt did not run, for a reason of the service's (it was restarting, or its queue
    /// was full): the attempt is given back and the job waits until `at`.
    Postponed {
        /// When it becomes ready again.
        at: SystemTime,
    },
}

/// Where a job is in its life.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Committed, waiting to be claimed.
    Queued,
    /// Waiting for its time, before its first attempt.
    Scheduled {
        /// When it becomes ready.
        #[cfg_attr(feature = "http", schema(value_type = crate::schema::TimeSchema))]
        at: SystemTime,
    },
    /// Claimed: being run, or about to be.
    Running {
        /// Which attempt, from 1.
        attempt: u32,
    },
    /// An attempt failed; the next waits for its time.
    Retrying {
        /// When the next attempt becomes ready.
        #[cfg_attr(feature = "http", schema(value_type = crate::schema::TimeSchema))]
        at: SystemTime,
        /// The attempts made so far.
        attempts: u32,
    },
    /// Done, with a reply.
    Completed,
    /// Every attempt failed, or the job was interrupted too often.
    Dead,
}

/// A failed attempt.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptError {
    /// Which attempt, from 1; 0 for an interruption of a job that had not been claimed again.
    pub attempt: u32,
    /// When it ended.
    #[cfg_attr(feature = "http", schema(value_type = crate::schema::TimeSchema))]
    pub at: SystemTime,
    /// What it failed with.
    pub error: String,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The service that runs it.
    pub service: String,
    /// The action it calls.
    pub action: String,
    /// The action's value, encoded.
    pub params: Vec<u8>,
    /// Its priority.
    pub priority: i32,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// Its idempotency key.
    pub key: Option<String>,
    /// Where it is in its life.
    pub state: JobState,
    /// The attempts it gets.
    pub max_attempts: u32,
    /// How long one attempt may run.
    pub timeout: Option<Duration>,
    /// How often its process stopped while it was claimed (see [`MAX_INTERRUPTIONS`]).
    pub interruptions: u32,
    /// Its current claim, while it is running.
    pub claim: Option<Claim>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The reply of the attempt that completed it.
    pub reply: Option<Vec<u8>>,
    /// When it was committed.
    pub created: SystemTime,
    /// When it completed or died.
    pub finished: Option<SystemTime>,
}

/// Which jobs [`Store::page`] lists: a page of them, in the order of their ids (of their
/// creation), from after a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only this service's.
    pub service: Option<String>,
    /// Only those whose state has this name (`queued`, `scheduled`, `running`, `retrying`,
    /// `completed`, `dead`).
    pub state: Option<String>,
    /// At most this many (default: as many as the page's scan finds, see [`SCAN_LIMIT`]).
    pub limit: Option<usize>,
    /// Start after this job, in the page's order: the [`JobPage::next`] of the page before.
    pub after: Option<JobId>,
    /// The newest first, instead of the oldest.
    pub newest_first: bool,
}

/// The most jobs one page reads to find its matches: a page whose filter matches few of them
/// ends there, with a [`JobPage::next`] to go on from, so that no list reads the whole store.
pub const SCAN_LIMIT: usize = 10_000;

/// A page of jobs, and where the next one starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobPage {
    /// The jobs, in the order asked.
    pub jobs: Vec<Job>,
    /// The cursor for the next page ([`JobFilter::after`]); `None` when nothing is left.
    pub next: Option<JobId>,
}

impl JobPage {
    /// A page of `jobs`, the next starting after `next`.
    pub fn new(jobs: Vec<Job>, next: Option<JobId>) -> Self {
        JobPage { jobs, next }
    }
}

/// Where durable work is kept: the operations of a job's life, whatever the engine.
///
/// Every method that changes something answers once its change is durable. Work is claimed
/// with a [`Claim`] that runs out, never held by a lock of one process, so that a store shared
/// by several nodes can implement the same methods. Every time comes from the caller, so that
/// a test on virtual time drives the store as it drives the runtime.
pub trait Store: Send + Sync + Debug + 'static {
    /// Commits a job at `now`. With `claim`, the job is committed already claimed, for a caller
    /// that runs it at once (its first attempt is counted); without, it waits to be claimed, in
    /// the ready queue or, with a [`run_at`](NewJob::run_at) later than `now`, until its time.
    fn enqueue(
        &self,
        job: NewJob,
        claim: Option<Claim>,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<Enqueued, Error>>;

    /// Claims up to `max` of `service`'s jobs that are due at `now`, the highest priority and
    /// oldest first, counting an attempt of each.
    fn claim<'a>(
        &'a self,
        service: &'a str,
        claim: Claim,
        max: usize,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Vec<Job>, Error>>;

    /// Records how a claimed job's attempt ended.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if there is no such unfinished job.
    fn finish(
        &self,
        id: JobId,
        outcome: Outcome,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<(), Error>>;

    /// Gives a dead job a new series of attempts: it is ready again, its attempts counted
    /// from none, its errors kept.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if there is no such dead job.
    fn retry(&self, id: JobId) -> BoxFuture<'_, Result<(), Error>>;

    /// Removes a job that is not running, with its key; answers whether there was one.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the job is running.
    fn discard(&self, id: JobId) -> BoxFuture<'_, Result<bool, Error>>;

    /// Removes at most `max` finished jobs, oldest first: the completed that finished before
    /// `completed_before`, the dead before `dead_before`, each with its idempotency key, which
    /// names no job any more. Answers how many it removed.
    fn prune(
        &self,
        completed_before: SystemTime,
        dead_before: SystemTime,
        max: usize,
    ) -> BoxFuture<'_, Result<usize, Error>>;

    /// When the first finished job's retention ends: the completed are kept `completed`
    /// after they finished, the dead `dead`. `None` when none is kept.
    fn prunable_at(&self, completed: Duration, dead: Duration)
    -> Result<Option<SystemTime>, Error>;

    /// The earliest time at which a scheduled or retrying job becomes ready.
    fn next_due(&self) -> Result<Option<SystemTime>, Error>;

    /// The job of this id, finished or not.
    fn job(&self, id: JobId) -> Result<Option<Job>, Error>;

    /// A page of the jobs that `filter` asks for, reading at most [`SCAN_LIMIT`] of them.
    fn page(&self, filter: &JobFilter) -> Result<JobPage, Error>;

    /// Every job that `filter` asks for, up to its limit: [`page`](Self::page) after page
    /// until the limit is reached or nothing is left (this reads as much of the store as the
    /// filter needs; a caller that must stay bounded pages itself).
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, Error> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut filter = filter.clone();
        let mut jobs = Vec::new();
        while jobs.len() < limit {
            filter.limit = Some(limit - jobs.len());
            let page = self.page(&filter)?;
            jobs.extend(page.jobs);
            match page.next {
                Some(next) => filter.after = Some(next),
                None => break,
            }
        }
        Ok(jobs)
    }

    /// Appends to the run history: for each service, its runs, oldest first, and where its
    /// schedule stands, when that moved. Each service of them then keeps its newest `keep`
    /// runs, and none that started before `before`.
    fn record_runs(
        &self,
        runs: Vec<ServiceRuns>,
        keep: usize,
        before: SystemTime,
    ) -> BoxFuture<'_, Result<(), Error>>;

    /// Up to `limit` of `service`'s runs, newest first, none that started before `since`.
    fn runs(&self, service: &str, limit: usize, since: SystemTime) -> Result<Vec<Run>, Error>;

    /// Where `service`'s schedule stood at its last save ([`ServiceRuns::schedule`]).
    fn schedule(&self, service: &str) -> Result<Option<ScheduleMark>, Error>;

    /// `service`'s state under `key`, as last committed.
    fn state(&self, service: &str, key: &str) -> Result<Option<StateValue>, Error>;

    /// Up to `limit` of `service`'s state values in the order of their keys, from the first
    /// key after `after` (from the first key of all without it).
    fn state_entries(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StateValue)>, Error>;

    /// Writes or removes one value of a service's state, in one commit, if its version is what
    /// the change expects; answers once it is committed.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the key or the value is past its limit ([`STATE_KEY_LIMIT`],
    /// [`STATE_VALUE_LIMIT`]); nothing is written then.
    fn write_state(
        &self,
        change: StateChange,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<StateWrite, Error>>;

    /// Removes up to `max` of `service`'s state values, in one commit; answers how many. A
    /// caller clears all of it by calling again until fewer than `max` go, so that no one
    /// commit grows with the state.
    fn clear_state(&self, service: &str, max: usize) -> BoxFuture<'_, Result<usize, Error>>;
}

/// The longest key of a service's state, in bytes.
pub const STATE_KEY_LIMIT: usize = 512;

/// The largest value of a service's state, in bytes of its JSON.
pub const STATE_VALUE_LIMIT: usize = 1024 * 1024;

/// One value of a service's state, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateValue {
    /// The value, in JSON.
    pub json: Vec<u8>,
    /// The write that made it: a number the store gives no other write, so that a change
    /// that expects it ([`Expect::Version`]) fails once any other write came between.
    pub version: u64,
    /// When it was written.
    pub written: SystemTime,
}

impl StateValue {
    /// A value, for a store of one's own to answer with.
    pub fn new(json: Vec<u8>, version: u64, written: SystemTime) -> Self {
        StateValue {
            json,
            version,
            written,
        }
    }
}

/// What a change of state expects to find under its key, for [`Store::write_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything: the change is made whatever is there.
    Any,
    /// No value.
    Absent,
    /// The value of this version.
    Version(u64),
}

/// A change of one value of a service's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The service whose state it is.
    pub service: String,
    /// The key.
    pub key: String,
    /// The new value's JSON, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
    /// What must be there for the change to be made.
    pub expect: Expect,
}

impl StateChange {
    /// Sets `service`'s `key` to `json`, whatever was there.
    pub fn set(service: impl Into<String>, key: impl Into<String>, json: Vec<u8>) -> Self {
        StateChange {
            service: service.into(),
            key: key.into(),
            value: Some(json),
            expect: Expect::Any,
        }
    }

    /// Removes `service`'s `key`, whatever was there.
    pub fn remove(service: impl Into<String>, key: impl Into<String>) -> Self {
        StateChange {
            service: service.into(),
            key: key.into(),
            value: None,
            expect: Expect::Any,
        }
    }

    /// Made only if what is there is `expect`.
    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }
}

/// How a change of state ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateWrite {
    /// Made and committed.
    Done {
        /// The version of the value it replaced or removed; `None` if there was none.
        before: Option<u64>,
        /// The version of the value written; `None` for a removal.
        version: Option<u64>,
    },
    /// Not made: another value is there than the change expected.
    Conflict {
        /// The version there; `None` if there is no value.
        found: Option<u64>,
    },
}

/// One service's runs, oldest first, for [`Store::record_runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceRuns {
    /// The service's name.
    pub service: String,
    /// Its runs, oldest first.
    pub runs: Vec<Run>,
    /// Where its schedule stands now, if that moved since the last save: it replaces the
    /// mark kept before.
    pub schedule: Option<ScheduleMark>,
}

impl ServiceRuns {
    /// `service`'s `runs`, oldest first.
    pub fn new(service: impl Into<String>, runs: Vec<Run>) -> Self {
        ServiceRuns {
            service: service.into(),
            runs,
            schedule: None,
        }
    }

    /// With where its schedule stands.
    pub fn schedule(mut self, mark: ScheduleMark) -> Self {
        self.schedule = Some(mark);
        self
    }
}

impl JobState {
    /// The state's name, as [`JobFilter::state`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Scheduled { .. } => "scheduled",
            JobState::Running { .. } => "running",
            JobState::Retrying { .. } => "retrying",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }
}

#[cfg(test)]
mod tests;
