//! Event fan-out: Sora's event bus against `tokio::sync::broadcast` and ractor's `OutputPort`
//! (with `output-port-v2`, the implementation that loses nothing), in the same run.
//!
//! ```sh
//! cargo bench --bench events
//! ```
//!
//! Each iteration emits one event and stops the clock when every subscriber it is for has run
//! its handler (a counter; the last one to finish wakes the bench). Subscribers are closures
//! for Sora, actors for `OutputPort`, tasks for `broadcast`. The payload is a `Copy` integer,
//! so the baselines' clone per subscriber costs nothing.
//!
//! - `fanout/N`: every one of N subscribers takes the event (N = 1, 100, 10,000).
//! - `filtered/10000`: 99% of 10,000 subscribers reject it with a filter (Sora: a filter on the
//!   bus; `OutputPort`: a converter that returns `None`; `broadcast`: the receiving task looks
//!   and drops it, as it has no way to filter before waking).

// `criterion_group!` defines a public function without docs.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sora::Runtime;

#[path = "support/fanout.rs"]
mod fanout;
use fanout::{Done, Emit, Source, Tick, port_subscribers, sora_subscribers, takes, taking};

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Times `iters` emits: `emit` sends one event, then the bench waits for every subscriber that
/// takes it.
fn timed<F, Fut>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    done: &Arc<Done>,
    subscribers: usize,
    emit: F,
) -> Duration
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = done.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..iters {
                done.arm(subscribers);
                emit(i).await;
                done.notify.notified().await;
            }
            start.elapsed()
        })
        .await
        .expect("bench task")
    })
}

fn bench(c: &mut Criterion, group: &str, n: usize, filtered: bool) {
    let rt = tokio_runtime();
    let taking = taking(n, filtered);
    let mut group = c.benchmark_group(format!("{group}/{n}"));
    group.throughput(Throughput::Elements(taking as u64));
    if n >= 10_000 {
        group.sample_size(20);
    }

    // tokio::sync::broadcast: one task per receiver.
    {
        let done = Arc::new(Done::default());
        let (tx, _) = tokio::sync::broadcast::channel::<Tick>(16);
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (mut rx, done, takes) = (tx.subscribe(), done.clone(), takes(i, filtered));
                rt.spawn(async move {
                    while let Ok(tick) = rx.recv().await {
                        if takes {
                            std::hint::black_box(tick);
                            done.arrive();
                        }
                    }
                })
            })
            .collect();
        group.bench_function("tokio_broadcast", |b| {
            b.iter_custom(|iters| {
                let tx = tx.clone();
                timed(&rt, iters, &done, taking, move |i| {
                    tx.send(Tick(i)).expect("receivers");
                    async {}
                })
            })
        });
        drop(tx);
        rt.block_on(futures::future::join_all(tasks));
    }

    // ractor's OutputPort (v2): one actor per subscriber.
    {
        let done = Arc::new(Done::default());
        // The v2 port spawns its fan-out task: it is made inside the runtime.
        let (port, actors) = rt.block_on(port_subscribers(n, filtered, &done));
        group.bench_function("ractor_output_port", |b| {
            b.iter_custom(|iters| {
                let port = port.clone();
                timed(&rt, iters, &done, taking, move |i| {
                    port.send(Tick(i));
                    async {}
                })
            })
        });
        for actor in actors {
            actor.stop(None);
        }
    }

    // Sora: closures subscribed through the fluent chain; the event is emitted by an action.
    {
        let done = Arc::new(Done::default());
        let runtime = rt
            .block_on(Runtime::builder().service(Source::default).start())
            .expect("start");
        let source = runtime.service::<Source>().expect("service");
        let subscriptions = rt.block_on(sora_subscribers(&source, n, filtered, &done));
        group.bench_function("sora", |b| {
            b.iter_custom(|iters| {
                let source = source.clone();
                timed(&rt, iters, &done, taking, move |i| {
                    let source = source.clone();
                    async move { source.act(Emit(i)).await.expect("emit") }
                })
            })
        });
        let dropped: u64 = subscriptions
            .iter()
            .flat_map(|s| s.stats())
            .map(|s| s.dropped)
            .sum();
        assert_eq!(dropped, 0, "a benchmark that drops events measures nothing");
        drop(subscriptions);
        rt.block_on(runtime.shutdown()).expect("shutdown");
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    for n in [1, 100, 10_000] {
        bench(c, "fanout", n, false);
    }
}

fn filtered(c: &mut Criterion) {
    bench(c, "filtered", 10_000, true);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = fanout, filtered
}
criterion_main!(benches);
