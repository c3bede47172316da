//! Sora against raw ractor, each figure beside its baseline in the same run.
//!
//! ```sh
//! cargo bench --bench runtime
//! ```
//!
//! - `action_round_trip`: a typed action through the fluent API, against a raw `ractor` call to
//!   a no-op actor.
//! - `command`: fire-and-forget commands, against raw `ractor` casts. Both send bursts of 1,000
//!   followed by one round trip, so every message has been handled when the clock stops and the
//!   mailbox never holds more than a burst (an unbounded burst measures memory, not messaging).
//! - `startup`: starting 10,000 services, against spawning 10,000 plain `ractor` actors.
//!
//! Memory per idle service is measured by `benches/memory.rs`.

// `criterion_group!` defines a public function without docs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ractor::{Actor, ActorRef};
use sora::{Command, Runtime};

#[path = "support/noop.rs"]
mod noop;
use noop::{NoopActor, NoopMsg, NoopService, Ping};

/// The two runtime flavors every throughput figure is taken on: one thread gives the CPU cost
/// of a message; two worker threads (this machine's cores) add cross-thread wake-ups.
const FLAVORS: [&str; 2] = ["current_thread", "multi_thread"];

fn tokio_runtime(flavor: &str) -> tokio::runtime::Runtime {
    let mut builder = if flavor == "current_thread" {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    builder.enable_all().build().expect("tokio runtime")
}

/// The two targets of a comparison, on `rt`: a raw no-op actor and a runtime with a no-op service.
fn targets(
    rt: &tokio::runtime::Runtime,
) -> (ActorRef<NoopMsg>, Runtime, sora::ServiceHandle<NoopService>) {
    let (actor, _) = rt
        .block_on(Actor::spawn(None, NoopActor, ()))
        .expect("spawn");
    let sora = rt
        .block_on(Runtime::builder().service(NoopService::default).start())
        .expect("start");
    let service = sora.service::<NoopService>().expect("service");
    (actor, sora, service)
}

/// Times `iters` runs of `op`, in a loop on a task of the runtime (as callers in a service
/// would be), not on the thread that blocks on it.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                op().await;
            }
            start.elapsed()
        })
        .await
        .expect("bench task")
    })
}

fn action_round_trip(c: &mut Criterion) {
    for flavor in FLAVORS {
        action_round_trip_on(c, flavor);
    }
}

fn action_round_trip_on(c: &mut Criterion, flavor: &str) {
    let rt = tokio_runtime(flavor);
    let (actor, sora, service) = targets(&rt);

    let mut group = c.benchmark_group(format!("action_round_trip/{flavor}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("ractor_call", |b| {
        b.iter_custom(|iters| {
            let actor = actor.clone();
            timed(&rt, iters, move || {
                let actor = actor.clone();
                async move {
                    actor.call(NoopMsg::Ping, None).await.expect("call");
                }
            })
        })
    });
    group.bench_function("sora_act", |b| {
        b.iter_custom(|iters| {
            let service = service.clone();
            timed(&rt, iters, move || {
                let service = service.clone();
                async move { service.act(Ping).await.expect("act") }
            })
        })
    });
    group.finish();
    rt.block_on(sora.shutdown()).expect("shutdown");
    actor.stop(None);
}

/// Fire-and-forget messages sent between two round trips.
const BURST: u64 = 1_000;

fn command(c: &mut Criterion) {
    for flavor in FLAVORS {
        command_on(c, flavor);
    }
}

fn command_on(c: &mut Criterion, flavor: &str) {
    let rt = tokio_runtime(flavor);
    let (actor, sora, service) = targets(&rt);

    let mut group = c.benchmark_group(format!("command/{flavor}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("ractor_cast", |b| {
        b.iter_custom(|iters| {
            let actor = actor.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 1..=iters {
                        actor.cast(NoopMsg::Cast).expect("cast");
                        if i % BURST == 0 {
                            actor.call(NoopMsg::Ping, None).await.expect("barrier");
                        }
                    }
                    actor.call(NoopMsg::Ping, None).await.expect("barrier");
                    start.elapsed()
                })
                .await
                .expect("bench task")
            })
        })
    });
    group.bench_function("sora_tell", |b| {
        b.iter_custom(|iters| {
            let service = service.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 1..=iters {
                        service.tell(Command::CheckQueue).expect("tell");
                        if i % BURST == 0 {
                            service.act(Ping).await.expect("barrier");
                        }
                    }
                    service.act(Ping).await.expect("barrier");
                    start.elapsed()
                })
                .await
                .expect("bench task")
            })
        })
    });
    group.finish();
    rt.block_on(sora.shutdown()).expect("shutdown");
    actor.stop(None);
}

const SERVICES: usize = 10_000;

fn startup(c: &mut Criterion) {
    let rt = tokio_runtime("multi_thread");
    let mut group = c.benchmark_group("startup_10k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERVICES as u64));
    group.bench_function("ractor_spawn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    let start = Instant::now();
                    let mut actors = Vec::with_capacity(SERVICES);
                    for _ in 0..SERVICES {
                        actors.push(Actor::spawn(None, NoopActor, ()).await.expect("spawn").0);
                    }
                    total += start.elapsed();
                    for a in actors {
                        a.stop(None);
                    }
                });
            }
            total
        })
    });
    group.bench_function("sora_start", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    let mut builder = Runtime::builder();
                    for i in 0..SERVICES {
                        builder = builder.service_with(NoopService::default, move |def| {
                            def.name(format!("noop-{i}"));
                        });
                    }
                    let start = Instant::now();
                    let runtime = builder.start().await.expect("start");
                    total += start.elapsed();
                    runtime.shutdown().await.expect("shutdown");
                });
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, action_round_trip, command, startup);
criterion_main!(benches);
