//! A periodic service's schedule across a downtime: with a store, where the schedule stood is
//! saved with the run history, and the next process applies the missed-tick policy to the
//! ticks that fell while nothing ran. On virtual time: the last process's mark is written
//! into the file as it would have left it, some minutes before this process starts.

use std::time::{Duration, SystemTime};

#[path = "support/common.rs"]
mod support;
#[path = "support/temp_store.rs"]
mod temp_store;

use sora::store::{RedbStore, ScheduleMark, ServiceRuns, Store};
use sora::{BoxError, Context, Definition, MissedTick, Runtime, Schedule, Service};
use support::Journal;
use temp_store::TempStore;
use tokio::time::Instant;

const PERIOD: Duration = Duration::from_secs(600);
const MIN: u64 = 60;

/// Periodic services that differ only in their missed-tick policy; each run journals the
/// virtual second it started at, to the nearest five.
macro_rules! ticker {
    ($name:ident, $text:literal, $policy:expr) => {
        struct $name {
            journal: Journal,
            epoch: Instant,
        }

        impl Service for $name {
            fn define(def: &mut Definition<Self>) {
                def.name($text)
                    .periodic(Schedule::every(PERIOD).missed_ticks($policy));
            }

            async fn tick(&self, _: &Context) -> Result<(), BoxError> {
                // To the nearest 5 seconds: the mark was written some real milliseconds
                // (two fsyncs, on a loaded machine) before the runtime read the wall clock.
                let at = (self.epoch.elapsed().as_secs_f64() / 5.0).round() * 5.0;
                self.journal.push(format!("run@{at}"));
                Ok(())
            }
        }
    };
}

ticker!(Skipper, "skipper", MissedTick::Skip);
ticker!(Catcher, "catcher", MissedTick::RunOnce);
ticker!(Delayer, "delayer", MissedTick::Delay);

/// Writes into `file` the mark a process that stopped `ago` after its last tick would leave:
/// last tick, run started and ended at `ago` (the end a second later).
async fn left_by_the_last_process(file: &TempStore, service: &str, ago: Duration) {
    std::fs::create_dir_all(file.0.parent().unwrap()).unwrap();
    let store = RedbStore::open(&file.0).unwrap();
    let tick = SystemTime::now() - ago;
    let mark = ScheduleMark::new(Some(tick), Some(tick), Some(tick + Duration::from_secs(1)));
    store
        .record_runs(
            vec![ServiceRuns::new(service, Vec::new()).schedule(mark)],
            100,
            SystemTime::UNIX_EPOCH,
        )
        .await
        .unwrap();
}

async fn start<S: Service>(
    file: &TempStore,
    make: impl Fn(Journal, Instant) -> S + Send + Sync + 'static,
) -> (Runtime, Journal) {
    let journal = Journal::default();
    let (theirs, epoch) = (journal.clone(), Instant::now());
    let runtime = Runtime::builder()
        .store_path(&file.0)
        .service(move || make(theirs.clone(), epoch))
        .start()
        .await
        .unwrap();
    (runtime, journal)
}

/// Lets virtual time run to `secs` after the start.
async fn until(epoch: Instant, secs: u64) {
    tokio::time::sleep_until(epoch + Duration::from_secs(secs)).await;
    // The runs due then have started and journaled.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_that_fell_in_the_downtime_are_skipped_and_the_phase_is_kept() {
    let file = TempStore::new("downtime-skip");
    // The last tick was 35 minutes ago: those due 25, 15 and 5 minutes ago fell in the
    // downtime, and the next is due in 5.
    left_by_the_last_process(&file, "skipper", Duration::from_secs(35 * MIN)).await;
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Skipper { journal, epoch }).await;
    until(epoch, 4 * MIN).await;
    assert!(
        journal.entries().is_empty(),
        "none is run for the missed ones"
    );
    let status = runtime
        .service::<Skipper>()
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.skipped, 3, "the missed ticks are counted as skipped");
    until(epoch, 26 * MIN).await;
    assert_eq!(journal.entries(), ["run@300", "run@900", "run@1500"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ticks_that_fell_in_the_downtime_are_run_once_at_start() {
    let file = TempStore::new("downtime-once");
    left_by_the_last_process(&file, "catcher", Duration::from_secs(35 * MIN)).await;
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Catcher { journal, epoch }).await;
    until(epoch, 16 * MIN).await;
    assert_eq!(
        journal.entries(),
        ["run@0", "run@300", "run@900"],
        "once at start for the three missed, then the old phase"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_a_missed_tick_nothing_runs_early() {
    let file = TempStore::new("downtime-short");
    // Down for 4 minutes: the next tick, 6 minutes from now, is still ahead.
    left_by_the_last_process(&file, "catcher", Duration::from_secs(4 * MIN)).await;
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Catcher { journal, epoch }).await;
    until(epoch, 5 * MIN).await;
    assert!(journal.entries().is_empty());
    until(epoch, 7 * MIN).await;
    assert_eq!(journal.entries(), ["run@360"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_counts_from_the_last_run_s_end() {
    let file = TempStore::new("downtime-delay");
    // The last run ended 3 minutes ago (and a second): the next is due in 7, less that second.
    left_by_the_last_process(&file, "delayer", Duration::from_secs(3 * MIN + 2)).await;
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Delayer { journal, epoch }).await;
    until(epoch, 6 * MIN).await;
    assert!(journal.entries().is_empty());
    until(epoch, 8 * MIN).await;
    assert_eq!(journal.entries(), ["run@420"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_process_saves_where_its_schedule_stood_for_the_next() {
    let file = TempStore::new("downtime-saved");
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Catcher { journal, epoch }).await;
    until(epoch, 21 * MIN).await;
    assert_eq!(journal.entries(), ["run@600", "run@1200"]);
    let wall = SystemTime::now();
    runtime.shutdown().await.unwrap();

    let store = RedbStore::open(&file.0).unwrap();
    let mark = store
        .schedule("catcher")
        .unwrap()
        .expect("saved at the stop");
    let (tick, ran, ended) = (
        mark.tick.unwrap(),
        mark.started.unwrap(),
        mark.ended.unwrap(),
    );
    // By the runtime's clock, which moved with virtual time: the second tick, 20 minutes in.
    let in_run = tick.duration_since(wall).unwrap_or_default();
    assert!(
        in_run >= Duration::from_secs(20 * MIN - 5),
        "the tick of 20 minutes in: {in_run:?}"
    );
    assert!(ran >= tick && ended >= ran, "{mark:?}");
    assert!(
        store
            .runs("catcher", 10, SystemTime::UNIX_EPOCH)
            .unwrap()
            .len()
            == 2
    );
    drop(store);

    // The next process's clock reads the wall clock afresh, behind the virtual time that wrote
    // the mark: a mark from the future misses nothing, and nothing runs before a period.
    let epoch = Instant::now();
    let (runtime, journal) = start(&file, |journal, epoch| Catcher { journal, epoch }).await;
    until(epoch, 5 * MIN).await;
    assert!(journal.entries().is_empty(), "{:?}", journal.entries());
    runtime.shutdown().await.unwrap();
}
