//! The store's access pattern on three embedded stores: each job is enqueued, leased and
//! completed, each step durable (fsync'd) before it is answered.
//!
//! ```sh
//! cargo run --release -p sora-store-choice -- STORE MODE CALLERS JOBS
//! ```
//!
//! - STORE: `redb`, `fjall` or `sqlite`.
//! - MODE: `raw` (one commit per job, of its enqueue alone: the baseline), `each` (every step
//!   of a job is its own transaction, committed on a blocking thread by the caller that asked,
//!   callers contending for the store's write lock) or `group` (callers hand their steps to one
//!   committer thread, which applies all that are waiting in one transaction), or `lean`
//!   (grouped as `group`, but a job is taken by the process that stores it: its record is
//!   written when it is accepted and rewritten with its outcome, two steps and no index).
//! - CALLERS: how many tokio tasks enqueue, lease and complete at once (1 to 256), on a runtime
//!   of two worker threads.
//! - JOBS: how many jobs in all.
//!
//! Prints one line: store, mode, callers, jobs per second, the median and 99th percentile of
//! one job's steps, and the commits made. See docs/design/store.md for what it showed.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A job's stored record: its state and its parameters, as a durable job's would be.
const PAYLOAD: usize = 96;

/// One step of a job's life.
#[derive(Clone, Copy)]
enum Step {
    Enqueue(u64),
    /// Claims the first ready job, until the given time (ms).
    Lease(u64),
    Complete(u64),
    /// Stores a job taken at once by the process that stores it: its record alone, no index.
    Accept(u64),
    /// Records a job's outcome by rewriting its record.
    Finish(u64),
}

/// What a step answers: the job leased, if any.
type Answer = Option<u64>;

/// A store, as the job queue uses it.
trait Store: Send + Sync + 'static {
    /// Applies `steps` in one durable transaction, answering each.
    fn apply(&self, steps: &[Step]) -> Vec<Answer>;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn record(state: u8, id: u64) -> Vec<u8> {
    let mut r = vec![0u8; PAYLOAD];
    r[0] = state;
    r[1..9].copy_from_slice(&id.to_be_bytes());
    r
}

mod redb_store {
    use super::*;
    use redb::{Database, Durability, TableDefinition};

    const JOBS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("jobs");
    const READY: TableDefinition<'_, (u64, u64), ()> = TableDefinition::new("ready");
    const LEASES: TableDefinition<'_, u64, u64> = TableDefinition::new("leases");

    pub(crate) struct Redb(Database);

    impl Redb {
        pub(crate) fn open(dir: &Path) -> Self {
            let db = Database::create(dir.join("jobs.redb")).expect("redb");
            let tx = db.begin_write().expect("tx");
            tx.open_table(JOBS).expect("jobs");
            tx.open_table(READY).expect("ready");
            tx.open_table(LEASES).expect("leases");
            tx.commit().expect("commit");
            Redb(db)
        }
    }

    impl Store for Redb {
        fn apply(&self, steps: &[Step]) -> Vec<Answer> {
            let mut tx = self.0.begin_write().expect("tx");
            tx.set_durability(Durability::Immediate)
                .expect("durability");
            let mut answers = Vec::with_capacity(steps.len());
            {
                let mut jobs = tx.open_table(JOBS).expect("jobs");
                let mut ready = tx.open_table(READY).expect("ready");
                let mut leases = tx.open_table(LEASES).expect("leases");
                for step in steps {
                    answers.push(match *step {
                        Step::Enqueue(id) => {
                            jobs.insert(id, record(0, id).as_slice()).expect("insert");
                            ready.insert((now_ms(), id), ()).expect("ready");
                            None
                        }
                        Step::Lease(until) => {
                            let first = ready.pop_first().expect("pop").map(|(k, _)| k.value().1);
                            if let Some(id) = first {
                                leases.insert(id, until).expect("lease");
                                jobs.insert(id, record(1, id).as_slice()).expect("running");
                            }
                            first
                        }
                        Step::Complete(id) => {
                            leases.remove(id).expect("unlease");
                            jobs.insert(id, record(2, id).as_slice()).expect("done");
                            None
                        }
                        Step::Accept(id) => {
                            jobs.insert(id, record(1, id).as_slice()).expect("insert");
                            None
                        }
                        Step::Finish(id) => {
                            jobs.insert(id, record(2, id).as_slice()).expect("done");
                            None
                        }
                    });
                }
            }
            tx.commit().expect("commit");
            answers
        }
    }
}

mod fjall_store {
    use super::*;
    use fjall::{
        KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase,
        SingleWriterTxKeyspace,
    };

    pub(crate) struct Fjall {
        db: SingleWriterTxDatabase,
        jobs: SingleWriterTxKeyspace,
        ready: SingleWriterTxKeyspace,
        leases: SingleWriterTxKeyspace,
    }

    impl Fjall {
        pub(crate) fn open(dir: &Path) -> Self {
            let db = SingleWriterTxDatabase::builder(dir.join("jobs.fjall"))
                .open()
                .expect("fjall");
            let jobs = db
                .keyspace("jobs", KeyspaceCreateOptions::default)
                .expect("jobs");
            let ready = db
                .keyspace("ready", KeyspaceCreateOptions::default)
                .expect("ready");
            let leases = db
                .keyspace("leases", KeyspaceCreateOptions::default)
                .expect("leases");
            Fjall {
                db,
                jobs,
                ready,
                leases,
            }
        }
    }

    impl Store for Fjall {
        fn apply(&self, steps: &[Step]) -> Vec<Answer> {
            let mut tx = self.db.write_tx().durability(Some(PersistMode::SyncAll));
            let mut answers = Vec::with_capacity(steps.len());
            for step in steps {
                answers.push(match *step {
                    Step::Enqueue(id) => {
                        tx.insert(&self.jobs, id.to_be_bytes(), record(0, id));
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&now_ms().to_be_bytes());
                        key[8..].copy_from_slice(&id.to_be_bytes());
                        tx.insert(&self.ready, key, []);
                        None
                    }
                    Step::Lease(until) => {
                        let first = tx.first_key_value(&self.ready).map(|g| {
                            let (k, _) = g.into_inner().expect("read");
                            k
                        });
                        first.map(|key| {
                            tx.remove(&self.ready, key.clone());
                            let id = u64::from_be_bytes(key[8..16].try_into().expect("16 bytes"));
                            tx.insert(&self.leases, id.to_be_bytes(), until.to_be_bytes());
                            tx.insert(&self.jobs, id.to_be_bytes(), record(1, id));
                            id
                        })
                    }
                    Step::Complete(id) => {
                        tx.remove(&self.leases, id.to_be_bytes());
                        tx.insert(&self.jobs, id.to_be_bytes(), record(2, id));
                        None
                    }
                    Step::Accept(id) => {
                        tx.insert(&self.jobs, id.to_be_bytes(), record(1, id));
                        None
                    }
                    Step::Finish(id) => {
                        tx.insert(&self.jobs, id.to_be_bytes(), record(2, id));
                        None
                    }
                });
            }
            tx.commit().expect("commit");
            answers
        }
    }
}

mod sqlite_store {
    use super::*;
    use rusqlite::{Connection, params};

    /// One connection per thread that writes, as SQLite wants.
    pub(crate) struct Sqlite {
        path: std::path::PathBuf,
        pool: Mutex<Vec<Connection>>,
    }

    impl Sqlite {
        pub(crate) fn open(dir: &Path) -> Self {
            let path = dir.join("jobs.sqlite");
            let c = Self::connect(&path);
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS jobs (
                     id INTEGER PRIMARY KEY, state INTEGER NOT NULL, due INTEGER NOT NULL,
                     lease_until INTEGER, record BLOB NOT NULL);
                 CREATE INDEX IF NOT EXISTS ready ON jobs (due, id) WHERE state = 0;",
            )
            .expect("schema");
            Sqlite {
                path,
                pool: Mutex::new(vec![c]),
            }
        }

        fn connect(path: &Path) -> Connection {
            let c = Connection::open(path).expect("sqlite");
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 60000;",
            )
            .expect("pragmas");
            c
        }
    }

    impl Store for Sqlite {
        fn apply(&self, steps: &[Step]) -> Vec<Answer> {
            let c = self.pool.lock().expect("pool").pop();
            let mut c = c.unwrap_or_else(|| Self::connect(&self.path));
            let mut answers = Vec::with_capacity(steps.len());
            {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .expect("begin");
                for step in steps {
                    answers.push(match *step {
                        Step::Enqueue(id) => {
                            tx.prepare_cached(
                                "INSERT INTO jobs (id, state, due, record) VALUES (?1, 0, ?2, ?3)",
                            )
                            .expect("prepare")
                            .execute(params![id as i64, now_ms() as i64, record(0, id)])
                            .expect("insert");
                            None
                        }
                        Step::Lease(until) => tx
                            .prepare_cached(
                                "UPDATE jobs SET state = 1, lease_until = ?1, record = ?2
                                 WHERE id = (SELECT id FROM jobs WHERE state = 0
                                             ORDER BY due, id LIMIT 1)
                                 RETURNING id",
                            )
                            .expect("prepare")
                            .query_row(params![until as i64, record(1, 0)], |r| r.get::<_, i64>(0))
                            .ok()
                            .map(|id| id as u64),
                        Step::Complete(id) => {
                            tx.prepare_cached(
                                "UPDATE jobs SET state = 2, lease_until = NULL, record = ?2
                                 WHERE id = ?1",
                            )
                            .expect("prepare")
                            .execute(params![id as i64, record(2, id)])
                            .expect("complete");
                            None
                        }
                        Step::Accept(id) => {
                            tx.prepare_cached(
                                "INSERT INTO jobs (id, state, due, record) VALUES (?1, 1, ?2, ?3)",
                            )
                            .expect("prepare")
                            .execute(params![id as i64, now_ms() as i64, record(1, id)])
                            .expect("insert");
                            None
                        }
                        Step::Finish(id) => {
                            tx.prepare_cached(
                                "UPDATE jobs SET state = 2, record = ?2 WHERE id = ?1",
                            )
                            .expect("prepare")
                            .execute(params![id as i64, record(2, id)])
                            .expect("finish");
                            None
                        }
                    });
                }
                tx.commit().expect("commit");
            }
            self.pool.lock().expect("pool").push(c);
            answers
        }
    }
}

/// Hands steps to one thread that commits all that are waiting in one transaction.
struct Group {
    tx: tokio::sync::mpsc::UnboundedSender<(Step, tokio::sync::oneshot::Sender<Answer>)>,
}

impl Group {
    fn new(store: Arc<dyn Store>, commits: Arc<AtomicU64>) -> Self {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(Step, tokio::sync::oneshot::Sender<Answer>)>();
        std::thread::spawn(move || {
            let mut batch = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let steps: Vec<Step> = batch.iter().map(|(s, _)| *s).collect();
                let answers = store.apply(&steps);
                commits.fetch_add(1, Ordering::Relaxed);
                for ((_, reply), answer) in batch.drain(..).zip(answers) {
                    let _ = reply.send(answer);
                }
            }
        });
        Group { tx }
    }

    async fn apply(&self, step: Step) -> Answer {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.send((step, reply)).expect("committer");
        answer.await.expect("answer")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: STORE(redb|fjall|sqlite) MODE(raw|each|group|lean) CALLERS JOBS";
    let (store, mode) = (args.get(1).expect(usage), args.get(2).expect(usage));
    let callers: usize = args.get(3).expect(usage).parse().expect(usage);
    let jobs: u64 = args.get(4).expect(usage).parse().expect(usage);
    let dir = std::env::temp_dir().join(format!("store-choice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db: Arc<dyn Store> = match store.as_str() {
        "redb" => Arc::new(redb_store::Redb::open(&dir)),
        "fjall" => Arc::new(fjall_store::Fjall::open(&dir)),
        "sqlite" => Arc::new(sqlite_store::Sqlite::open(&dir)),
        _ => panic!("{usage}"),
    };
    assert!(
        ["raw", "each", "group", "lean"].contains(&mode.as_str()),
        "{usage}"
    );
    let commits = Arc::new(AtomicU64::new(0));
    let lean = mode == "lean";
    let group =
        (mode == "group" || lean).then(|| Arc::new(Group::new(db.clone(), commits.clone())));
    let raw = mode == "raw";
    let per = jobs / callers as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (elapsed, mut latencies) = rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..callers as u64)
            .map(|w| {
                let (db, group, commits) = (db.clone(), group.clone(), commits.clone());
                tokio::spawn(async move {
                    // A step committed by the task that asks, off the runtime's workers.
                    let each = |step: Step| {
                        let (db, commits) = (db.clone(), commits.clone());
                        async move {
                            let a = tokio::task::spawn_blocking(move || db.apply(&[step])[0])
                                .await
                                .expect("blocking");
                            commits.fetch_add(1, Ordering::Relaxed);
                            a
                        }
                    };
                    let mut latencies = Vec::with_capacity(per as usize);
                    for i in 0..per {
                        let t = Instant::now();
                        let id = w * per + i + 1;
                        let apply = |step| {
                            let group = group.clone();
                            let each = &each;
                            async move {
                                match &group {
                                    Some(g) => g.apply(step).await,
                                    None => each(step).await,
                                }
                            }
                        };
                        if lean {
                            apply(Step::Accept(id)).await;
                            apply(Step::Finish(id)).await;
                        } else {
                            apply(Step::Enqueue(id)).await;
                            if !raw {
                                // Leases whichever job is first: another writer's, perhaps.
                                if let Some(id) = apply(Step::Lease(now_ms() + 30_000)).await {
                                    apply(Step::Complete(id)).await;
                                }
                            }
                        }
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("writer"));
        }
        (t.elapsed(), all)
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let done = per * callers as u64;
    println!(
        "{store} {mode} callers={callers} jobs={done} jobs/s={:.0} p50={:?} p99={:?} commits={}",
        done as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        commits.load(Ordering::Relaxed),
    );
    drop(group);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
