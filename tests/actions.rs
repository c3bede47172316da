//! Typed actions: the fluent API, actor references, calls by name, and per-call options.

#[path = "support/common.rs"]
mod support;

use std::future::IntoFuture;
use std::time::Duration;

use serde_json::json;
use sora::codec::{Bincode, Codec, Format};
use sora::{CallOptions, Error, Runtime, ServiceMessage};
use support::*;

#[tokio::test(start_paused = true)]
async fn a_typed_action_round_trips_through_the_fluent_api() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let translator = runtime.service::<Translator>().unwrap();
    let reply = translator
        .act(Translate {
            text: "hola".into(),
            to: "en".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply, "[en] hola");
    let status = translator.status().await.unwrap();
    assert_eq!(status.calls, 1);
    assert_eq!(status.failures, 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_actor_ref_takes_the_same_typed_messages() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let actor = runtime
        .service::<Translator>()
        .unwrap()
        .actor_ref()
        .unwrap();
    let reply = ractor::call!(actor, |port| {
        ServiceMessage::action(
            Translate {
                text: "oi".into(),
                to: "fr".into(),
            },
            CallOptions::default(),
            port,
        )
    })
    .unwrap()
    .unwrap();
    assert_eq!(reply, "[fr] oi");
    let status = ractor::call!(actor, |port| ServiceMessage::Query(sora::Query::Status(
        port
    )))
    .unwrap();
    assert_eq!(status.calls, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn actions_are_callable_by_name_with_json() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let service = runtime.service_by_name("Translator").unwrap();
    let reply = service
        .act_json(
            "translate",
            json!({"text": "ciao", "to": "de"}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(reply, json!("[de] ciao"));

    let err = service
        .act_json("summarize", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownAction { action, .. } if action == "summarize"),
        "{err}"
    );

    let err = service
        .act_json(
            "translate",
            json!({"text": "ciao", "to": 7}),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    match err {
        Error::BadParameters { field, message, .. } => {
            assert_eq!(field.as_deref(), Some("to"));
            assert!(message.contains("expected a string"), "{message}");
        }
        other => panic!("expected bad parameters, got {other}"),
    }

    let err = service
        .act_json("translate", json!({"text": "ciao"}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing field `to`"), "{err}");

    assert!(matches!(
        runtime.service_by_name("Nope").unwrap_err(),
        Error::UnknownService { .. }
    ));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn actions_are_callable_by_name_with_bincode() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let service = runtime.resolve_by_name("Translator").await.unwrap();
    let params = Bincode::encode(&Translate {
        text: "hallo".into(),
        to: "pt".into(),
    })
    .unwrap();
    let reply = service
        .act_encoded("translate", Format::Bincode, params, CallOptions::default())
        .await
        .unwrap();
    assert_eq!(Bincode::decode::<String>(&reply).unwrap(), "[pt] hallo");
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn higher_priority_runs_first_among_queued_actions() {
    let gate = Gate::default();
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, Some(&gate)))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let first = tokio::spawn(t.act(Work("first".into())).into_future());
    until(|| async { journal.count("begin:first") > 0 }).await;
    let mut queued = Vec::new();
    for (label, priority) in [("low", 1), ("high", 10), ("mid", 5), ("high2", 10)] {
        queued.push(tokio::spawn(
            t.act(Work(label.into())).priority(priority).into_future(),
        ));
        // Each call reaches the queue before the next is sent.
        until(|| async { t.status().await.unwrap().queue_depth >= queued.len() }).await;
    }
    gate.open(5);
    first.await.unwrap().unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    let begins: Vec<_> = journal
        .entries()
        .into_iter()
        .filter(|e| e.starts_with("begin:"))
        .collect();
    assert_eq!(
        begins,
        [
            "begin:first",
            "begin:high",
            "begin:high2",
            "begin:mid",
            "begin:low"
        ]
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_the_caller_and_cancels_the_handler() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, None))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let err = t
        .act(Sleep(60_000))
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    match err {
        Error::Timeout { action, after, .. } => {
            assert_eq!(action, "sleep");
            assert_eq!(after, Duration::from_secs(1));
        }
        other => panic!("expected a timeout, got {other}"),
    }
    until(|| async { journal.count("sleep-dropped") > 0 }).await;
    assert_eq!(journal.count("sleep-done"), 0);
    // The service is still up, and the slot was freed.
    t.act(Sleep(10))
        .timeout(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(journal.count("sleep-done"), 1);
    let status = t.status().await.unwrap();
    assert_eq!(status.failures, 1);
    assert_eq!(status.restarts, 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_handler_error_reaches_the_caller_and_is_counted() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let err = t.act(Refuse).await.unwrap_err();
    assert!(
        matches!(&err, Error::ActionFailed { action, message, .. } if action == "refuse" && message == "no such language"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(t.status().await.unwrap().failures, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_bounds_in_flight_actions() {
    let gate = Gate::default();
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(translator(&journal, Some(&gate)), |def| {
            def.concurrency(2);
        })
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let calls: Vec<_> = (0..5)
        .map(|i| tokio::spawn(t.act(Work(format!("w{i}"))).into_future()))
        .collect();
    within(async {
        loop {
            let s = t.status().await.unwrap();
            if s.in_flight == 2 && s.queue_depth == 3 {
                assert_eq!(s.state, sora::ServiceState::Busy);
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        journal
            .entries()
            .iter()
            .filter(|e| e.starts_with("begin:"))
            .count(),
        2
    );
    gate.open(5);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let s = t.status().await.unwrap();
    assert_eq!((s.in_flight, s.queue_depth, s.calls), (0, 0, 5));
    assert_eq!(s.state, sora::ServiceState::Idle);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn chained_actions_run_in_sequence_and_stop_at_the_first_error() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, None))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let last = t
        .act(Work("sync-source".into()))
        .then(Work("validate".into()))
        .then(Translate {
            text: "report".into(),
            to: "en".into(),
        })
        .await
        .unwrap();
    assert_eq!(last, "[en] report");
    assert_eq!(
        journal.entries(),
        [
            "begin:sync-source",
            "end:sync-source",
            "begin:validate",
            "end:validate",
            "translate:report"
        ]
    );
    let err = t.act(Refuse).then(Work("never".into())).await.unwrap_err();
    assert!(matches!(err, Error::ActionFailed { .. }));
    assert_eq!(journal.count("begin:never"), 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_host_answers_queries_through_its_mailbox_while_an_action_runs() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let long = tokio::spawn(t.act(Sleep(3_600_000)).into_future());
    eventually(|| async { t.status().await.unwrap().in_flight == 1 }).await;
    let actor = t.actor_ref().unwrap();
    let started = tokio::time::Instant::now();
    let status = ractor::call!(actor, |port| ServiceMessage::Query(sora::Query::Status(
        port
    )))
    .unwrap();
    assert_eq!(status.state, sora::ServiceState::Busy);
    assert_eq!(status.in_flight, 1);
    let info = ractor::call!(actor, |port| ServiceMessage::Query(sora::Query::Info(port))).unwrap();
    assert_eq!(info.name, "Translator");
    assert_eq!(t.health().await.unwrap(), sora::Health::Healthy);
    // A second action queues behind the first (concurrency 1) without blocking queries.
    let queued = tokio::spawn(t.act(WhoAmI).into_future());
    eventually(|| async { t.status().await.unwrap().queue_depth == 1 }).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no query waited for the action"
    );
    long.abort();
    runtime.shutdown().await.unwrap();
    assert!(matches!(queued.await.unwrap(), Err(Error::ShuttingDown)));
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_timeout_passes_in_the_queue_never_runs() {
    let gate = Gate::default();
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, Some(&gate)))
        .start()
        .await
        .unwrap();
    let t = runtime.service::<Translator>().unwrap();
    let holder = tokio::spawn(t.act(Work("holder".into())).into_future());
    eventually(|| async { journal.count("begin:holder") == 1 }).await;
    let err = t
        .act(Sleep(10))
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    gate.open(1);
    holder.await.unwrap().unwrap();
    // Once the slot frees, the expired call is dropped from the queue without running.
    eventually(|| async { t.status().await.unwrap().calls == 2 }).await;
    assert_eq!(
        journal.count("sleep-dropped"),
        0,
        "the handler never started"
    );
    assert_eq!(journal.count("sleep-done"), 0);
    assert_eq!(t.status().await.unwrap().failures, 1);
    runtime.shutdown().await.unwrap();
}
