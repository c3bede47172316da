//! The store on redb: one file, or memory for tests. One committer at a time owns the write
//! transaction and commits every change that is waiting in one durable commit (see
//! [`group`](super::group) and `docs/design/store.md`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use redb::backends::InMemoryBackend;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use tokio::sync::oneshot;

use super::group::GroupCommit;
use super::record::{Stored, StoredState, ms, time};
use super::runs::{self, RUNS, SCHEDULES};
use super::state::{self, LAST_VERSION, STATE};
use super::{
    Claim, Enqueued, Job, JobFilter, JobId, JobPage, MAX_INTERRUPTIONS, NewJob, Outcome,
    SCAN_LIMIT, ScheduleMark, ServiceRuns, StateChange, StateValue, StateWrite, Store,
};
use crate::Error;
use crate::codec::DECODE_LIMIT;
use crate::status::Run;

/// The layout of the file's tables. A change that an older build could not read takes a new
/// number; a file of another number is refused at open.
pub(super) const STORE_FORMAT: u32 = 2;

pub(super) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Unfinished jobs, by id.
pub(super) const JOBS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("jobs");
/// Completed and dead jobs, by id.
const FINISHED: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("finished");
/// The completed jobs by when they finished, for their retention.
pub(super) const FINISHED_AT: TableDefinition<'_, (u64, u128), ()> =
    TableDefinition::new("finished_at");
/// The dead jobs by when they died, for theirs (format 2: format 1 kept them in `finished_at`).
pub(super) const DEAD_AT: TableDefinition<'_, (u64, u128), ()> = TableDefinition::new("dead_at");
/// Jobs that wait to be claimed: (service, priority order, id).
const READY: TableDefinition<'_, (&str, u32, u128), ()> = TableDefinition::new("ready");
/// Jobs that wait for a time: (when, id).
const SCHEDULED: TableDefinition<'_, (u64, u128), ()> = TableDefinition::new("scheduled");
/// Idempotency keys: (service, action, key) to the job's id.
const KEYS: TableDefinition<'_, (&str, &str, &str), u128> = TableDefinition::new("keys");
/// Dead jobs: (service, id).
const DEAD: TableDefinition<'_, (&str, u128), ()> = TableDefinition::new("dead");

/// How many waiting changes one commit takes at most.
const BATCH: usize = 1024;
/// How many changes may wait for a commit before callers wait to hand theirs over.
const QUEUE: usize = 16 * 1024;
/// The longest error kept for one attempt, in bytes.
const ERROR_LIMIT: usize = 4096;
/// How many attempts' errors a job keeps at most.
const ERRORS_KEPT: usize = 64;

/// The store on redb: a file that survives the process, or memory.
///
/// Cloning gives another handle to the same store. The file is locked while any handle is
/// alive; a second open of it, in this process or another, fails.
///
/// ```
/// # fn main() -> Result<(), sora::Error> {
/// let path = std::env::temp_dir().join(format!("sora-doc-{}.redb", std::process::id()));
/// let store = sora::store::RedbStore::open(&path)?;
/// drop(store);
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Dropped first: its drop commits what waits and returns once no commit is under way.
    /// The commits hold the file only while they commit, so that it is closed once the last
    /// handle is gone.
    writes: GroupCommit<Request>,
    db: Arc<Database>,
    /// The file's path, or `memory`, for errors.
    path: String,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the store in the file at `path`, creating it if there is none, and recovers the
    /// jobs that a stopped process had claimed: each is ready again, one interruption more (see
    /// [`MAX_INTERRUPTIONS`]).
    ///
    /// # Errors
    ///
    /// [`Error::Store`], naming the file, if it cannot be opened or created, is not a store,
    /// was written by a build of another store format, or is open elsewhere.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|e| store_error(&shown, e))?;
        Self::start(db, shown, SystemTime::now())
    }

    /// A store in memory, for tests: the same code as on a file, and gone when the last handle
    /// is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if redb cannot set it up.
    pub fn in_memory() -> Result<Self, Error> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| store_error("memory", e))?;
        Self::start(db, "memory".into(), SystemTime::now())
    }

    fn start(db: Database, path: String, now: SystemTime) -> Result<Self, Error> {
        prepare(&db, &path, now)?;
        let db = Arc::new(db);
        let writes = {
            let (db, path) = (Arc::downgrade(&db), path.clone());
            GroupCommit::new(BATCH, QUEUE, move |batch| {
                // Always there: the last handle's drop commits what waits before the file goes.
                if let Some(db) = db.upgrade() {
                    write(&db, &path, batch);
                }
            })
        };
        Ok(RedbStore {
            inner: Arc::new(Inner { writes, db, path }),
        })
    }

    /// Hands a change to be committed and waits until it is.
    async fn write<T>(
        &self,
        change: Change,
        reply: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        self.inner.writes.hand(Request(change)).await;
        reply
            .await
            .map_err(|_| store_error(&self.inner.path, "the store's writer has stopped"))?
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, Error> {
        let tx = self
            .inner
            .db
            .begin_read()
            .map_err(|e| store_error(&self.inner.path, e))?;
        f(&tx).map_err(|e| store_error(&self.inner.path, e))
    }

    /// The time of the first entry of a table keyed by (time, id).
    fn earliest(
        &self,
        table: TableDefinition<'_, (u64, u128), ()>,
    ) -> Result<Option<SystemTime>, Error> {
        self.read(|tx| {
            let table = tx.open_table(table)?;
            let first = table.first()?.map(|(key, _)| time(key.value().0));
            Ok(first)
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Stored, Error> {
        Stored::decode(bytes).map_err(|e| store_error(&self.inner.path, e))
    }
}

impl Store for RedbStore {
    fn enqueue(
        &self,
        job: NewJob,
        claim: Option<Claim>,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<Enqueued, Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::Enqueue {
                job: Box::new(job),
                claim,
                now,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        claim: Claim,
        max: usize,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Vec<Job>, Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::Claim {
                service: service.to_owned(),
                claim,
                max,
                now,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn finish(
        &self,
        id: JobId,
        outcome: Outcome,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::Finish {
                id,
                outcome,
                now,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn retry(&self, id: JobId) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.write(Change::Retry { id, reply }, answer).await
        })
    }

    fn discard(&self, id: JobId) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.write(Change::Discard { id, reply }, answer).await
        })
    }

    fn prune(
        &self,
        completed_before: SystemTime,
        dead_before: SystemTime,
        max: usize,
    ) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::Prune {
                completed_before,
                dead_before,
                max,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn prunable_at(
        &self,
        completed: Duration,
        dead: Duration,
    ) -> Result<Option<SystemTime>, Error> {
        let completed = self
            .earliest(FINISHED_AT)?
            .and_then(|t| t.checked_add(completed));
        let dead = self.earliest(DEAD_AT)?.and_then(|t| t.checked_add(dead));
        Ok(completed.into_iter().chain(dead).min())
    }

    fn next_due(&self) -> Result<Option<SystemTime>, Error> {
        self.earliest(SCHEDULED)
    }

    fn job(&self, id: JobId) -> Result<Option<Job>, Error> {
        let bytes = self.read(|tx| {
            for table in [JOBS, FINISHED] {
                if let Some(bytes) = tx.open_table(table)?.get(id.0)? {
                    return Ok(Some(bytes.value().to_vec()));
                }
            }
            Ok(None)
        })?;
        bytes.map(|b| self.decode(&b).map(|s| s.job())).transpose()
    }

    fn page(&self, filter: &JobFilter) -> Result<JobPage, Error> {
        let path = &self.inner.path;
        self.read(|tx| page(tx, path, filter))
    }

    fn record_runs(
        &self,
        runs: Vec<ServiceRuns>,
        keep: usize,
        before: SystemTime,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::Runs {
                runs,
                keep,
                before,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn runs(&self, service: &str, limit: usize, since: SystemTime) -> Result<Vec<Run>, Error> {
        let path = &self.inner.path;
        self.read(|tx| match tx.open_table(RUNS) {
            Ok(table) => runs::newest(&table, path, service, limit, since),
            // A file that has never kept a run.
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        })
    }

    fn schedule(&self, service: &str) -> Result<Option<ScheduleMark>, Error> {
        let path = &self.inner.path;
        self.read(|tx| match tx.open_table(SCHEDULES) {
            Ok(table) => runs::read_mark(&table, path, service),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    fn state(&self, service: &str, key: &str) -> Result<Option<StateValue>, Error> {
        let path = &self.inner.path;
        self.read(|tx| match tx.open_table(STATE) {
            Ok(table) => state::get(&table, path, service, key),
            // A file that has never kept state.
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    fn state_entries(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StateValue)>, Error> {
        let path = &self.inner.path;
        self.read(|tx| match tx.open_table(STATE) {
            Ok(table) => state::entries(&table, path, service, after, limit),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        })
    }

    fn write_state(
        &self,
        change: StateChange,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<StateWrite, Error>> {
        Box::pin(async move {
            // Refused here, before it waits for a commit; the writer checks again.
            if let Some(why) = state::refusal(&change) {
                return Err(store_error(&self.inner.path, why));
            }
            let (reply, answer) = oneshot::channel();
            let change = Change::State {
                change: Box::new(change),
                now,
                reply,
            };
            self.write(change, answer).await
        })
    }

    fn clear_state(&self, service: &str, max: usize) -> BoxFuture<'_, Result<usize, Error>> {
        let service = service.to_owned();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let change = Change::ClearState {
                service,
                max,
                reply,
            };
            self.write(change, answer).await
        })
    }
}

/// A page of jobs: the unfinished and the finished merged in id order (the order asked),
/// from after the cursor, filtered, until the page is full or [`SCAN_LIMIT`] records are read.
/// Dead jobs of one service are read through their index.
fn page(
    tx: &redb::ReadTransaction,
    path: &str,
    filter: &JobFilter,
) -> Result<JobPage, redb::Error> {
    let limit = filter.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(JobPage::default());
    }
    let newest = filter.newest_first;
    let state = filter.state.as_deref();
    let (unfinished, finished) = match state {
        Some("completed" | "dead") => (false, true),
        Some(_) => (true, false),
        None => (true, true),
    };
    let ids: Records<'_> = match (state, filter.service.as_deref()) {
        (Some("dead"), Some(service)) => dead_of(tx, service, filter.after, newest)?,
        _ => {
            let open = |table, wanted: bool| -> Result<_, redb::Error> {
                Ok(if wanted {
                    Some(in_order(tx.open_table(table)?, filter.after, newest)?)
                } else {
                    None
                })
            };
            merged(open(JOBS, unfinished)?, open(FINISHED, finished)?, newest)
        }
    };
    let mut jobs = Vec::new();
    let mut last = None;
    for (scanned, entry) in ids.enumerate() {
        if jobs.len() >= limit || scanned >= SCAN_LIMIT {
            // More may follow: the next page goes on from the last record read.
            return Ok(JobPage::new(jobs, last.map(JobId)));
        }
        let (id, bytes) = entry?;
        last = Some(id);
        if bytes.is_empty() {
            // An index entry whose job is gone: read, counted, nothing to show.
            continue;
        }
        let record = match Stored::decode(&bytes) {
            Ok(record) => record,
            Err(e) => {
                damaged(path, id, &e);
                continue;
            }
        };
        let job = record.job();
        let service = filter.service.as_deref().is_none_or(|s| s == job.service);
        if service && state.is_none_or(|s| s == job.state.name()) {
            jobs.push(job);
        }
    }
    Ok(JobPage::new(jobs, None))
}

type Records<'t> = Box<dyn Iterator<Item = Result<(u128, Vec<u8>), redb::Error>> + 't>;

/// A table of jobs by id, from after `after`, in the order asked.
fn in_order<'t>(
    table: redb::ReadOnlyTable<u128, &'static [u8]>,
    after: Option<JobId>,
    newest: bool,
) -> Result<Records<'t>, redb::Error> {
    use std::ops::Bound::{Excluded, Unbounded};
    let cut = after.map_or(Unbounded, |a| Excluded(a.0));
    let range = if newest {
        table.range::<u128>((Unbounded, cut))?
    } else {
        table.range::<u128>((cut, Unbounded))?
    };
    let record = |entry: Result<
        (redb::AccessGuard<'_, u128>, redb::AccessGuard<'_, &[u8]>),
        redb::StorageError,
    >| {
        entry
            .map(|(id, bytes)| (id.value(), bytes.value().to_vec()))
            .map_err(redb::Error::from)
    };
    Ok(if newest {
        Box::new(range.rev().map(record))
    } else {
        Box::new(range.map(record))
    })
}

/// Two tables' records merged in id order (they hold no id in common).
fn merged<'t>(a: Option<Records<'t>>, b: Option<Records<'t>>, newest: bool) -> Records<'t> {
    let (mut a, mut b) = match (a, b) {
        (Some(a), Some(b)) => (a.peekable(), b.peekable()),
        (Some(one), None) | (None, Some(one)) => return one,
        (None, None) => return Box::new(std::iter::empty()),
    };
    Box::new(std::iter::from_fn(move || {
        let first = match (a.peek(), b.peek()) {
            (Some(Ok((x, _))), Some(Ok((y, _)))) => (x < y) != newest,
            (Some(_), None) | (Some(Err(_)), _) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (None, None) => return None,
        };
        if first { a.next() } else { b.next() }
    }))
}

/// One service's dead jobs, through their index, from after `after`, in the order asked.
fn dead_of<'t>(
    tx: &'t redb::ReadTransaction,
    service: &str,
    after: Option<JobId>,
    newest: bool,
) -> Result<Records<'t>, redb::Error> {
    use std::ops::Bound::{Excluded, Included};
    let index = tx.open_table(DEAD)?;
    let finished = tx.open_table(FINISHED)?;
    let (low, high) = match (after, newest) {
        (Some(a), false) => (Excluded((service, a.0)), Included((service, u128::MAX))),
        (Some(a), true) => (Included((service, 0)), Excluded((service, a.0))),
        (None, _) => (Included((service, 0)), Included((service, u128::MAX))),
    };
    let range = index.range::<(&str, u128)>((low, high))?;
    let ids: Box<dyn Iterator<Item = _>> = if newest {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    Ok(Box::new(ids.map(move |entry| {
        let id = entry?.0.value().1;
        Ok(match finished.get(id)? {
            Some(bytes) => (id, bytes.value().to_vec()),
            // An index entry without its job: no bytes, and still counted in the scan.
            None => (id, Vec::new()),
        })
    })))
}

/// One change for the writer, with where its answer goes once it is committed.
struct Request(Change);

enum Change {
    Enqueue {
        job: Box<NewJob>,
        claim: Option<Claim>,
        now: SystemTime,
        reply: oneshot::Sender<Result<Enqueued, Error>>,
    },
    Claim {
        service: String,
        claim: Claim,
        max: usize,
        now: SystemTime,
        reply: oneshot::Sender<Result<Vec<Job>, Error>>,
    },
    Finish {
        id: JobId,
        outcome: Outcome,
        now: SystemTime,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Retry {
        id: JobId,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Discard {
        id: JobId,
        reply: oneshot::Sender<Result<bool, Error>>,
    },
    Prune {
        completed_before: SystemTime,
        dead_before: SystemTime,
        max: usize,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
    Runs {
        runs: Vec<ServiceRuns>,
        keep: usize,
        before: SystemTime,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    State {
        change: Box<StateChange>,
        now: SystemTime,
        reply: oneshot::Sender<Result<StateWrite, Error>>,
    },
    ClearState {
        service: String,
        max: usize,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
}

/// An answer made in a transaction, sent once the transaction is committed (or the commit's
/// error instead).
enum Answer {
    Enqueue(
        oneshot::Sender<Result<Enqueued, Error>>,
        Result<Enqueued, Error>,
    ),
    Claim(
        oneshot::Sender<Result<Vec<Job>, Error>>,
        Result<Vec<Job>, Error>,
    ),
    Done(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
    Discard(oneshot::Sender<Result<bool, Error>>, Result<bool, Error>),
    Count(oneshot::Sender<Result<usize, Error>>, Result<usize, Error>),
    State(
        oneshot::Sender<Result<StateWrite, Error>>,
        Result<StateWrite, Error>,
    ),
}

impl Answer {
    fn send(self, committed: &Result<(), Error>) {
        fn pick<T>(own: Result<T, Error>, committed: &Result<(), Error>) -> Result<T, Error> {
            match committed {
                Ok(()) => own,
                Err(e) => Err(e.clone()),
            }
        }
        // A caller that stopped waiting does not stop the others.
        match self {
            Answer::Enqueue(tx, own) => drop(tx.send(pick(own, committed))),
            Answer::Claim(tx, own) => drop(tx.send(pick(own, committed))),
            Answer::Done(tx, own) => drop(tx.send(pick(own, committed))),
            Answer::Discard(tx, own) => drop(tx.send(pick(own, committed))),
            Answer::Count(tx, own) => drop(tx.send(pick(own, committed))),
            Answer::State(tx, own) => drop(tx.send(pick(own, committed))),
        }
    }
}

fn store_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Commits one batch of changes in one transaction and answers each.
fn write(db: &Database, path: &str, batch: Vec<Request>) {
    let (answers, committed) = commit(db, path, batch.into_iter());
    if let Err(err) = &committed {
        tracing::error!(store = path, error = %err, changes = answers.len(), "a commit failed");
    }
    for answer in answers {
        answer.send(&committed);
    }
}

fn commit(
    db: &Database,
    path: &str,
    batch: impl Iterator<Item = Request>,
) -> (Vec<Answer>, Result<(), Error>) {
    let mut answers = Vec::new();
    let committed = (|| {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = Tables::open(&tx, path)?;
            for Request(change) in batch {
                answers.push(t.apply(change)?);
            }
        }
        tx.commit()?;
        Ok::<_, redb::Error>(())
    })()
    .map_err(|e| store_error(path, e));
    (answers, committed)
}

/// The tables of one write transaction.
struct Tables<'tx> {
    /// The store's file, for the errors of refused changes.
    path: &'tx str,
    jobs: Table<'tx, u128, &'static [u8]>,
    finished: Table<'tx, u128, &'static [u8]>,
    finished_at: Table<'tx, (u64, u128), ()>,
    dead_at: Table<'tx, (u64, u128), ()>,
    ready: Table<'tx, (&'static str, u32, u128), ()>,
    scheduled: Table<'tx, (u64, u128), ()>,
    keys: Table<'tx, (&'static str, &'static str, &'static str), u128>,
    dead: Table<'tx, (&'static str, u128), ()>,
    runs: Table<'tx, (&'static str, u64), &'static [u8]>,
    state: Table<'tx, (&'static str, &'static str), &'static [u8]>,
    meta: Table<'tx, &'static str, &'static [u8]>,
    schedules: Table<'tx, &'static str, &'static [u8]>,
}

/// The order of the ready queue: the highest priority first.
fn priority_order(priority: i32) -> u32 {
    u32::MAX - ((priority as u32) ^ 0x8000_0000)
}

/// Keeps an attempt's error: the first and the latest [`ERRORS_KEPT`] - 1 of them, so that a
/// job retried many times keeps a record of bounded size.
fn push_error(record: &mut Stored, now: SystemTime, error: String) {
    if record.errors.len() >= ERRORS_KEPT {
        record.errors.remove(1);
    }
    record
        .errors
        .push((record.attempts, ms(now), truncated(error)));
}

fn truncated(mut error: String) -> String {
    if error.len() > ERROR_LIMIT {
        let mut end = ERROR_LIMIT;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction, path: &'tx str) -> Result<Self, redb::Error> {
        Ok(Tables {
            path,
            jobs: tx.open_table(JOBS)?,
            finished: tx.open_table(FINISHED)?,
            finished_at: tx.open_table(FINISHED_AT)?,
            dead_at: tx.open_table(DEAD_AT)?,
            ready: tx.open_table(READY)?,
            scheduled: tx.open_table(SCHEDULED)?,
            keys: tx.open_table(KEYS)?,
            dead: tx.open_table(DEAD)?,
            runs: tx.open_table(RUNS)?,
            state: tx.open_table(STATE)?,
            meta: tx.open_table(META)?,
            schedules: tx.open_table(SCHEDULES)?,
        })
    }

    /// Applies one change. The outer error is the store's and aborts the transaction; the inner
    /// one is the change's own, and nothing of it was written.
    fn apply(&mut self, change: Change) -> Result<Answer, redb::Error> {
        Ok(match change {
            Change::Enqueue {
                job,
                claim,
                now,
                reply,
            } => Answer::Enqueue(reply, self.enqueue(*job, claim, now)?),
            Change::Claim {
                service,
                claim,
                max,
                now,
                reply,
            } => Answer::Claim(reply, self.claim(&service, &claim, max, now)?),
            Change::Finish {
                id,
                outcome,
                now,
                reply,
            } => Answer::Done(reply, self.finish(id, outcome, now)?),
            Change::Retry { id, reply } => Answer::Done(reply, self.retry(id)?),
            Change::Discard { id, reply } => Answer::Discard(reply, self.discard(id)?),
            Change::Prune {
                completed_before,
                dead_before,
                max,
                reply,
            } => Answer::Count(reply, Ok(self.prune(completed_before, dead_before, max)?)),
            Change::Runs {
                runs,
                keep,
                before,
                reply,
            } => {
                for ServiceRuns {
                    service,
                    runs,
                    schedule,
                } in runs
                {
                    runs::append(&mut self.runs, &service, runs, keep, before)?;
                    if let Some(mark) = schedule {
                        runs::save_mark(&mut self.schedules, &service, mark)?;
                    }
                }
                Answer::Done(reply, Ok(()))
            }
            Change::State { change, now, reply } => {
                Answer::State(reply, self.write_state(&change, now)?)
            }
            Change::ClearState {
                service,
                max,
                reply,
            } => Answer::Count(reply, Ok(state::clear(&mut self.state, &service, max)?)),
        })
    }

    /// One change of state, under the next of the file's versions.
    fn write_state(
        &mut self,
        change: &StateChange,
        now: SystemTime,
    ) -> Result<Result<StateWrite, Error>, redb::Error> {
        if let Some(why) = state::refusal(change) {
            return self.refused(why);
        }
        let counted = self
            .meta
            .get(LAST_VERSION)?
            .map(|v| <[u8; 8]>::try_from(v.value()).map(u64::from_le_bytes));
        let mut last = match counted {
            Some(Ok(last)) => last,
            None => 0,
            // Damaged: on from the highest version given, never a number twice.
            Some(Err(_)) => {
                tracing::error!(
                    store = self.path,
                    "the state's version counter is damaged; it goes on from the highest version kept"
                );
                state::highest_version(&self.state)?
            }
        };
        let written = state::write(&mut self.state, &mut last, change, now)?;
        self.meta
            .insert(LAST_VERSION, last.to_le_bytes().as_slice())?;
        Ok(written.map_err(|why| store_error(self.path, why)))
    }

    /// A change that is refused, for a reason of its own: nothing of it was written.
    fn refused<T>(&self, message: impl Into<String>) -> Result<Result<T, Error>, redb::Error> {
        Ok(Err(store_error(self.path, message.into())))
    }

    /// An unfinished job; the inner error if its record cannot be read, which fails what
    /// needs that job and nothing else.
    fn get(&self, id: u128) -> Result<Option<Result<Stored, String>>, redb::Error> {
        Ok(self
            .jobs
            .get(id)?
            .map(|bytes| Stored::decode(bytes.value()).inspect_err(|e| damaged(self.path, id, e))))
    }

    fn put(&mut self, record: &Stored) -> Result<(), redb::Error> {
        let bytes = encoded(record)?;
        self.jobs.insert(record.id, bytes.as_slice())?;
        Ok(())
    }

    fn enqueue(
        &mut self,
        job: NewJob,
        claim: Option<Claim>,
        now: SystemTime,
    ) -> Result<Result<Enqueued, Error>, redb::Error> {
        let id = job.id;
        if let Some(key) = &job.key
            && let Some(existing) =
                self.keys
                    .get((job.service.as_str(), job.action.as_str(), key.as_str()))?
        {
            return Ok(Ok(Enqueued::Existing(JobId(existing.value()))));
        }
        if self.jobs.get(id.0)?.is_some() || self.finished.get(id.0)?.is_some() {
            return Ok(Ok(Enqueued::Existing(id)));
        }
        let run_at = job.run_at.map(ms).filter(|&at| at > ms(now));
        let mut record = Stored::new(job, now);
        match (&claim, run_at) {
            (Some(claim), _) => record.claimed(claim),
            (None, Some(at)) => record.state = StoredState::Scheduled(at),
            (None, None) => {}
        }
        // Encoded once: for the limit, and for the table.
        let bytes = encoded(&record)?;
        if bytes.len() > DECODE_LIMIT {
            return self.refused(format!(
                "a job of {} bytes is more than the limit of {DECODE_LIMIT}",
                bytes.len()
            ));
        }
        match (claim, run_at) {
            (Some(_), _) => {}
            (None, Some(at)) => {
                self.scheduled.insert((at, id.0), ())?;
            }
            (None, None) => {
                let order = priority_order(record.priority);
                self.ready
                    .insert((record.service.as_str(), order, id.0), ())?;
            }
        }
        self.jobs.insert(id.0, bytes.as_slice())?;
        if let Some(key) = &record.key {
            let key = (
                record.service.as_str(),
                record.action.as_str(),
                key.as_str(),
            );
            self.keys.insert(key, id.0)?;
        }
        Ok(Ok(Enqueued::Created(id)))
    }

    fn claim(
        &mut self,
        service: &str,
        claim: &Claim,
        max: usize,
        now: SystemTime,
    ) -> Result<Result<Vec<Job>, Error>, redb::Error> {
        // Every job whose time has come joins the ready queue of its service.
        let due: Vec<(u64, u128)> = self
            .scheduled
            .range((0, 0)..=(ms(now), u128::MAX))?
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in due {
            self.scheduled.remove(key)?;
            if let Some(Ok(mut record)) = self.get(key.1)? {
                record.state = StoredState::Queued;
                self.put(&record)?;
                let order = priority_order(record.priority);
                self.ready
                    .insert((record.service.as_str(), order, key.1), ())?;
            }
        }
        let taken: Vec<(u32, u128)> = self
            .ready
            .range((service, 0, 0)..=(service, u32::MAX, u128::MAX))?
            .take(max)
            .map(|entry| entry.map(|(k, _)| (k.value().1, k.value().2)))
            .collect::<Result<_, _>>()?;
        let mut jobs = Vec::with_capacity(taken.len());
        for (order, id) in taken {
            self.ready.remove((service, order, id))?;
            if let Some(Ok(mut record)) = self.get(id)? {
                record.claimed(claim);
                self.put(&record)?;
                jobs.push(record.job());
            }
        }
        Ok(Ok(jobs))
    }

    fn finish(
        &mut self,
        id: JobId,
        outcome: Outcome,
        now: SystemTime,
    ) -> Result<Result<(), Error>, redb::Error> {
        let mut record = match self.get(id.0)? {
            Some(Ok(record)) => record,
            Some(Err(e)) => return self.refused(format!("job {id} cannot be read: {e}")),
            None => return self.refused(format!("no unfinished job {id}")),
        };
        if record.state != StoredState::Running {
            return self.refused(format!("job {id} is not running"));
        }
        record.claim = None;
        match outcome {
            Outcome::Completed(reply) => {
                record.state = StoredState::Completed;
                record.reply = Some(reply);
                // A reply that would make the record too large to read back kills the job
                // instead: it is kept, readable, with why.
                let size = encoded(&record)?.len();
                if size > DECODE_LIMIT {
                    record.reply = None;
                    let error = format!(
                        "its reply makes a record of {size} bytes, more than the limit of \
                         {DECODE_LIMIT}"
                    );
                    push_error(&mut record, now, error);
                    self.bury(&mut record, now)?;
                } else {
                    self.retire(&mut record, now)?;
                }
            }
            Outcome::Retry { at, error } => {
                push_error(&mut record, now, error);
                record.state = StoredState::Retrying(ms(at));
                self.scheduled.insert((ms(at), id.0), ())?;
                self.put(&record)?;
            }
            Outcome::Dead { error } => {
                push_error(&mut record, now, error);
                self.bury(&mut record, now)?;
            }
            Outcome::Released => {
                record.attempts = record.attempts.saturating_sub(1);
                self.ready_again(&mut record)?;
            }
            Outcome::Postponed { at } => {
                record.attempts = record.attempts.saturating_sub(1);
                record.state = StoredState::Scheduled(ms(at));
                self.scheduled.insert((ms(at), id.0), ())?;
                self.put(&record)?;
            }
        }
        Ok(Ok(()))
    }

    fn retry(&mut self, id: JobId) -> Result<Result<(), Error>, redb::Error> {
        let mut record = match self.finished.get(id.0)? {
            Some(bytes) => match Stored::decode(bytes.value()) {
                Ok(record) => record,
                Err(e) => return self.refused(format!("job {id} cannot be read: {e}")),
            },
            None if self.jobs.get(id.0)?.is_some() => {
                return self.refused(format!("job {id} is not dead: it has not finished"));
            }
            None => return self.refused(format!("no job {id}")),
        };
        if record.state != StoredState::Dead {
            return self.refused(format!("job {id} is not dead: it completed"));
        }
        self.dead.remove((record.service.as_str(), record.id))?;
        self.finished.remove(record.id)?;
        if let Some(at) = record.finished_ms {
            self.dead_at.remove((at, record.id))?;
        }
        record.attempts = 0;
        record.interruptions = 0;
        record.finished_ms = None;
        self.ready_again(&mut record)?;
        Ok(Ok(()))
    }

    fn discard(&mut self, id: JobId) -> Result<Result<bool, Error>, redb::Error> {
        let bytes = match self.jobs.get(id.0)? {
            Some(bytes) => Some(bytes.value().to_vec()),
            None => self.finished.get(id.0)?.map(|b| b.value().to_vec()),
        };
        let Some(bytes) = bytes else {
            return Ok(Ok(false));
        };
        let record = match Stored::decode(&bytes) {
            Ok(record) => record,
            // A record that cannot be read is still removed: that is what an operator asks.
            Err(e) => {
                damaged(self.path, id.0, &e);
                self.jobs.remove(id.0)?;
                self.finished.remove(id.0)?;
                return Ok(Ok(true));
            }
        };
        let service = record.service.as_str();
        match record.state {
            StoredState::Running => return self.refused(format!("job {id} is running")),
            StoredState::Queued => {
                self.ready
                    .remove((service, priority_order(record.priority), record.id))?;
            }
            StoredState::Scheduled(at) | StoredState::Retrying(at) => {
                self.scheduled.remove((at, record.id))?;
            }
            StoredState::Dead => {
                self.dead.remove((service, record.id))?;
            }
            StoredState::Completed => {}
        }
        self.forget(&record)?;
        Ok(Ok(true))
    }

    /// Removes a job that is not running, with its indexes and its key.
    fn forget(&mut self, record: &Stored) -> Result<(), redb::Error> {
        let service = record.service.as_str();
        if let Some(key) = &record.key
            && self
                .keys
                .get((service, record.action.as_str(), key.as_str()))?
                .is_some_and(|owner| owner.value() == record.id)
        {
            self.keys
                .remove((service, record.action.as_str(), key.as_str()))?;
        }
        if let Some(at) = record.finished_ms {
            self.finished_index(record.state).remove((at, record.id))?;
        }
        self.jobs.remove(record.id)?;
        self.finished.remove(record.id)?;
        Ok(())
    }

    /// The time index of finished jobs in `state`: the dead have their own, so that a prune
    /// of completed jobs never reads through dead letters kept longer.
    fn finished_index(&mut self, state: StoredState) -> &mut Table<'tx, (u64, u128), ()> {
        match state {
            StoredState::Dead => &mut self.dead_at,
            _ => &mut self.finished_at,
        }
    }

    /// Removes at most `max` finished jobs past their retention, oldest first: the completed
    /// that finished before `completed_before`, then the dead before `dead_before`. Only what
    /// goes is read.
    fn prune(
        &mut self,
        completed_before: SystemTime,
        dead_before: SystemTime,
        max: usize,
    ) -> Result<usize, redb::Error> {
        let mut pruned = 0;
        for (kind, before) in [
            (StoredState::Completed, completed_before),
            (StoredState::Dead, dead_before),
        ] {
            let due: Vec<(u64, u128)> = self
                .finished_index(kind)
                .range((0, 0)..(ms(before), 0))?
                .take(max - pruned)
                .map(|entry| entry.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for (at, id) in due {
                let record = self.finished.get(id)?.map(|b| Stored::decode(b.value()));
                match record {
                    Some(Ok(record)) => {
                        if record.state == StoredState::Dead {
                            self.dead.remove((record.service.as_str(), record.id))?;
                        }
                        self.forget(&record)?;
                    }
                    // An unreadable record past its retention is let go too.
                    Some(Err(e)) => {
                        damaged(self.path, id, &e);
                        self.finished.remove(id)?;
                    }
                    None => {}
                }
                // Whatever the record said, its entry in this index goes.
                self.finished_index(kind).remove((at, id))?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Puts an unfinished job back in its service's ready queue.
    fn ready_again(&mut self, record: &mut Stored) -> Result<(), redb::Error> {
        record.claim = None;
        record.state = StoredState::Queued;
        let order = priority_order(record.priority);
        self.ready
            .insert((record.service.as_str(), order, record.id), ())?;
        self.put(record)
    }

    /// Moves a finished job out of the unfinished ones.
    fn retire(&mut self, record: &mut Stored, now: SystemTime) -> Result<(), redb::Error> {
        record.finished_ms = Some(ms(now));
        let bytes = encoded(record)?;
        self.jobs.remove(record.id)?;
        self.finished.insert(record.id, bytes.as_slice())?;
        self.finished_index(record.state)
            .insert((ms(now), record.id), ())?;
        Ok(())
    }

    fn bury(&mut self, record: &mut Stored, now: SystemTime) -> Result<(), redb::Error> {
        record.state = StoredState::Dead;
        self.dead.insert((record.service.as_str(), record.id), ())?;
        self.retire(record, now)
    }
}

/// A record's envelope; an encoding failure aborts the transaction.
fn encoded(record: &Stored) -> Result<Vec<u8>, redb::Error> {
    record
        .encode()
        .map_err(|e| redb::Error::Corrupted(format!("job {}: {e}", JobId(record.id))))
}

/// A record that cannot be read is left where it is, and said once where it is met.
fn damaged(path: &str, id: u128, error: &str) {
    tracing::error!(store = path, job = %JobId(id), error, "a job's record cannot be read; it is left as it is");
}

/// At open: checks the file's format (or writes it in a new file) and recovers the jobs that a
/// stopped process had claimed.
fn prepare(db: &Database, path: &str, now: SystemTime) -> Result<(), Error> {
    let fail = |e: redb::Error| store_error(path, e);
    let mut tx = db.begin_write().map_err(|e| fail(e.into()))?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| fail(e.into()))?;
    let tables = tx.list_tables().map_err(|e| fail(e.into()))?.count();
    {
        let mut meta = tx.open_table(META).map_err(|e| fail(e.into()))?;
        let format = meta
            .get("format")
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value().to_vec());
        match format {
            None if tables > 0 => {
                return Err(store_error(
                    path,
                    "the file is a redb database but not a Sora store",
                ));
            }
            None => {
                meta.insert("format", STORE_FORMAT.to_le_bytes().as_slice())
                    .map_err(|e| fail(e.into()))?;
                meta.insert("created_by", env!("CARGO_PKG_VERSION").as_bytes())
                    .map_err(|e| fail(e.into()))?;
            }
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(u32::from_le_bytes);
                if found == Some(1) {
                    migrate_from_1(&tx).map_err(fail)?;
                    meta.insert("format", STORE_FORMAT.to_le_bytes().as_slice())
                        .map_err(|e| fail(e.into()))?;
                    tracing::info!(
                        store = path,
                        "the store's format 1 is read as format 2 from now on"
                    );
                } else if found != Some(STORE_FORMAT) {
                    let by = meta
                        .get("created_by")
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(v.value()).into_owned())
                        .unwrap_or_else(|| "an unknown version".into());
                    let found = found
                        .map_or_else(|| "an unreadable format".into(), |f| format!("format {f}"));
                    return Err(store_error(
                        path,
                        format!(
                            "the store was written by Sora {by} in {found}, and this build \
                             (Sora {}) reads format {STORE_FORMAT}",
                            env!("CARGO_PKG_VERSION")
                        ),
                    ));
                }
            }
        }
    }
    {
        let mut t = Tables::open(&tx, path).map_err(fail)?;
        recover(&mut t, now).map_err(fail)?;
    }
    tx.commit().map_err(|e| fail(e.into()))
}

/// Format 1 kept dead jobs in the time index of completed ones; format 2 gives them their own.
fn migrate_from_1(tx: &WriteTransaction) -> Result<(), redb::Error> {
    let mut finished_at = tx.open_table(FINISHED_AT)?;
    let mut dead_at = tx.open_table(DEAD_AT)?;
    let finished = tx.open_table(FINISHED)?;
    let mut dead = Vec::new();
    for entry in finished_at.iter()? {
        let (key, _) = entry?;
        let (at, id) = key.value();
        if let Some(bytes) = finished.get(id)?
            && Stored::decode(bytes.value()).is_ok_and(|r| r.state == StoredState::Dead)
        {
            dead.push((at, id));
        }
    }
    for key in dead {
        finished_at.remove(key)?;
        dead_at.insert(key, ())?;
    }
    Ok(())
}

/// Every job claimed by a process that has stopped is ready again, its attempt given back and
/// one interruption counted; at [`MAX_INTERRUPTIONS`] it is dead.
fn recover(t: &mut Tables<'_>, now: SystemTime) -> Result<(), redb::Error> {
    let mut claimed = Vec::new();
    for entry in t.jobs.iter()? {
        let (id, bytes) = entry?;
        match Stored::decode(bytes.value()) {
            Ok(record) if record.state == StoredState::Running => claimed.push(record),
            Ok(_) => {}
            Err(e) => damaged(t.path, id.value(), &e),
        }
    }
    for mut record in claimed {
        record.claim = None;
        record.attempts = record.attempts.saturating_sub(1);
        record.interruptions += 1;
        if record.interruptions >= MAX_INTERRUPTIONS {
            let error = format!(
                "its process stopped while it was claimed, {} times",
                record.interruptions
            );
            record.errors.push((record.attempts + 1, ms(now), error));
            t.bury(&mut record, now)?;
        } else {
            t.ready_again(&mut record)?;
        }
    }
    Ok(())
}
