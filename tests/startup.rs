//! Start-up services: order, timeouts, continue-on-failure, fail-fast, and the readiness gate.

#[path = "support/common.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sora::{
    BoxError, Context, Definition, Error, Health, Runtime, Service, ServiceKind, ServiceState,
    Startup,
};
use support::*;

/// A start-up step: records its start, optionally fails or hangs.
struct Step<const N: i32> {
    journal: Journal,
    fail: bool,
    hang: bool,
}

fn step<const N: i32>(journal: &Journal) -> impl Fn() -> Step<N> + Send + Sync + 'static {
    let journal = journal.clone();
    move || Step {
        journal: journal.clone(),
        fail: false,
        hang: false,
    }
}

impl<const N: i32> Service for Step<N> {
    fn define(def: &mut Definition<Self>) {
        def.name(format!("step-{N}"))
            .startup(Startup::order(N).timeout(Duration::from_secs(5)));
    }

    async fn start(&self, _ctx: &Context) -> Result<(), BoxError> {
        self.journal.push(format!("start:step-{N}"));
        if self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.fail {
            return Err("migration 0042 failed".into());
        }
        Ok(())
    }

    async fn stop(&self, _ctx: &Context) {
        self.journal.push(format!("stop:step-{N}"));
    }
}

struct Api {
    journal: Journal,
}

impl Service for Api {
    async fn start(&self, _ctx: &Context) -> Result<(), BoxError> {
        self.journal.push("start:api");
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn startup_services_run_first_in_ascending_order() {
    let journal = Journal::default();
    let j = journal.clone();
    let runtime = Runtime::builder()
        .service(move || Api { journal: j.clone() })
        .service(step::<3>(&journal))
        .service(step::<1>(&journal))
        .service(step::<2>(&journal))
        .start()
        .await
        .unwrap();
    assert_eq!(
        journal.entries(),
        ["start:step-1", "start:step-2", "start:step-3", "start:api"]
    );
    let info = runtime
        .service_by_name("step-1")
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!(info.kinds, [ServiceKind::Startup]);
    assert_eq!(info.startup.unwrap().get_order(), 1);
    assert!(runtime.is_ready().await);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_startup_service_past_its_timeout_fails_the_start_and_stops_what_started() {
    let journal = Journal::default();
    let j = journal.clone();
    let err = Runtime::builder()
        .service(step::<1>(&journal))
        .service(move || Step::<2> {
            journal: j.clone(),
            fail: false,
            hang: true,
        })
        .service(step::<3>(&journal))
        .start()
        .await
        .unwrap_err();
    match err {
        Error::StartupFailed { service, reason } => {
            assert_eq!(service, "step-2");
            assert!(reason.contains("timed out after 5s"), "{reason}");
        }
        other => panic!("expected a start-up failure, got {other}"),
    }
    assert_eq!(
        journal.entries(),
        ["start:step-1", "start:step-2", "stop:step-1"],
        "step-3 never started; step-1 was stopped in order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_startup_service_may_continue_on_failure() {
    let journal = Journal::default();
    let j = journal.clone();
    let runtime = Runtime::builder()
        .service_with(
            move || Step::<1> {
                journal: j.clone(),
                fail: true,
                hang: false,
            },
            |def| {
                def.startup(Startup::order(1).continue_on_failure());
            },
        )
        .service(step::<2>(&journal))
        .start()
        .await
        .unwrap();
    let failed = runtime.service::<Step<1>>().unwrap();
    let status = failed.status().await.unwrap();
    assert_eq!(status.state, ServiceState::Failed);
    assert!(
        status
            .last_failure
            .unwrap()
            .contains("migration 0042 failed")
    );
    assert!(matches!(
        failed.health().await.unwrap(),
        Health::Unhealthy(_)
    ));
    assert!(matches!(
        failed.act(sora_probe::Probe).await,
        Err(Error::ServiceFailed { .. })
    ));
    assert!(
        !runtime.is_ready().await,
        "a failed start-up service gates readiness"
    );
    assert_eq!(journal.count("start:step-2"), 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_a_failed_startup_service_does_not_stop_the_start() {
    let journal = Journal::default();
    let j = journal.clone();
    let runtime = Runtime::builder()
        .fail_fast(false)
        .service(move || Step::<1> {
            journal: j.clone(),
            fail: true,
            hang: false,
        })
        .service(step::<2>(&journal))
        .start()
        .await
        .unwrap();
    assert_eq!(journal.entries(), ["start:step-1", "start:step-2"]);
    runtime.shutdown().await.unwrap();
}

/// Ready only once its flag is set: the seeds' `IsReadyAsync`.
struct Warmup {
    ready: Arc<AtomicBool>,
}

impl Service for Warmup {
    fn define(def: &mut Definition<Self>) {
        def.startup(Startup::order(0));
    }

    async fn ready(&self, _ctx: &Context) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_every_service() {
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let runtime = Runtime::builder()
        .service(move || Warmup { ready: r.clone() })
        .start()
        .await
        .unwrap();
    assert!(!runtime.is_ready().await);
    ready.store(true, Ordering::SeqCst);
    assert!(runtime.is_ready().await);
    runtime.shutdown().await.unwrap();
    assert!(!runtime.is_ready().await);
}

/// A probe action every `Step` answers, to show calls to a failed service are refused.
mod sora_probe {
    use super::Step;
    use sora::{Action, BoxError, Context, Handler};

    pub(super) struct Probe;
    impl Action for Probe {
        const NAME: &'static str = "probe";
        type Reply = ();
    }
    impl<const N: i32> Handler<Probe> for Step<N> {
        async fn handle(&self, _: Probe, _ctx: &Context) -> Result<(), BoxError> {
            Ok(())
        }
    }
}
