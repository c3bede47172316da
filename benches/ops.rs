//! A fixed number of operations of one kind, for counting instructions per operation: a figure
//! that does not move with the load of a shared machine, as throughput does.
//!
//! ```sh
//! cargo bench --bench ops --no-run
//! BIN=$(ls -t target/release/deps/ops-* | grep -v '\.d$' | head -1)
//! for op in cast tell call act; do perf stat -e instructions "$BIN" $op; done
//! ```
//!
//! Each run performs 3,000,000 operations on a one-thread tokio runtime and prints the time per
//! operation; divide perf's instruction count by 3,000,000. `cast` and `tell` go in bursts of
//! 1,000 closed by one awaited call, as in `benches/runtime.rs`. `ref` is an action sent to the
//! service's `ActorRef` with ractor's own `call`: Sora's host behind ractor's caller path.
//!
//! `SORA_OPS=N` changes the number of operations: 200,000 keep a run under callgrind, which counts
//! every instruction of every function exactly, to about a minute. `SORA_THREADS=2` runs on a
//! tokio runtime of two worker threads.
//!
//! ```sh
//! SORA_OPS=200000 valgrind --tool=callgrind --callgrind-out-file=act.out "$BIN" act
//! callgrind_annotate --inclusive=no act.out | head -40
//! ```
//!
//! Event fan-out, as in `benches/events.rs`: `fanout-sora N` and `fanout-port N` emit one event
//! at a time to N subscribers (Sora closures, or actors behind ractor's `OutputPort`) and wait
//! until every one has run; `filtered-sora N` and `filtered-port N` do the same with all but one
//! subscriber in a hundred turning the event away. Each run makes 3,000,000 deliveries (emits ×
//! subscribers that take them): divide by 3,000,000 for the instructions per delivery.
//!
//! ```sh
//! for n in 100 10000; do for op in fanout-sora fanout-port; do
//!     perf stat -e instructions "$BIN" $op $n; done; done
//! ```

use ractor::Actor;
use sora::{CallOptions, Command, Runtime, ServiceMessage};

#[path = "support/noop.rs"]
mod noop;
use noop::{NoopActor, NoopMsg, NoopService, Ping};

#[path = "support/fanout.rs"]
mod fanout;
use fanout::{Done, Emit, Source, Tick, port_subscribers, sora_subscribers, taking};

/// Operations per run, unless `SORA_OPS` says otherwise.
const DEFAULT_OPS: u32 = 3_000_000;
const BURST: u32 = 1_000;

/// A number from the environment variable `name`, or `default` when it is not set.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).map_or(default, |n| {
        n.parse()
            .unwrap_or_else(|_| panic!("{name}: a number, not {n:?}"))
    })
}

fn main() {
    // `cargo bench` passes `--bench`; the operation is the first other argument, the number of
    // subscribers of a fan-out the second.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let op = args.next().unwrap_or_else(|| "tell".to_owned());
    let subscribers: usize = args.next().map_or(100, |n| n.parse().expect("a number"));
    let ops = env_number("SORA_OPS", DEFAULT_OPS);
    // `SORA_THREADS=2` runs the operations on a runtime of two worker threads instead.
    let mut builder = match env_number("SORA_THREADS", 1_usize) {
        threads if threads > 1 => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = builder.enable_all().build().expect("a tokio runtime");
    if let Some((kind, target)) = op.split_once('-') {
        let filtered = match kind {
            "fanout" => false,
            "filtered" => true,
            other => panic!("unknown fan-out {other}: fanout or filtered"),
        };
        return rt.block_on(fan_out(target.to_owned(), subscribers, filtered, ops));
    }
    rt.block_on(async move {
        tokio::spawn(async move {
            let sora = Runtime::builder()
                .service(NoopService::default)
                .start()
                .await?;
            let service = sora.service::<NoopService>()?;
            let (actor, _) = Actor::spawn(None, NoopActor, ()).await?;
            let host = service.actor_ref().ok_or("the service runs")?;
            let started = std::time::Instant::now();
            for i in 0..ops {
                let closes_burst = i % BURST == BURST - 1;
                match op.as_str() {
                    "cast" => {
                        actor.cast(NoopMsg::Cast)?;
                        if closes_burst {
                            ractor::call!(actor, NoopMsg::Ping)?;
                        }
                    }
                    "tell" => {
                        service.tell(Command::CheckQueue)?;
                        if closes_burst {
                            service.act(Ping).await?;
                        }
                    }
                    "call" => ractor::call!(actor, NoopMsg::Ping)?,
                    "act" => service.act(Ping).await?,
                    // The service's host, called through its `ActorRef` with ractor's `call`:
                    // Sora's host behind ractor's own caller path.
                    "ref" => ractor::call!(host, |port| ServiceMessage::action(
                        Ping,
                        CallOptions::default(),
                        port
                    ))??,
                    other => {
                        return Err(format!(
                            "unknown operation {other}: cast, tell, call, act or ref"
                        )
                        .into());
                    }
                }
            }
            println!("{op}: {:?} per operation", started.elapsed() / ops);
            actor.stop(None);
            sora.shutdown().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await
        .expect("the benchmark task")
    })
    .expect("the benchmark");
}

/// Emits one event at a time to `n` subscribers until 3,000,000 deliveries have been made.
async fn fan_out(target: String, n: usize, filtered: bool, ops: u32) {
    tokio::spawn(async move {
        let done = std::sync::Arc::new(Done::default());
        let taking = taking(n, filtered);
        let emits = ops as usize / taking;
        let started;
        match target.as_str() {
            "sora" => {
                let sora = Runtime::builder()
                    .service(Source::default)
                    .start()
                    .await
                    .expect("start");
                let source = sora.service::<Source>().expect("service");
                let subscriptions = sora_subscribers(&source, n, filtered, &done).await;
                started = std::time::Instant::now();
                for i in 0..emits {
                    done.arm(taking);
                    source.act(Emit(i as u64)).await.expect("emit");
                    done.notify.notified().await;
                }
                let dropped: u64 = subscriptions
                    .iter()
                    .flat_map(|s| s.stats())
                    .map(|s| s.dropped)
                    .sum();
                assert_eq!(dropped, 0, "every event reaches every subscriber");
                drop(subscriptions);
                sora.shutdown().await.expect("shutdown");
            }
            "port" => {
                let (port, actors) = port_subscribers(n, filtered, &done).await;
                started = std::time::Instant::now();
                for i in 0..emits {
                    done.arm(taking);
                    port.send(Tick(i as u64));
                    done.notify.notified().await;
                }
                for actor in actors {
                    actor.stop(None);
                }
            }
            other => panic!("unknown target {other}: sora or port"),
        }
        let deliveries = (emits * taking) as u32;
        println!(
            "{target} to {n}{}: {:?} per delivery, {emits} emits",
            if filtered { " (99% filtered)" } else { "" },
            started.elapsed() / deliveries
        );
    })
    .await
    .expect("the fan-out task");
}
