//! Durable actions: committed before they are accepted, run at least once, retried on stored
//! times, dead-lettered, kept with their outcome, and found again after a restart.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sora::action::Permanent;
use sora::config::Config;
use sora::store::{JobFilter, JobState, RedbStore};
use sora::{
    Action, Backoff, BoxError, Context, Definition, Error, Handler, JobOptions, Retry, Runtime,
    Service,
};
use tokio::sync::Notify;
use tokio::time::Instant;

#[path = "support/temp_store.rs"]
mod temp_store;
use temp_store::TempStore;

/// Sends a mail; fails while `fail` is above zero, counting down.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Send {
    to: String,
}

impl Action for Send {
    const NAME: &'static str = "send";
    type Reply = String;
}

/// An in-memory action of the same service.
#[derive(serde::Serialize, serde::Deserialize)]
struct Count;

impl Action for Count {
    const NAME: &'static str = "count";
    type Reply = u32;
}

/// What the mailer saw of each attempt.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    to: String,
    attempt: u32,
    key: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct Probe {
    /// Attempts still to fail.
    fail: AtomicU32,
    /// Fail with a permanent error instead.
    permanent: std::sync::atomic::AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// When set, each attempt waits for it.
    gate: Mutex<Option<Arc<Notify>>>,
}

impl Probe {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Mailer {
    probe: Arc<Probe>,
}

fn retry() -> Retry {
    Retry::attempts(3).backoff(Backoff {
        initial: Duration::from_secs(10),
        factor: 2.0,
        jitter: 0.0,
        ..Retry::default().backoff
    })
}

impl Service for Mailer {
    fn define(def: &mut Definition<Self>) {
        def.durable::<Send>(retry()).action::<Count>();
    }
}

impl Handler<Send> for Mailer {
    async fn handle(&self, mail: Send, ctx: &Context) -> Result<String, BoxError> {
        let job = ctx.job().expect("a durable call runs as a job");
        self.probe.seen.lock().unwrap().push(Seen {
            to: mail.to.clone(),
            attempt: job.attempt,
            key: job.key.clone(),
            at: Instant::now(),
        });
        let gate = self.probe.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        if self.probe.permanent.load(Ordering::SeqCst) {
            return Err(Permanent::new(format!("{} does not exist", mail.to)).into());
        }
        let failing = self
            .probe
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(format!("smtp down for {}", mail.to).into());
        }
        Ok(format!("sent to {}", mail.to))
    }
}

impl Handler<Count> for Mailer {
    async fn handle(&self, _: Count, ctx: &Context) -> Result<u32, BoxError> {
        assert!(ctx.job().is_none(), "an in-memory call is no job");
        Ok(self.probe.seen.lock().unwrap().len() as u32)
    }
}

fn mail(to: &str) -> Send {
    Send { to: to.into() }
}

async fn start(probe: &Arc<Probe>) -> Runtime {
    start_with(probe, RedbStore::in_memory().unwrap()).await
}

async fn start_with(probe: &Arc<Probe>, store: RedbStore) -> Runtime {
    let probe = probe.clone();
    Runtime::builder()
        .store(store)
        .service(move || Mailer {
            probe: probe.clone(),
        })
        .start()
        .await
        .unwrap()
}

/// The job once its outcome is recorded: a reply is handed back as the handler returns, and
/// the record follows at once.
async fn recorded(jobs: &sora::Jobs, id: sora::store::JobId) -> sora::store::Job {
    loop {
        let job = jobs.get(id).unwrap();
        if job.finished.is_some() {
            return job;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_durable_call_is_a_job_that_runs_once_and_is_kept_with_its_reply() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();

    let reply = mailer.act(mail("ada")).await.unwrap();
    assert_eq!(reply, "sent to ada");
    assert_eq!(
        mailer.act(Count).await.unwrap(),
        1,
        "in-memory calls stay in memory"
    );

    let jobs = runtime.jobs().unwrap();
    let all = jobs.list(&JobFilter::default()).unwrap();
    assert_eq!(all.len(), 1, "the durable call was committed as a job");
    let job = &all[0];
    assert_eq!(job.service, "Mailer");
    assert_eq!(job.action, "send");
    assert_eq!(
        job.params, br#"{"to":"ada"}"#,
        "parameters are kept as JSON"
    );
    let job = recorded(&jobs, job.id).await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.reply.as_deref(), Some(br#""sent to ada""#.as_slice()));
    assert!(job.finished.is_some());
    assert_eq!(probe.seen()[0].attempt, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn enqueue_answers_once_committed_and_the_result_is_awaited_by_id() {
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Notify::new());
    *probe.gate.lock().unwrap() = Some(gate.clone());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();

    let ticket = mailer
        .enqueue(mail("grace"))
        .correlation_id("order-7")
        .priority(3)
        .await
        .unwrap();
    assert!(ticket.is_new());
    let job = ticket.job().unwrap();
    assert!(
        matches!(job.state, JobState::Running { attempt: 1 }),
        "{:?}",
        job.state
    );
    assert_eq!(job.correlation_id.as_deref(), Some("order-7"));
    assert_eq!(job.priority, 3);

    let jobs = runtime.jobs().unwrap();
    let by_id = tokio::spawn({
        let jobs = jobs.clone();
        let id = ticket.id();
        async move { jobs.wait(id).await }
    });
    tokio::task::yield_now().await;
    gate.notify_one();
    assert_eq!(ticket.result().await.unwrap(), "sent to grace");
    assert_eq!(by_id.await.unwrap().unwrap(), json!("sent to grace"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_retry_on_their_backoff_and_see_their_attempt_number() {
    let probe = Arc::new(Probe::default());
    probe.fail.store(2, Ordering::SeqCst);
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let ticket = mailer.enqueue(mail("alan")).await.unwrap();
    assert_eq!(ticket.result().await.unwrap(), "sent to alan");

    let seen = probe.seen();
    let attempts: Vec<u32> = seen.iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // 10 s, then 20 s: the policy's backoff, without jitter (times are kept to the ms).
    for (gap, expected) in seen.windows(2).zip([10, 20]) {
        let gap = gap[1].at - gap[0].at;
        let expected = Duration::from_secs(expected);
        assert!(
            gap >= expected && gap < expected + Duration::from_millis(50),
            "{gap:?} for {expected:?}"
        );
    }
    let job = ticket.job().unwrap();
    let errors: Vec<(u32, &str)> = job
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "`Mailer.send` failed: smtp down for alan"),
            (2, "`Mailer.send` failed: smtp down for alan")
        ]
    );
    runtime.shutdown().await.unwrap();
}

/// Fails its first attempt and retries a second later: the time the run history's saver also
/// wakes at, so that the clock may pass the retry's time while the dispatcher is claiming.
#[derive(serde::Serialize, serde::Deserialize)]
struct Twice;

impl Action for Twice {
    const NAME: &'static str = "twice";
    type Reply = u32;
}

#[derive(Default)]
struct Retrier {
    calls: AtomicU32,
}

impl Service for Retrier {
    fn define(def: &mut Definition<Self>) {
        def.durable::<Twice>(Retry::attempts(2).backoff(Backoff {
            initial: Duration::from_secs(1),
            jitter: 0.0,
            ..Retry::default().backoff
        }));
    }
}

impl Handler<Twice> for Retrier {
    async fn handle(&self, _: Twice, ctx: &Context) -> Result<u32, BoxError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("not yet".into());
        }
        Ok(ctx.job().unwrap().attempt)
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_comes_due_while_the_dispatcher_claims_still_runs() {
    // The time of a retry may come while the dispatcher waits on the store; it must look again
    // rather than wait for a wake that never comes. Each round had about even odds of hanging
    // before that was so, so twenty rounds show it.
    // A deadline on the wall clock: with the clock paused and a store's writer thread to wait
    // on, any timer of tokio's would be reached as soon as nothing else is pending.
    let (hung, mut watchdog) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = hung.send(());
    });
    for round in 0..20 {
        let runtime = Runtime::builder()
            .store(RedbStore::in_memory().unwrap())
            .service(Retrier::default)
            .start()
            .await
            .unwrap();
        let ticket = runtime
            .service::<Retrier>()
            .unwrap()
            .enqueue(Twice)
            .await
            .unwrap();
        let reply = tokio::select! {
            reply = ticket.result() => reply,
            _ = &mut watchdog => panic!("round {round}: the retry never ran"),
        };
        assert_eq!(reply.unwrap(), 2);
        runtime.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_out_of_attempts_is_dead_and_a_retry_gives_it_a_new_series() {
    let probe = Arc::new(Probe::default());
    probe.fail.store(3, Ordering::SeqCst);
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let ticket = mailer.enqueue(mail("kurt")).await.unwrap();
    let err = ticket.result().await.unwrap_err();
    assert!(
        matches!(&err, Error::ActionFailed { message, .. } if message == "smtp down for kurt"),
        "{err:?}"
    );
    let jobs = runtime.jobs().unwrap();
    recorded(&jobs, ticket.id()).await;
    let dead = jobs.dead(Some("Mailer")).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ticket.id());
    assert_eq!(dead[0].errors.len(), 3, "every attempt's error is kept");
    assert_eq!(dead[0].params, br#"{"to":"kurt"}"#);
    // A result asked for later, by id, is the same error.
    let later = jobs.wait(ticket.id()).await.unwrap_err();
    assert_eq!(later.code(), "action_failed");

    jobs.retry(ticket.id()).await.unwrap();
    assert_eq!(ticket.result().await.unwrap(), "sent to kurt");
    let attempts: Vec<u32> = probe.seen().iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 1], "the new series counts from 1");
    assert!(jobs.dead(None).unwrap().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_kills_the_job_at_once_and_says_so_in_an_event() {
    let probe = Arc::new(Probe::default());
    probe.permanent.store(true, Ordering::SeqCst);
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let mut dead = mailer.on::<sora::JobDead>().stream().await.unwrap();
    let err = mailer.act(mail("nobody")).await.unwrap_err();
    assert!(err.to_string().contains("nobody does not exist"), "{err}");
    assert_eq!(probe.seen().len(), 1, "no retry");
    let jobs = runtime.jobs().unwrap();
    let id = jobs.list(&JobFilter::default()).unwrap()[0].id;
    assert_eq!(recorded(&jobs, id).await.state, JobState::Dead);
    let event = dead.next().await.expect("a job-dead event");
    assert_eq!(event.id, id.to_string());
    assert_eq!(event.action, "send");
    assert_eq!(event.attempts, 1, "no attempt after a permanent error");
    assert!(
        event.error.contains("nobody does not exist"),
        "{}",
        event.error
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_keyed_job_is_enqueued_once_and_its_handler_sees_the_key() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let first = mailer
        .enqueue(mail("ada"))
        .key("welcome-ada")
        .await
        .unwrap();
    first.result().await.unwrap();
    let again = mailer
        .enqueue(mail("ada"))
        .key("welcome-ada")
        .await
        .unwrap();
    assert!(!again.is_new());
    assert_eq!(again.id(), first.id());
    assert_eq!(again.result().await.unwrap(), "sent to ada");
    let seen = probe.seen();
    assert_eq!(seen.len(), 1, "the handler ran once");
    assert_eq!(seen[0].key.as_deref(), Some("welcome-ada"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_delayed_job_waits_for_its_time() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let t0 = Instant::now();
    let ticket = mailer
        .enqueue(mail("later"))
        .delay(Duration::from_secs(60))
        .await
        .unwrap();
    let state = ticket.job().unwrap().state;
    assert!(matches!(state, JobState::Scheduled { .. }), "{state:?}");
    assert_eq!(ticket.result().await.unwrap(), "sent to later");
    let ran = probe.seen()[0].at - t0;
    assert!(
        ran >= Duration::from_secs(60) && ran < Duration::from_secs(61),
        "{ran:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queued_jobs_run_by_priority_when_the_service_has_room() {
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Notify::new());
    *probe.gate.lock().unwrap() = Some(gate.clone());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let busy = mailer.enqueue(mail("first")).await.unwrap();
    // The first holds the service (concurrency 1); the others wait in its queue.
    while probe.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let low = mailer.enqueue(mail("low")).priority(-1).await.unwrap();
    let high = mailer.enqueue(mail("high")).priority(5).await.unwrap();
    while mailer.status().await.unwrap().queue_depth < 2 {
        tokio::task::yield_now().await;
    }
    *probe.gate.lock().unwrap() = None;
    gate.notify_one();
    for ticket in [&busy, &low, &high] {
        ticket.result().await.unwrap();
    }
    let order: Vec<String> = probe.seen().into_iter().map(|s| s.to).collect();
    assert_eq!(order, ["first", "high", "low"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn by_name_a_bad_job_is_refused_before_anything_is_committed() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let mailer = runtime.service_by_name("Mailer").unwrap();
    let err = mailer
        .enqueue_json("send", json!({"to": 42}), JobOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadParameters { field: Some(f), .. } if f == "to"),
        "{err:?}"
    );
    let err = mailer
        .enqueue_json("count", json!(null), JobOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotDurable { .. }), "{err:?}");
    let jobs = runtime.jobs().unwrap();
    assert!(jobs.list(&JobFilter::default()).unwrap().is_empty());

    let enqueued = mailer
        .enqueue_json(
            "send",
            json!({"to": "linus"}),
            JobOptions::default().key("k"),
        )
        .await
        .unwrap();
    assert_eq!(
        jobs.wait(enqueued.id()).await.unwrap(),
        json!("sent to linus")
    );
    let unknown = sora::store::JobId::new(std::time::SystemTime::now());
    assert!(matches!(
        jobs.get(unknown).unwrap_err(),
        Error::UnknownJob { .. }
    ));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_discarded_job_never_runs_and_its_waiters_hear_it() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let mailer = runtime.service::<Mailer>().unwrap();
    let ticket = mailer
        .enqueue(mail("spam"))
        .delay(Duration::from_secs(3600))
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let jobs = runtime.jobs().unwrap();
        let id = ticket.id();
        async move { jobs.wait(id).await }
    });
    tokio::task::yield_now().await;
    assert!(runtime.jobs().unwrap().discard(ticket.id()).await.unwrap());
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::UnknownJob { .. }), "{err:?}");
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(probe.seen().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_stopped_by_shutdown_runs_again_at_the_next_start_with_its_attempt_given_back() {
    let file = TempStore::new("release");
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Notify::new());
    *probe.gate.lock().unwrap() = Some(gate);
    let config = Config::toml(&format!(
        "shutdown_timeout = \"200ms\"\n[store]\npath = {:?}\n",
        file.0.display().to_string()
    ));
    let run = |probe: &Arc<Probe>| {
        let probe = probe.clone();
        Runtime::builder()
            .config(config.clone())
            .service_with(
                move || Mailer {
                    probe: probe.clone(),
                },
                |def| {
                    def.stop_timeout(Duration::from_millis(100));
                },
            )
            .start()
    };
    let runtime = run(&probe).await.unwrap();
    assert!(
        file.0.exists(),
        "the store's file is made at the configured path"
    );
    let mailer = runtime.service::<Mailer>().unwrap();
    let ticket = mailer.enqueue(mail("ada")).await.unwrap();
    while probe.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let id = ticket.id();
    runtime.shutdown().await.unwrap();

    // The next process finds it ready, and runs it as its first attempt again.
    let probe = Arc::new(Probe::default());
    let runtime = run(&probe).await.unwrap();
    let jobs = runtime.jobs().unwrap();
    assert_eq!(jobs.wait(id).await.unwrap(), json!("sent to ada"));
    assert_eq!(probe.seen()[0].attempt, 1);
    let job = jobs.get(id).unwrap();
    assert_eq!(job.interruptions, 0, "a shutdown is no interruption");
    assert!(job.errors.is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_disabled_here_refuses_its_jobs_as_it_refuses_calls() {
    let probe = Arc::new(Probe::default());
    let runtime = Runtime::builder()
        .store(RedbStore::in_memory().unwrap())
        .service_with(
            {
                let probe = probe.clone();
                move || Mailer {
                    probe: probe.clone(),
                }
            },
            |def| {
                def.enabled(false);
            },
        )
        .start()
        .await
        .unwrap();
    let mailer = runtime.service_by_name("Mailer").unwrap();
    let err = mailer
        .enqueue_json("send", json!({"to": "later"}), JobOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ServiceDisabled { .. }), "{err:?}");
    let typed = runtime.service::<Mailer>().unwrap();
    let err = typed.act(mail("later")).await.unwrap_err();
    assert!(matches!(err, Error::ServiceDisabled { .. }), "{err:?}");
    let jobs = runtime.jobs().unwrap();
    assert!(jobs.list(&JobFilter::default()).unwrap().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn jobs_left_in_the_store_run_when_the_next_process_starts() {
    let file = TempStore::new("left");
    // A first process commits jobs and stops before it runs them: its service is busy.
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Notify::new());
    *probe.gate.lock().unwrap() = Some(gate);
    let start = |probe: &Arc<Probe>| {
        let probe = probe.clone();
        Runtime::builder()
            .store_path(&file.0)
            .shutdown_timeout(Duration::from_millis(100))
            .service_with(
                move || Mailer {
                    probe: probe.clone(),
                },
                |def| {
                    def.stop_timeout(Duration::from_millis(50));
                },
            )
            .start()
    };
    let runtime = start(&probe).await.unwrap();
    let mailer = runtime.service::<Mailer>().unwrap();
    let mut ids = Vec::new();
    for to in ["a", "b", "c"] {
        ids.push(mailer.enqueue(mail(to)).await.unwrap().id());
    }
    runtime.shutdown().await.unwrap();
    assert_eq!(
        probe.seen().len(),
        1,
        "one began; the others waited behind it"
    );

    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await.unwrap();
    let jobs = runtime.jobs().unwrap();
    for id in ids {
        jobs.wait(id).await.unwrap();
        assert_eq!(recorded(&jobs, id).await.state, JobState::Completed);
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_job_its_service_cannot_take_waits_without_losing_an_attempt() {
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Notify::new());
    *probe.gate.lock().unwrap() = Some(gate.clone());
    let runtime = Runtime::builder()
        .store(RedbStore::in_memory().unwrap())
        .service_with(
            {
                let probe = probe.clone();
                move || Mailer {
                    probe: probe.clone(),
                }
            },
            // Room for one call in the queue; a refusal counted as an attempt would show.
            |def| {
                def.queue_limit(1);
            },
        )
        .start()
        .await
        .unwrap();
    let mailer = runtime.service::<Mailer>().unwrap();
    // The first holds the service; in-memory calls fill its queue.
    let first = mailer.enqueue(mail("first")).await.unwrap();
    while probe.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let queued = tokio::spawn({
        let mailer = mailer.clone();
        async move { mailer.act(Count).await }
    });
    while mailer.status().await.unwrap().queue_depth < 1 {
        tokio::task::yield_now().await;
    }
    let refused = mailer.enqueue(mail("second")).await.unwrap();
    // Refused for room, it waits in the store, its attempt given back.
    loop {
        if let JobState::Scheduled { .. } = refused.job().unwrap().state {
            break;
        }
        tokio::task::yield_now().await;
    }
    *probe.gate.lock().unwrap() = None;
    gate.notify_one();
    first.result().await.unwrap();
    queued.await.unwrap().unwrap();
    assert_eq!(refused.result().await.unwrap(), "sent to second");
    let seen = probe.seen();
    assert_eq!(seen.last().unwrap().attempt, 1, "{seen:?}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_delay_past_any_time_is_a_bad_parameter() {
    let probe = Arc::new(Probe::default());
    let runtime = start(&probe).await;
    let err = runtime
        .service::<Mailer>()
        .unwrap()
        .enqueue(mail("never"))
        .delay(Duration::MAX)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadParameters { field: Some(f), .. } if f == "delay"),
        "{err:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_file_that_is_not_a_store_stops_the_start_naming_it() {
    let file = TempStore::new("garbage");
    std::fs::create_dir_all(file.0.parent().unwrap()).unwrap();
    std::fs::write(&file.0, b"not a database at all, just some bytes").unwrap();
    let probe = Arc::new(Probe::default());
    let err = Runtime::builder()
        .store_path(&file.0)
        .service(move || Mailer {
            probe: probe.clone(),
        })
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store");
    assert!(
        err.to_string().contains(&file.0.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn without_durable_actions_no_store_is_opened() {
    #[derive(Default)]
    struct Plain;
    impl Service for Plain {}
    let runtime = Runtime::builder()
        .service(Plain::default)
        .start()
        .await
        .unwrap();
    assert!(runtime.jobs().is_none());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_completed_job_is_kept_for_its_retention_and_its_key_with_it() {
    let probe = Arc::new(Probe::default());
    let runtime = Runtime::builder()
        .config(Config::toml(
            "[store]\nkeep_completed = \"1m\"\nkeep_dead = \"1h\"\n",
        ))
        .store(RedbStore::in_memory().unwrap())
        .service({
            let probe = probe.clone();
            move || Mailer {
                probe: probe.clone(),
            }
        })
        .start()
        .await
        .unwrap();
    let mailer = runtime.service::<Mailer>().unwrap();
    let jobs = runtime.jobs().unwrap();
    let first = mailer.enqueue(mail("ada")).key("welcome").await.unwrap();
    first.result().await.unwrap();
    recorded(&jobs, first.id()).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let again = mailer.enqueue(mail("ada")).key("welcome").await.unwrap();
    assert!(
        !again.is_new(),
        "within its retention the key names the job"
    );

    tokio::time::sleep(Duration::from_secs(150)).await;
    // Past its retention the job is gone. The pump's commit runs on the store's thread, which
    // paused time does not wait for: yield until it has.
    while jobs.get(first.id()).is_ok() {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        jobs.get(first.id()),
        Err(Error::UnknownJob { .. })
    ));
    let later = mailer.enqueue(mail("ada")).key("welcome").await.unwrap();
    assert!(later.is_new(), "and its key with it");
    runtime.shutdown().await.unwrap();
}
