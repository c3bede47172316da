//! Durable jobs end to end, beside their two baselines, in one process and one run.
//!
//! ```sh
//! cargo bench --bench durable                 # 1, 16 and 256 callers, 5 repetitions
//! cargo bench --bench durable -- 256          # only 256 callers
//! SORA_REPS=3 SORA_JOBS=20000 cargo bench --bench durable
//! ```
//!
//! Each caller awaits one call at a time, as many callers at once as the scenario says:
//!
//! - **durable**: `act` of a durable action on a runtime with a redb store on disk: the job is
//!   committed (fsync'd) before it runs, run by the service's host, and its outcome committed;
//!   the reply comes back when the handler returns.
//! - **commit**: the floor of a store that commits each job on its own: one redb write
//!   transaction with one record, committed durably, per job, on the blocking pool.
//! - **memory**: `act` of an in-memory action of the same service: nothing is written.
//!
//! Within a repetition the three run in a rotating order; each prints its jobs per second and
//! its median round trip, and the table at the end gives the median over the repetitions and
//! each ratio computed inside a repetition (its median, and the range). The runtime is tokio's
//! multi-thread runtime with 2 workers, the benchmark body a task of its own. Every store is a
//! new file in the temporary directory (on this machine, ext4 on a virtio disk).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition};
use sora::store::RedbStore;
use sora::{Action, BoxError, Context, Definition, Handler, Retry, Runtime, Service};

#[derive(serde::Serialize, serde::Deserialize)]
struct Work(u64);

impl Action for Work {
    const NAME: &'static str = "work";
    type Reply = u64;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Quick(u64);

impl Action for Quick {
    const NAME: &'static str = "quick";
    type Reply = u64;
}

struct Worker;

impl Service for Worker {
    fn define(def: &mut Definition<Self>) {
        def.concurrency(64)
            .durable::<Work>(Retry::default())
            .action::<Quick>();
    }
}

impl Handler<Work> for Worker {
    async fn handle(&self, work: Work, _: &Context) -> Result<u64, BoxError> {
        Ok(work.0 + 1)
    }
}

impl Handler<Quick> for Worker {
    async fn handle(&self, work: Quick, _: &Context) -> Result<u64, BoxError> {
        Ok(work.0 + 1)
    }
}

const TABLE: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("jobs");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Durable,
    Commit,
    Memory,
}

/// One scenario's run: jobs per second and the median round trip.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rate: f64,
    p50: Duration,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |n| n.parse().expect("a number"))
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sora-bench-{name}-{}-{}.redb",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// Runs `callers` callers of `per_caller` calls each; `call` makes one call.
async fn drive<F, Fut>(callers: usize, per_caller: usize, call: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_caller);
                for i in 0..per_caller {
                    let t = Instant::now();
                    call((c * per_caller + i) as u64).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(callers * per_caller);
    for task in tasks {
        latencies.extend(task.await.expect("a caller"));
    }
    let elapsed = t0.elapsed();
    latencies.sort_unstable();
    Measured {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
    }
}

async fn run(scenario: Scenario, callers: usize, jobs: usize) -> Measured {
    let per_caller = (jobs / callers).max(1);
    match scenario {
        Scenario::Durable | Scenario::Memory => {
            let path = temp_file("durable");
            let runtime = Runtime::builder()
                .store(RedbStore::open(&path).expect("a store"))
                .service(|| Worker)
                .start()
                .await
                .expect("a runtime");
            let worker = runtime.service::<Worker>().expect("the worker");
            let measured = if scenario == Scenario::Durable {
                drive(callers, per_caller, move |i| {
                    let worker = worker.clone();
                    async move {
                        assert_eq!(worker.act(Work(i)).await.expect("a reply"), i + 1);
                    }
                })
                .await
            } else {
                drive(callers, per_caller, move |i| {
                    let worker = worker.clone();
                    async move {
                        assert_eq!(worker.act(Quick(i)).await.expect("a reply"), i + 1);
                    }
                })
                .await
            };
            runtime.shutdown().await.expect("a clean stop");
            std::fs::remove_file(&path).ok();
            measured
        }
        Scenario::Commit => {
            let path = temp_file("commit");
            let db = Arc::new(Database::create(&path).expect("a database"));
            let record = vec![7u8; 96];
            let measured = drive(callers, per_caller, move |i| {
                let (db, record) = (db.clone(), record.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        let mut tx = db.begin_write().expect("a transaction");
                        tx.set_durability(Durability::Immediate).expect("durable");
                        {
                            let mut table = tx.open_table(TABLE).expect("the table");
                            table
                                .insert(u128::from(i), record.as_slice())
                                .expect("an insert");
                        }
                        tx.commit().expect("a commit");
                    })
                    .await
                    .expect("the commit's thread");
                }
            })
            .await;
            std::fs::remove_file(&path).ok();
            measured
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let callers: Vec<usize> = {
        let given: Vec<usize> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .map(|a| a.parse().expect("a number of callers"))
            .collect();
        if given.is_empty() {
            vec![1, 16, 256]
        } else {
            given
        }
    };
    let reps = env_number("SORA_REPS", 5);
    let jobs = env_number("SORA_JOBS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let scenarios = [Scenario::Durable, Scenario::Commit, Scenario::Memory];
    println!("callers scenario   jobs/s     p50");
    for &n in &callers {
        // One caller waits for every commit in turn: fewer jobs keep the run short.
        let jobs = if n == 1 { jobs / 10 } else { jobs };
        let mut results: Vec<[Measured; 3]> = Vec::new();
        for rep in 0..reps {
            let mut row = [Measured {
                rate: 0.0,
                p50: Duration::ZERO,
            }; 3];
            for k in 0..scenarios.len() {
                let at = (rep + k) % scenarios.len();
                let scenario = scenarios[at];
                let measured = rt.block_on(async move {
                    tokio::spawn(run(scenario, n, jobs)).await.expect("the run")
                });
                println!(
                    "{n:>7} {:<9} {:>8.0} {:>8.3} ms",
                    format!("{scenario:?}").to_lowercase(),
                    measured.rate,
                    measured.p50.as_secs_f64() * 1e3
                );
                row[at] = measured;
            }
            results.push(row);
        }
        let rate = |k: usize| median(results.iter().map(|r| r[k].rate).collect());
        let ratio = |f: &dyn Fn(&[Measured; 3]) -> f64| {
            let mut all: Vec<f64> = results.iter().map(f).collect();
            all.sort_by(f64::total_cmp);
            (all[all.len() / 2], all[0], all[all.len() - 1])
        };
        let (vs_commit, lo_c, hi_c) = ratio(&|r| r[0].rate / r[1].rate);
        let (vs_memory, lo_m, hi_m) = ratio(&|r| r[0].rate / r[2].rate);
        let (rt_ratio, lo_r, hi_r) = ratio(&|r| r[0].p50.as_secs_f64() / r[1].p50.as_secs_f64());
        println!(
            "== {n} callers: durable {:.0}/s, one commit per job {:.0}/s, in-memory {:.0}/s; \
             durable/commit {vs_commit:.2} ({lo_c:.2}-{hi_c:.2}), durable/in-memory \
             {vs_memory:.4} ({lo_m:.4}-{hi_m:.4}), round trip durable/commit p50 {rt_ratio:.2} \
             ({lo_r:.2}-{hi_r:.2})",
            rate(0),
            rate(1),
            rate(2)
        );
    }
}
