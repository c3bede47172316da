//! Run history: each service keeps its last periodic runs, commands, durable attempts and
//! failed in-memory actions, newest first, bounded by `[history]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[path = "support/temp_store.rs"]
mod temp_store;

use sora::config::Config;
use sora::status::{Run, RunKind, RunOutcome};
use sora::store::RedbStore;
use temp_store::TempStore;

use sora::{
    Action, Backoff, BoxError, Command, Context, Definition, Error, Handler, Retry, Runtime,
    Schedule, Service,
};

/// Looks a name up; fails for `nobody`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Lookup(String);

impl Action for Lookup {
    const NAME: &'static str = "lookup";
    type Reply = String;
}

/// Waits longer than any caller does.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stall;

impl Action for Stall {
    const NAME: &'static str = "stall";
    type Reply = ();
}

/// A durable charge that fails while `failing` is above zero.
#[derive(serde::Serialize, serde::Deserialize)]
struct Charge(u32);

impl Action for Charge {
    const NAME: &'static str = "charge";
    type Reply = u32;
}

#[derive(Default)]
struct Probe {
    /// Ticks still to fail.
    failing_ticks: AtomicU32,
    /// Attempts of `charge` still to fail.
    failing_charges: AtomicU32,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

struct Ledger {
    probe: Arc<Probe>,
}

impl Service for Ledger {
    fn define(def: &mut Definition<Self>) {
        let retry = Retry::attempts(3).backoff(Backoff {
            initial: Duration::from_secs(5),
            factor: 1.0,
            jitter: 0.0,
            ..Retry::default().backoff
        });
        def.command("reconcile")
            .action::<Lookup>()
            .action::<Stall>()
            .durable::<Charge>(retry);
    }

    async fn command(&self, command: Command, _ctx: &Context) -> Result<(), BoxError> {
        match command {
            Command::Custom {
                args: Some(args), ..
            } if args.contains("fail") => Err("the books do not balance".into()),
            _ => Ok(()),
        }
    }
}

/// Closes the books once an hour.
struct Close {
    probe: Arc<Probe>,
}

impl Service for Close {
    fn define(def: &mut Definition<Self>) {
        def.periodic(Schedule::every(Duration::from_secs(3600)));
    }

    async fn tick(&self, _ctx: &Context) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if take(&self.probe.failing_ticks) {
            return Err("the ledger is locked".into());
        }
        Ok(())
    }
}

impl Handler<Lookup> for Ledger {
    async fn handle(&self, lookup: Lookup, _: &Context) -> Result<String, BoxError> {
        if lookup.0 == "nobody" {
            return Err(format!("no account for {}", lookup.0).into());
        }
        Ok(lookup.0)
    }
}

impl Handler<Stall> for Ledger {
    async fn handle(&self, _: Stall, _: &Context) -> Result<(), BoxError> {
        std::future::pending().await
    }
}

impl Handler<Charge> for Ledger {
    async fn handle(&self, charge: Charge, _: &Context) -> Result<u32, BoxError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if take(&self.probe.failing_charges) {
            return Err("the card was declined".into());
        }
        Ok(charge.0)
    }
}

/// A runtime with the ledger, on an in-memory store.
async fn start(probe: &Arc<Probe>, builder: sora::RuntimeBuilder) -> Runtime {
    start_on(probe, builder, RedbStore::in_memory().unwrap()).await
}

async fn start_on(probe: &Arc<Probe>, builder: sora::RuntimeBuilder, store: RedbStore) -> Runtime {
    let probe = probe.clone();
    builder
        .store(store)
        .service(move || Ledger {
            probe: probe.clone(),
        })
        .start()
        .await
        .unwrap()
}

/// A runtime with the closing service alone: no durable action, so no store whose writer
/// thread would leave the paused clock idle and let the hourly ticks fire on their own.
async fn start_close(probe: &Arc<Probe>, builder: sora::RuntimeBuilder) -> Runtime {
    let probe = probe.clone();
    builder
        .service(move || Close {
            probe: probe.clone(),
        })
        .start()
        .await
        .unwrap()
}

/// The runs once there are `n` of them: a run is kept as its call settles, which a caller that
/// gave up at the same instant may read before.
async fn at_least(n: usize, runs: impl Fn() -> Vec<Run>) -> Vec<Run> {
    for _ in 0..1000 {
        let seen = runs();
        if seen.len() >= n {
            return seen;
        }
        tokio::task::yield_now().await;
    }
    panic!("fewer than {n} runs: {:?}", names(&runs()));
}

fn names(runs: &[Run]) -> Vec<(RunKind, &str, RunOutcome)> {
    runs.iter()
        .map(|r| (r.kind, r.name.as_str(), r.outcome))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn periodic_runs_are_kept_with_their_outcome_error_and_duration() {
    let probe = Arc::new(Probe::default());
    probe.failing_ticks.store(1, Ordering::SeqCst);
    let runtime = start_close(&probe, Runtime::builder()).await;
    let close = runtime.service::<Close>().unwrap();
    assert!(close.runs().unwrap().is_empty(), "nothing has run yet");

    let failed = close.trigger().await;
    assert!(failed.is_err(), "the first run fails: {failed:?}");
    close.trigger().await.unwrap();

    let runs = close.runs().unwrap();
    assert_eq!(
        names(&runs),
        [
            (RunKind::Tick, "tick", RunOutcome::Ok),
            (RunKind::Tick, "tick", RunOutcome::Failed),
        ],
        "newest first"
    );
    assert_eq!(runs[1].error.as_deref(), Some("the ledger is locked"));
    assert_eq!(runs[0].error, None);
    assert_eq!(runs[0].duration, Some(Duration::from_millis(250)));
    assert!(runs[0].started_at >= runs[1].started_at);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn commands_are_kept_with_their_correlation_id() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe, Runtime::builder()).await;
    let ledger = runtime.service::<Ledger>().unwrap();

    let reconcile = |args: &str| Command::Custom {
        name: "reconcile".into(),
        args: Some(args.into()),
    };
    ledger
        .command(reconcile("{}"))
        .correlation_id("close-2026-11")
        .await
        .unwrap();
    let err = ledger.command(reconcile("fail")).await.unwrap_err();
    assert!(matches!(err, Error::ActionFailed { .. }), "{err:?}");

    // A plain `tell` is counted; only the one that fails is kept.
    ledger.tell(reconcile("{}")).unwrap();
    ledger.tell(reconcile("fail quietly")).unwrap();
    let mut told = Vec::new();
    for _ in 0..1000 {
        if ledger.status().await.unwrap().calls == 4 {
            told = ledger.runs().unwrap();
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        told.len(),
        3,
        "the failed tell joins the two awaited: {told:?}"
    );
    assert_eq!(told[0].error.as_deref(), Some("the books do not balance"));
    assert_eq!(told[0].duration, None, "a tell is not timed");

    let runs = &told[1..];
    assert_eq!(
        names(runs),
        [
            (RunKind::Command, "reconcile", RunOutcome::Failed),
            (RunKind::Command, "reconcile", RunOutcome::Ok),
        ]
    );
    assert_eq!(runs[0].error.as_deref(), Some("the books do not balance"));
    assert_eq!(runs[1].correlation_id.as_deref(), Some("close-2026-11"));
    assert!(
        runs.iter().all(|r| r.duration.is_some()),
        "commands are timed"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn in_memory_actions_are_kept_only_when_they_fail_or_time_out() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe, Runtime::builder()).await;
    let ledger = runtime.service::<Ledger>().unwrap();

    assert_eq!(ledger.act(Lookup("ada".into())).await.unwrap(), "ada");
    ledger
        .act(Lookup("nobody".into()))
        .correlation_id("req-9")
        .await
        .unwrap_err();
    let err = ledger
        .act(Stall)
        .timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    // The caller gives up on its own clock; the host cancels the handler on its own, at the
    // same instant, and keeps the run as it does.
    let runs = at_least(2, || ledger.runs().unwrap()).await;
    assert_eq!(
        names(&runs),
        [
            (RunKind::Action, "stall", RunOutcome::TimedOut),
            (RunKind::Action, "lookup", RunOutcome::Failed),
        ],
        "the call that succeeded is counted, not kept"
    );
    assert_eq!(runs[1].error.as_deref(), Some("no account for nobody"));
    assert_eq!(runs[1].correlation_id.as_deref(), Some("req-9"));
    assert!(runs[0].error.as_deref().unwrap().contains("timed out"));
    assert_eq!(
        ledger.status().await.unwrap().calls,
        3,
        "all three are counted"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn each_attempt_of_a_durable_job_is_kept_with_its_job_and_attempt() {
    let probe = Arc::new(Probe::default());
    probe.failing_charges.store(2, Ordering::SeqCst);
    let runtime = start(&probe, Runtime::builder()).await;
    let ledger = runtime.service::<Ledger>().unwrap();

    let ticket = ledger
        .enqueue(Charge(42))
        .correlation_id("order-7")
        .await
        .unwrap();
    assert_eq!(
        ticket.result().await.unwrap(),
        42,
        "the third attempt succeeds"
    );

    let runs = ledger.runs().unwrap();
    assert_eq!(
        names(&runs),
        [
            (RunKind::Job, "charge", RunOutcome::Ok),
            (RunKind::Job, "charge", RunOutcome::Failed),
            (RunKind::Job, "charge", RunOutcome::Failed),
        ]
    );
    let id = ticket.id().to_string();
    for (run, attempt) in runs.iter().zip([3, 2, 1]) {
        assert_eq!(run.job.as_deref(), Some(id.as_str()));
        assert_eq!(run.attempt, Some(attempt));
        assert_eq!(run.correlation_id.as_deref(), Some("order-7"));
        assert_eq!(run.duration, Some(Duration::from_millis(10)));
    }
    assert_eq!(runs[1].error.as_deref(), Some("the card was declined"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_history_keeps_as_many_runs_as_configured() {
    let probe = Arc::new(Probe::default());
    let runtime = start_close(
        &probe,
        Runtime::builder().run_history(2, Duration::from_secs(60)),
    )
    .await;
    let close = runtime.service::<Close>().unwrap();
    for _ in 0..5 {
        close.trigger().await.unwrap();
    }
    assert_eq!(close.runs().unwrap().len(), 2);
    assert_eq!(
        close.status().await.unwrap().runs,
        5,
        "the count keeps counting"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_configuration_file_sets_the_history_and_refuses_what_it_does_not_know() {
    let probe = Arc::new(Probe::default());
    let config = Config::toml("[history]\nruns = 1\nkeep = \"1h\"\n");
    let runtime = start(&probe, Runtime::builder().config(config.clone())).await;
    let ledger = runtime.service::<Ledger>().unwrap();
    ledger.act(Lookup("nobody".into())).await.unwrap_err();
    ledger.act(Lookup("ada".into())).await.unwrap();
    ledger.act(Lookup("nobody".into())).await.unwrap_err();
    assert_eq!(
        names(&ledger.runs().unwrap()),
        [(RunKind::Action, "lookup", RunOutcome::Failed)],
        "`runs = 1` keeps the last"
    );
    runtime.shutdown().await.unwrap();

    let runtime = start_close(&probe, Runtime::builder().config(config)).await;
    let close = runtime.service::<Close>().unwrap();
    close.trigger().await.unwrap();
    close.trigger().await.unwrap();
    assert_eq!(close.runs().unwrap().len(), 1);
    runtime.shutdown().await.unwrap();

    let none = Config::toml("[history]\nruns = 0\n");
    let runtime = start_close(&probe, Runtime::builder().config(none)).await;
    let close = runtime.service::<Close>().unwrap();
    close.trigger().await.unwrap();
    assert!(close.runs().unwrap().is_empty(), "`runs = 0` keeps none");
    runtime.shutdown().await.unwrap();

    for bad in [
        "[history]\nruns = -1\n",
        "[history]\nkeep = \"soon\"\n",
        "[history]\nrows = 5\n",
    ] {
        let builder = Runtime::builder().config(Config::toml(bad));
        let err = builder
            .store(RedbStore::in_memory().unwrap())
            .service(|| Ledger {
                probe: Arc::default(),
            })
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad}: {err:?}");
    }
}

/// A runtime with the ledger, on the store's file.
async fn start_file(
    file: &TempStore,
    probe: &Arc<Probe>,
    builder: sora::RuntimeBuilder,
) -> Runtime {
    let probe = probe.clone();
    builder
        .store_path(&file.0)
        .service(move || Ledger {
            probe: probe.clone(),
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_history_survives_a_restart_of_the_process() {
    let probe = Arc::new(Probe::default());
    let file = TempStore::new("restart");
    let runtime = start_file(&file, &probe, Runtime::builder()).await;
    let ledger = runtime.service::<Ledger>().unwrap();
    ledger
        .act(Lookup("nobody".into()))
        .correlation_id("req-1")
        .await
        .unwrap_err();
    ledger
        .command(Command::Custom {
            name: "reconcile".into(),
            args: None,
        })
        .await
        .unwrap();
    let before = ledger.runs().unwrap();
    assert_eq!(before.len(), 2);
    runtime.shutdown().await.unwrap();

    let runtime = start_file(&file, &probe, Runtime::builder()).await;
    let ledger = runtime.service::<Ledger>().unwrap();
    let after = ledger.runs().unwrap();
    assert_eq!(after, before, "the runs of the last process, as they were");

    // A new run goes in front of them.
    ledger.act(Lookup("nobody".into())).await.unwrap_err();
    let runs = ledger.runs().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1..], after[..]);
    runtime.shutdown().await.unwrap();

    // The store keeps as many as the history: a restart with fewer reads fewer back.
    let runtime = start_file(
        &file,
        &probe,
        Runtime::builder().run_history(2, Duration::from_secs(3600)),
    )
    .await;
    let ledger = runtime.service::<Ledger>().unwrap();
    assert_eq!(ledger.runs().unwrap()[..], runs[..2]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn runs_are_saved_in_the_background_while_the_service_runs() {
    let probe = Arc::new(Probe::default());
    let store = RedbStore::in_memory().unwrap();
    let runtime = start_on(&probe, Runtime::builder(), store.clone()).await;
    let ledger = runtime.service::<Ledger>().unwrap();
    for _ in 0..3 {
        ledger.act(Lookup("nobody".into())).await.unwrap_err();
    }
    // The saver waits a moment for runs to gather, then commits them together.
    let mut saved = Vec::new();
    for _ in 0..100 {
        saved = sora::store::Store::runs(&store, "Ledger", 10, std::time::UNIX_EPOCH).unwrap();
        if saved.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        saved,
        ledger.runs().unwrap(),
        "saved, newest first, without a stop"
    );
    runtime.shutdown().await.unwrap();
}
