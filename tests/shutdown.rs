//! Shutdown: reverse start order, in-flight work finishing within the timeout, queued work
//! refused, and calls after shutdown.

#[path = "support/common.rs"]
mod support;

use std::time::Duration;

use sora::{BoxError, Context, Definition, Error, Runtime, Service};
use support::*;

struct Named<const N: u8> {
    journal: Journal,
}

fn named<const N: u8>(journal: &Journal) -> impl Fn() -> Named<N> + Send + Sync + 'static {
    let journal = journal.clone();
    move || Named {
        journal: journal.clone(),
    }
}

impl<const N: u8> Service for Named<N> {
    fn define(def: &mut Definition<Self>) {
        def.name(format!("named-{N}"));
    }

    async fn stop(&self, _ctx: &Context) {
        self.journal.push(format!("stop:{N}"));
    }
}

#[tokio::test(start_paused = true)]
async fn services_stop_in_reverse_start_order() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(named::<1>(&journal))
        .service(named::<2>(&journal))
        .service(named::<3>(&journal))
        .start()
        .await
        .unwrap();
    runtime.shutdown().await.unwrap();
    assert_eq!(journal.entries(), ["stop:3", "stop:2", "stop:1"]);
    // A second call waits for the same outcome.
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn in_flight_work_finishes_and_queued_work_is_refused() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .shutdown_timeout(Duration::from_secs(30))
        .service(translator(&journal, None))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let started = tokio::time::Instant::now();
    let in_flight = tokio::spawn(t.act(Sleep(5_000)).into_future());
    eventually(|| async { t.status().await.unwrap().in_flight == 1 }).await;
    let queued = tokio::spawn(t.act(Sleep(1)).into_future());
    eventually(|| async { t.status().await.unwrap().queue_depth == 1 }).await;

    runtime.shutdown().await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "waited for the in-flight call"
    );
    within(in_flight).await.unwrap().unwrap();
    assert!(matches!(
        within(queued).await.unwrap(),
        Err(Error::ShuttingDown)
    ));
    assert_eq!(journal.count("sleep-done"), 1);
    assert!(matches!(t.act(Sleep(1)).await, Err(Error::ShuttingDown)));
    assert_eq!(t.status().await.unwrap().state, sora::ServiceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn work_past_the_shutdown_timeout_is_cancelled() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .shutdown_timeout(Duration::from_secs(2))
        .service(translator(&journal, None))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let in_flight = tokio::spawn(t.act(Sleep(600_000)).into_future());
    until(|| async { t.status().await.unwrap().in_flight > 0 }).await;
    let started = tokio::time::Instant::now();
    runtime.shutdown().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(matches!(
        within(in_flight).await.unwrap(),
        Err(Error::ShuttingDown)
    ));
    assert_eq!(journal.count("sleep-dropped"), 1);
    assert_eq!(journal.count("sleep-done"), 0);
}

/// Long-running work that notices the stop and finishes cleanly.
struct Poller {
    journal: Journal,
}

impl Service for Poller {
    async fn run(&self, ctx: &Context) -> Result<(), BoxError> {
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => self.journal.push("poll"),
            }
        }
        self.journal.push("run-returned");
        Ok(())
    }

    async fn stop(&self, _ctx: &Context) {
        self.journal.push("stop");
    }
}

#[tokio::test(start_paused = true)]
async fn background_work_is_cancelled_before_the_stop_hook() {
    let journal = Journal::default();
    let j = journal.clone();
    let runtime = Runtime::builder()
        .service(move || Poller { journal: j.clone() })
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    runtime.shutdown().await.unwrap();
    assert_eq!(
        journal.entries(),
        ["poll", "poll", "poll", "run-returned", "stop"]
    );
}
