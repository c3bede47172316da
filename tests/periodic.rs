//! Periodic and pokable services: schedules, no overlapping runs, missed ticks, trigger-now
//! coalescing, and commands. All on virtual time.

#[path = "support/common.rs"]
mod support;

use std::future::IntoFuture;
use std::time::Duration;

use sora::{
    BoxError, Command, Context, Definition, Error, MissedTick, Runtime, Schedule, Service,
    ServiceKind, ServiceState,
};
use support::*;
use tokio::time::Instant;

/// Records the virtual second at which each run starts; each run takes `run_for`.
#[derive(Clone)]
struct Cleanup {
    journal: Journal,
    epoch: Instant,
    run_for: Duration,
}

impl Cleanup {
    fn new(journal: &Journal, run_for: Duration) -> impl Fn() -> Cleanup + Send + Sync + 'static {
        let journal = journal.clone();
        let epoch = Instant::now();
        move || Cleanup {
            journal: journal.clone(),
            epoch,
            run_for,
        }
    }
}

impl Service for Cleanup {
    fn define(def: &mut Definition<Self>) {
        def.periodic(Schedule::every(Duration::from_secs(10)))
            .command(Command::PROCESS_BATCH)
            .command(Command::CHECK_QUEUE)
            .command("compact");
    }

    async fn tick(&self, _ctx: &Context) -> Result<(), BoxError> {
        let at = self.epoch.elapsed().as_secs();
        self.journal.push(format!("run@{at}"));
        tokio::time::sleep(self.run_for).await;
        Ok(())
    }

    async fn command(&self, command: Command, _ctx: &Context) -> Result<(), BoxError> {
        match command {
            Command::ProcessBatch { size, filter } => self
                .journal
                .push(format!("batch:{size:?}:{}", filter.unwrap_or_default())),
            Command::CheckQueue => self.journal.push("check-queue"),
            Command::Custom { name, args } => self
                .journal
                .push(format!("{name}:{}", args.unwrap_or_default())),
            other => self.journal.push(format!("other:{}", other.name())),
        }
        Ok(())
    }
}

fn runs(journal: &Journal) -> Vec<String> {
    journal
        .entries()
        .into_iter()
        .filter(|e| e.starts_with("run@"))
        .collect()
}

async fn start_with(
    journal: &Journal,
    run_for: Duration,
    schedule: Schedule,
) -> (Runtime, sora::ServiceHandle<Cleanup>) {
    let runtime = Runtime::builder()
        .service_with(Cleanup::new(journal, run_for), move |def| {
            def.periodic(schedule);
        })
        .start()
        .await
        .unwrap();
    let handle = runtime.service::<Cleanup>().unwrap();
    (runtime, handle)
}

#[tokio::test(start_paused = true)]
async fn runs_every_period() {
    let journal = Journal::default();
    let (runtime, cleanup) = start_with(
        &journal,
        Duration::ZERO,
        Schedule::every(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        cleanup.status().await.unwrap().next_run_in,
        Some(Duration::from_secs(10))
    );
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(runs(&journal), ["run@10", "run@20", "run@30"]);
    let status = cleanup.status().await.unwrap();
    assert_eq!(status.runs, 3);
    assert_eq!(status.next_run_in, Some(Duration::from_secs(5)));
    assert!(status.last_run.unwrap().error.is_none());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn initial_delay_and_run_on_start() {
    let journal = Journal::default();
    let schedule = Schedule::every(Duration::from_secs(10))
        .initial_delay(Duration::from_secs(5))
        .run_on_start();
    let (runtime, _cleanup) = start_with(&journal, Duration::ZERO, schedule).await;
    tokio::time::sleep(Duration::from_secs(26)).await;
    assert_eq!(runs(&journal), ["run@0", "run@5", "run@15", "run@25"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn runs_never_overlap_and_skipped_ticks_are_counted() {
    let journal = Journal::default();
    let (runtime, cleanup) = start_with(
        &journal,
        Duration::from_secs(25),
        Schedule::every(Duration::from_secs(10)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(41)).await;
    // The run at 10 s lasts until 35 s: the ticks at 20 s and 30 s are skipped.
    assert_eq!(runs(&journal), ["run@10", "run@40"]);
    let status = cleanup.status().await.unwrap();
    assert_eq!(status.skipped, 2);
    assert_eq!(status.runs, 1);
    assert_eq!(status.state, ServiceState::Busy);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_can_run_once_after_a_long_run() {
    let journal = Journal::default();
    let schedule = Schedule::every(Duration::from_secs(10)).missed_ticks(MissedTick::RunOnce);
    let (runtime, cleanup) = start_with(&journal, Duration::from_secs(25), schedule).await;
    tokio::time::sleep(Duration::from_secs(36)).await;
    assert_eq!(runs(&journal), ["run@10", "run@35"]);
    assert_eq!(cleanup.status().await.unwrap().skipped, 2);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_can_delay_the_schedule() {
    let journal = Journal::default();
    let schedule = Schedule::every(Duration::from_secs(10)).missed_ticks(MissedTick::Delay);
    let (runtime, cleanup) = start_with(&journal, Duration::from_secs(5), schedule).await;
    tokio::time::sleep(Duration::from_secs(41)).await;
    assert_eq!(runs(&journal), ["run@10", "run@25", "run@40"]);
    assert_eq!(cleanup.status().await.unwrap().skipped, 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn trigger_runs_an_idle_service_at_once() {
    let journal = Journal::default();
    let (runtime, cleanup) = start_with(
        &journal,
        Duration::ZERO,
        Schedule::every(Duration::from_secs(3600)),
    )
    .await;
    within(cleanup.trigger().into_future()).await.unwrap();
    assert_eq!(runs(&journal), ["run@0"]);
    assert_eq!(cleanup.status().await.unwrap().runs, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn triggers_on_a_busy_service_coalesce_into_one_follow_up_run() {
    let journal = Journal::default();
    let (runtime, cleanup) = start_with(
        &journal,
        Duration::from_secs(20),
        Schedule::every(Duration::from_secs(3600)),
    )
    .await;
    let first = tokio::spawn(cleanup.trigger().into_future());
    until(|| async { !runs(&journal).is_empty() }).await;
    let followers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(cleanup.trigger().into_future()))
        .collect();
    first.await.unwrap().unwrap();
    for f in followers {
        f.await.unwrap().unwrap();
    }
    assert_eq!(runs(&journal), ["run@0", "run@20"]);
    assert_eq!(cleanup.status().await.unwrap().runs, 2);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn commands_reach_the_service_and_unknown_ones_are_refused() {
    let journal = Journal::default();
    let (runtime, cleanup) = start_with(
        &journal,
        Duration::ZERO,
        Schedule::every(Duration::from_secs(3600)),
    )
    .await;
    cleanup
        .process_batch(Some(50), Some("high-priority".into()))
        .await
        .unwrap();
    cleanup.check_queue().await.unwrap();
    cleanup
        .command(Command::custom_with(
            "compact",
            &serde_json::json!({"level": 3}),
        ))
        .await
        .unwrap();
    let err = cleanup
        .command(Command::custom("explode"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownCommand { command, .. } if command == "explode"),
        "{err}"
    );
    // Fire and forget: delivered without waiting.
    cleanup.tell(Command::CheckQueue).unwrap();
    until(|| async { journal.count("check-queue") >= 2 }).await;
    assert_eq!(
        journal.entries(),
        [
            "batch:Some(50):high-priority",
            "check-queue",
            "compact:{\"level\":3}",
            "check-queue"
        ]
    );
    let info = cleanup.info().await.unwrap();
    assert_eq!(info.kinds, [ServiceKind::Periodic, ServiceKind::Pokable]);
    assert_eq!(
        info.commands,
        ["trigger", "process-batch", "check-queue", "compact"]
    );
    runtime.shutdown().await.unwrap();
}

#[derive(Default)]
struct Plain;
impl Service for Plain {}

#[tokio::test(start_paused = true)]
async fn a_service_without_a_schedule_refuses_trigger() {
    let runtime = Runtime::builder()
        .service(Plain::default)
        .start()
        .await
        .unwrap();
    let err = runtime
        .service::<Plain>()
        .unwrap()
        .trigger()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownCommand { .. }), "{err}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_paused_schedule_skips_its_ticks_until_resumed() {
    for missed in [MissedTick::Skip, MissedTick::Delay] {
        let journal = Journal::default();
        let schedule = Schedule::every(Duration::from_secs(10)).missed_ticks(missed);
        let (runtime, cleanup) = start_with(&journal, Duration::ZERO, schedule).await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(runs(&journal), ["run@10"], "{missed:?}");

        cleanup.pause().unwrap();
        assert!(cleanup.status().await.unwrap().paused);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            runs(&journal),
            ["run@10"],
            "{missed:?}: no run while paused"
        );
        let status = cleanup.status().await.unwrap();
        assert_eq!(status.skipped, 3, "{missed:?}: ticks at 20, 30, 40 skipped");

        // A trigger is an operator's explicit request: it runs even while paused.
        cleanup.trigger().await.unwrap();
        assert_eq!(runs(&journal), ["run@10", "run@45"], "{missed:?}");

        cleanup.resume().unwrap();
        assert!(!cleanup.status().await.unwrap().paused);
        // Skip: the fixed-rate tick at 50; Delay: one period after the triggered run, at 55.
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(
            runs(&journal).len(),
            3,
            "{missed:?}: the schedule runs again"
        );
        runtime.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn only_a_periodic_service_can_be_paused() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, None))
        .start()
        .await
        .unwrap();
    let translator = runtime.service::<Translator>().unwrap();
    assert!(matches!(
        translator.pause(),
        Err(Error::UnknownCommand { command, .. }) if command == "pause"
    ));
    runtime.shutdown().await.unwrap();
}
