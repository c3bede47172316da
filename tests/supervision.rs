//! Supervision: panics contained, calls failed cleanly, restart policies, strategies, intensity,
//! backoff, and handles that survive restarts.

#[path = "support/common.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sora::{
    Action, Backoff, BoxError, Context, Definition, Error, Handler, Health, Restart, Runtime,
    Service, ServiceHandle, ServiceKind, ServiceState, Strategy,
};
use support::*;

/// One of several interchangeable services, told apart by `ID`.
struct Member<const ID: u8> {
    journal: Journal,
}

fn member<const ID: u8>(journal: &Journal) -> impl Fn() -> Member<ID> + Send + Sync + 'static {
    let journal = journal.clone();
    move || Member {
        journal: journal.clone(),
    }
}

struct Explode;
impl Action for Explode {
    const NAME: &'static str = "explode";
    type Reply = ();
}

struct Halt;
impl Action for Halt {
    const NAME: &'static str = "halt";
    type Reply = ();
}

struct Ping;
impl Action for Ping {
    const NAME: &'static str = "ping";
    type Reply = u8;
}

impl<const ID: u8> Service for Member<ID> {
    fn define(def: &mut Definition<Self>) {
        def.name(format!("member-{ID}"))
            .restart(Restart::permanent().backoff(Backoff::none()));
    }

    async fn start(&self, _ctx: &Context) -> Result<(), BoxError> {
        self.journal.push(format!("start:{ID}"));
        Ok(())
    }

    async fn stop(&self, _ctx: &Context) {
        self.journal.push(format!("stop:{ID}"));
    }
}

impl<const ID: u8> Handler<Explode> for Member<ID> {
    async fn handle(&self, _: Explode, _ctx: &Context) -> Result<(), BoxError> {
        panic!("member {ID} exploded");
    }
}

impl<const ID: u8> Handler<Halt> for Member<ID> {
    async fn handle(&self, _: Halt, ctx: &Context) -> Result<(), BoxError> {
        ctx.stop();
        Ok(())
    }
}

impl<const ID: u8> Handler<Ping> for Member<ID> {
    async fn handle(&self, _: Ping, _ctx: &Context) -> Result<u8, BoxError> {
        Ok(ID)
    }
}

async fn restarts<S: Service>(runtime: &Runtime) -> u64 {
    runtime
        .service::<S>()
        .unwrap()
        .status()
        .await
        .unwrap()
        .restarts
}

async fn state<S: Service>(runtime: &Runtime) -> ServiceState {
    runtime
        .service::<S>()
        .unwrap()
        .status()
        .await
        .unwrap()
        .state
}

#[tokio::test(start_paused = true)]
async fn a_panic_fails_in_flight_and_queued_calls_then_the_handle_works_after_restart() {
    let gate = Gate::default();
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(translator(&journal, Some(&gate)), |def| {
            def.concurrency(2)
                .restart(Restart::permanent().backoff(Backoff::none()));
        })
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let panicking = tokio::spawn(t.act(Work("panic".into())).into_future());
    eventually(|| async { journal.count("begin:panic") == 1 }).await;
    let in_flight = tokio::spawn(t.act(Work("a".into())).into_future());
    eventually(|| async { journal.count("begin:a") == 1 }).await;
    let queued: Vec<_> = ["b", "c"]
        .into_iter()
        .map(|l| tokio::spawn(t.act(Work(l.into())).into_future()))
        .collect();
    eventually(|| async { t.status().await.unwrap().queue_depth == 2 }).await;

    gate.open(1); // lets "panic" through, first in line
    for call in [panicking, in_flight].into_iter().chain(queued) {
        match within(call).await.unwrap() {
            Err(Error::ServiceFailed { reason, .. }) => {
                assert!(reason.contains("boom in panic"), "{reason}")
            }
            other => panic!("expected ServiceFailed, got {other:?}"),
        }
    }
    assert_eq!(journal.count("begin:b"), 0, "queued calls never ran");

    // The same handle reaches the new incarnation.
    eventually(|| async { t.status().await.unwrap().state == ServiceState::Idle }).await;
    let reply = t
        .act(Translate {
            text: "again".into(),
            to: "en".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply, "[en] again");
    let status = t.status().await.unwrap();
    assert_eq!(status.restarts, 1);
    assert!(status.last_failure.unwrap().contains("boom in panic"));
    runtime.shutdown().await.unwrap();
}

async fn policy_outcome(restart: Restart, stop_normally: bool) -> (ServiceState, u64) {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(member::<1>(&journal), move |def| {
            def.restart(restart.backoff(Backoff::none()));
        })
        .start()
        .await
        .unwrap();
    let m = runtime.service::<Member<1>>().unwrap();
    if stop_normally {
        m.act(Halt).await.unwrap();
    } else {
        assert!(matches!(
            m.act(Explode).await,
            Err(Error::ServiceFailed { .. })
        ));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let outcome = (
        state::<Member<1>>(&runtime).await,
        restarts::<Member<1>>(&runtime).await,
    );
    runtime.shutdown().await.unwrap();
    outcome
}

#[tokio::test(start_paused = true)]
async fn restart_policies_decide_what_comes_back() {
    use ServiceState::*;
    assert_eq!(policy_outcome(Restart::permanent(), false).await, (Idle, 1));
    assert_eq!(policy_outcome(Restart::permanent(), true).await, (Idle, 1));
    assert_eq!(policy_outcome(Restart::transient(), false).await, (Idle, 1));
    assert_eq!(
        policy_outcome(Restart::transient(), true).await,
        (Stopped, 0)
    );
    assert_eq!(
        policy_outcome(Restart::temporary(), false).await,
        (Failed, 0)
    );
    assert_eq!(
        policy_outcome(Restart::temporary(), true).await,
        (Stopped, 0)
    );
}

async fn strategy_run(strategy: Strategy) -> (Vec<String>, [u64; 3]) {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .strategy(strategy)
        .service(member::<1>(&journal))
        .service(member::<2>(&journal))
        .service(member::<3>(&journal))
        .start()
        .await
        .unwrap();
    let two = runtime.service::<Member<2>>().unwrap();
    assert!(two.act(Explode).await.is_err());
    eventually(|| async { restarts::<Member<2>>(&runtime).await == 1 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for ping in [
        runtime.service::<Member<1>>().unwrap().act(Ping).await,
        runtime.service::<Member<2>>().unwrap().act(Ping).await,
        runtime.service::<Member<3>>().unwrap().act(Ping).await,
    ] {
        ping.unwrap();
    }
    let counts = [
        restarts::<Member<1>>(&runtime).await,
        restarts::<Member<2>>(&runtime).await,
        restarts::<Member<3>>(&runtime).await,
    ];
    runtime.shutdown().await.unwrap();
    // Drop the entries of the final shutdown: they are the same for every strategy.
    let entries = journal.entries();
    let cut = entries.len() - 3;
    (entries[..cut].to_vec(), counts)
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_service() {
    let (journal, restarts) = strategy_run(Strategy::OneForOne).await;
    assert_eq!(journal, ["start:1", "start:2", "start:3", "start:2"]);
    assert_eq!(restarts, [0, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_service_in_start_order() {
    let (journal, restarts) = strategy_run(Strategy::OneForAll).await;
    assert_eq!(
        journal,
        [
            "start:1", "start:2", "start:3", "stop:3", "stop:1", "start:1", "start:2", "start:3"
        ]
    );
    assert_eq!(restarts, [1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_service_and_those_started_after_it() {
    let (journal, restarts) = strategy_run(Strategy::RestForOne).await;
    assert_eq!(
        journal,
        [
            "start:1", "start:2", "start:3", "stop:3", "start:2", "start:3"
        ]
    );
    assert_eq!(restarts, [0, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_critical_service_past_its_intensity_stops_the_runtime() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(member::<1>(&journal), |def| {
            def.critical().restart(
                Restart::permanent()
                    .intensity(2, Duration::from_secs(60))
                    .backoff(Backoff::none()),
            );
        })
        .service(member::<2>(&journal))
        .start()
        .await
        .unwrap();
    let one = runtime.service::<Member<1>>().unwrap();
    for attempt in 1..=3u64 {
        assert!(one.act(Explode).await.is_err());
        if attempt < 3 {
            eventually(|| async { restarts::<Member<1>>(&runtime).await == attempt }).await;
            eventually(|| async { one.act(Ping).await.is_ok() }).await;
        }
    }
    match within(runtime.wait()).await {
        Err(Error::CriticalFailure { service, reason }) => {
            assert_eq!(service, "member-1");
            assert!(reason.contains("more than 2 restarts"), "{reason}");
            assert!(reason.contains("member 1 exploded"), "{reason}");
        }
        other => panic!("expected a critical failure, got {other:?}"),
    }
    let two = runtime.service::<Member<2>>().unwrap();
    assert!(matches!(two.act(Ping).await, Err(Error::ShuttingDown)));
    assert!(
        journal.entries().contains(&"stop:2".to_owned()),
        "others stop in order"
    );
    assert!(matches!(
        runtime.shutdown().await,
        Err(Error::CriticalFailure { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_non_critical_service_past_its_intensity_is_left_failed_and_unhealthy() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(member::<1>(&journal), |def| {
            def.restart(
                Restart::permanent()
                    .intensity(1, Duration::from_secs(60))
                    .backoff(Backoff::none()),
            );
        })
        .service(member::<2>(&journal))
        .start()
        .await
        .unwrap();
    let one = runtime.service::<Member<1>>().unwrap();
    assert!(one.act(Explode).await.is_err());
    eventually(|| async { one.act(Ping).await.is_ok() }).await;
    assert!(one.act(Explode).await.is_err());
    eventually(|| async { state::<Member<1>>(&runtime).await == ServiceState::Failed }).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(state::<Member<1>>(&runtime).await, ServiceState::Failed);
    match one.health().await.unwrap() {
        Health::Unhealthy(reason) => assert!(reason.contains("more than 1 restarts"), "{reason}"),
        other => panic!("expected unhealthy, got {other:?}"),
    }
    assert!(matches!(
        one.act(Ping).await,
        Err(Error::ServiceFailed { .. })
    ));
    // The rest of the runtime carries on.
    assert_eq!(
        runtime
            .service::<Member<2>>()
            .unwrap()
            .act(Ping)
            .await
            .unwrap(),
        2
    );
    assert!(!runtime.is_ready().await);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restarts_wait_their_backoff_and_calls_meanwhile_are_unavailable() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(member::<1>(&journal), |def| {
            def.restart(Restart::permanent().backoff(Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                factor: 2.0,
                jitter: 0.0,
                ..Backoff::default()
            }));
        })
        .start()
        .await
        .unwrap();
    let one = runtime.service::<Member<1>>().unwrap();
    let failed_at = tokio::time::Instant::now();
    assert!(one.act(Explode).await.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    match one.act(Ping).await {
        Err(Error::ServiceUnavailable { reason, .. }) => {
            assert!(reason.contains("restarting"), "{reason}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(state::<Member<1>>(&runtime).await, ServiceState::Restarting);
    assert!(!one.health().await.unwrap().is_up());
    eventually(|| async { one.act(Ping).await.is_ok() }).await;
    let first = failed_at.elapsed();
    assert!(
        first >= Duration::from_secs(1) && first < Duration::from_millis(1100),
        "{first:?}"
    );

    // The second consecutive restart waits twice as long.
    let failed_at = tokio::time::Instant::now();
    assert!(one.act(Explode).await.is_err());
    eventually(|| async { one.act(Ping).await.is_ok() }).await;
    let second = failed_at.elapsed();
    assert!(
        second >= Duration::from_secs(2) && second < Duration::from_millis(2100),
        "{second:?}"
    );
    runtime.shutdown().await.unwrap();
}

/// How long `service` takes to answer again after it fails now.
async fn time_to_recover(service: &ServiceHandle<Member<1>>) -> Duration {
    let failed_at = tokio::time::Instant::now();
    assert!(service.act(Explode).await.is_err());
    eventually(|| async { service.act(Ping).await.is_ok() }).await;
    failed_at.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_service_that_ran_stably_restarts_after_the_first_delay_again() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(member::<1>(&journal), |def| {
            let backoff = Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                factor: 2.0,
                jitter: 0.0,
                reset_after: Duration::from_secs(5),
            };
            def.restart(
                Restart::permanent()
                    .intensity(100, Duration::from_secs(3600))
                    .backoff(backoff),
            );
        })
        .start()
        .await
        .unwrap();
    let one = runtime.service::<Member<1>>().unwrap();
    let secs = |d: Duration| d.as_secs();
    // Failing as soon as it is back: each restart waits twice as long as the one before.
    assert_eq!(secs(time_to_recover(&one).await), 1);
    assert_eq!(secs(time_to_recover(&one).await), 2);
    assert_eq!(secs(time_to_recover(&one).await), 4);
    // After a stable run, the next failure is a first one again (it waited 8 s before).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(secs(time_to_recover(&one).await), 1);
    assert_eq!(secs(time_to_recover(&one).await), 2);
    // A run shorter than `reset_after` is not stable.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(secs(time_to_recover(&one).await), 4);
    runtime.shutdown().await.unwrap();
}

/// Starts once, and after its first life fails to start twice: a database that went away.
struct Fragile {
    starts: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl Service for Fragile {
    fn define(def: &mut Definition<Self>) {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(5),
        };
        def.restart(
            Restart::permanent()
                .intensity(100, Duration::from_secs(3600))
                .backoff(backoff),
        );
    }

    async fn start(&self, _: &Context) -> Result<(), BoxError> {
        let mut starts = self.starts.lock().unwrap();
        starts.push(tokio::time::Instant::now());
        if (2..=3).contains(&starts.len()) {
            return Err("database not reachable".into());
        }
        Ok(())
    }
}

impl Handler<Explode> for Fragile {
    async fn handle(&self, _: Explode, _: &Context) -> Result<(), BoxError> {
        panic!("lost the database")
    }
}

#[tokio::test(start_paused = true)]
async fn restarts_that_fail_to_start_back_off_even_after_a_stable_run() {
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = starts.clone();
    let runtime = Runtime::builder()
        .service(move || Fragile { starts: s.clone() })
        .start()
        .await
        .unwrap();
    let fragile = runtime.service::<Fragile>().unwrap();
    // A stable run, then a failure: the first restart waits the first delay, and each failed
    // start after it counts as consecutive (before, each one started over from the first).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fragile.act(Explode).await.is_err());
    eventually(|| async { starts.lock().unwrap().len() == 4 }).await;
    let starts = starts.lock().unwrap().clone();
    let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    // Ten seconds of a stable life and the first delay; then twice, then four times as long.
    assert_eq!(gaps, [11, 2, 4], "{starts:?}");
    runtime.shutdown().await.unwrap();
}

/// Long-running work that fails on its first life and runs until cancelled on the next.
struct Consumer {
    lives: Arc<AtomicUsize>,
}

impl Service for Consumer {
    fn define(def: &mut Definition<Self>) {
        def.restart(Restart::permanent().backoff(Backoff::none()));
    }

    async fn run(&self, ctx: &Context) -> Result<(), BoxError> {
        if self.lives.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("lost the broker connection".into());
        }
        ctx.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_background_run_is_supervised() {
    let lives = Arc::new(AtomicUsize::new(0));
    let l = lives.clone();
    let runtime = Runtime::builder()
        .service(move || Consumer { lives: l.clone() })
        .start()
        .await
        .unwrap();
    let consumer = runtime.service::<Consumer>().unwrap();
    eventually(|| async {
        let s = consumer.status().await.unwrap();
        s.restarts == 1 && s.state == ServiceState::Running
    })
    .await;
    let status = consumer.status().await.unwrap();
    assert!(
        status
            .last_failure
            .unwrap()
            .contains("lost the broker connection")
    );
    assert_eq!(lives.load(Ordering::SeqCst), 2);
    assert!(
        consumer
            .info()
            .await
            .unwrap()
            .kinds
            .contains(&ServiceKind::LongRunning)
    );
    runtime.shutdown().await.unwrap();
}

/// Fails to start twice, then starts.
struct Flaky {
    attempts: Arc<AtomicUsize>,
}

impl Service for Flaky {
    fn define(def: &mut Definition<Self>) {
        def.restart(Restart::permanent().backoff(Backoff::none()));
    }

    async fn start(&self, _ctx: &Context) -> Result<(), BoxError> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err("database not reachable".into());
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_is_retried_under_the_restart_policy() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let runtime = Runtime::builder()
        .service(move || Flaky {
            attempts: a.clone(),
        })
        .start()
        .await
        .unwrap();
    let flaky = runtime.service::<Flaky>().unwrap();
    eventually(|| async { flaky.status().await.unwrap().state == ServiceState::Idle }).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(flaky.status().await.unwrap().restarts, 2);
    runtime.shutdown().await.unwrap();
}
