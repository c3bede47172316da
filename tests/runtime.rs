//! The runtime as a whole: isolation of runtimes in one process, correlation ids in spans,
//! resolution, health and info, and the thread-safety of handles.

#[path = "support/common.rs"]
mod support;

use std::future::IntoFuture;

use sora::{
    Action, BoxError, Context, Definition, Handler, Health, Runtime, RuntimeHandle, Service,
    ServiceHandle, ServiceRef,
};
use support::*;

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<ServiceHandle<Translator>>();
    assert_send_sync::<ServiceRef>();
    assert_send_sync::<RuntimeHandle>();
    assert_send_sync::<sora::Error>();
    fn assert_send<T: Send>(_: &T) {}
    let _ = |t: ServiceHandle<Translator>| {
        assert_send(&t.act(WhoAmI).into_future());
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_in_one_process_are_isolated() {
    let (ja, jb) = (Journal::default(), Journal::default());
    let first = Runtime::builder()
        .service(translator(&ja, None))
        .start()
        .await
        .unwrap();
    let second = Runtime::builder()
        .service(translator(&jb, None))
        .start()
        .await
        .unwrap();
    let calls = [(&first, "one"), (&second, "two"), (&first, "three")];
    for (rt, text) in calls {
        translate_en(rt, text).await;
    }
    assert_eq!(ja.entries(), ["translate:one", "translate:three"]);
    assert_eq!(jb.entries(), ["translate:two"]);
    first.shutdown().await.unwrap();
    // The other runtime is untouched by the first one's shutdown.
    let t = second.service::<Translator>().unwrap();
    t.act(WhoAmI).await.unwrap();
    assert_eq!(t.status().await.unwrap().calls, 2);
    second.shutdown().await.unwrap();
}

/// Calls the translator from inside its own handler: a two-step workflow.
#[derive(Default)]
struct Relay;

#[derive(serde::Serialize, serde::Deserialize)]
struct Forward;
impl Action for Forward {
    const NAME: &'static str = "forward";
    type Reply = Option<String>;
}

impl Service for Relay {
    fn define(def: &mut Definition<Self>) {
        def.action::<Forward>();
    }
}

impl Handler<Forward> for Relay {
    async fn handle(&self, _: Forward, ctx: &Context) -> Result<Option<String>, BoxError> {
        tracing::info!("forwarding");
        Ok(ctx.runtime().service::<Translator>()?.act(WhoAmI).await?)
    }
}

#[tokio::test(start_paused = true)]
#[tracing_test::traced_test]
async fn correlation_ids_follow_the_work_into_spans_and_nested_calls() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .service(Relay::default)
        .start()
        .await
        .unwrap();
    let seen = runtime
        .service::<Relay>()
        .unwrap()
        .act(Forward)
        .correlation_id("upload-42")
        .await
        .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some("upload-42"),
        "the nested call inherited it"
    );
    let none = runtime
        .service::<Relay>()
        .unwrap()
        .act(Forward)
        .await
        .unwrap();
    assert_eq!(none, None, "a call without an id passes none on");
    runtime
        .service::<Translator>()
        .unwrap()
        .act(Translate {
            text: "x".into(),
            to: "en".into(),
        })
        .correlation_id("req-7")
        .await
        .unwrap();
    assert!(logs_contain("correlation_id=\"upload-42\""));
    assert!(logs_contain("action=\"forward\""));
    assert!(logs_contain("correlation_id=\"req-7\""));
    assert!(logs_contain("translating"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn services_resolve_by_type_and_name_through_the_registry() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .service(Relay::default)
        .start()
        .await
        .unwrap();
    let typed = runtime.resolve::<Relay>().await.unwrap();
    assert_eq!(typed.name(), "Relay");
    let named = runtime.resolve_by_name("Translator").await.unwrap();
    assert_eq!(named.name(), "Translator");
    assert!(matches!(
        named.command(sora::Command::CheckQueue).priority(1).await,
        Err(sora::Error::UnknownCommand { .. })
    ));
    let names: Vec<_> = runtime
        .services()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(names, ["Relay", "Translator"]);
    assert!(matches!(
        runtime.resolve_by_name("Ghost").await,
        Err(sora::Error::UnknownService { .. })
    ));
    runtime.shutdown().await.unwrap();
}

/// Reports itself degraded.
#[derive(Default)]
struct Tired;
impl Service for Tired {
    async fn health(&self, _ctx: &Context) -> Health {
        Health::degraded("queue is 80% full")
    }
}

#[tokio::test(start_paused = true)]
async fn health_and_info_report_what_services_declare() {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .service(Tired::default)
        .start()
        .await
        .unwrap();
    let health = runtime.health().await;
    assert_eq!(
        health,
        [
            ("Tired".to_owned(), Health::degraded("queue is 80% full")),
            ("Translator".to_owned(), Health::Healthy),
        ]
    );
    let info = runtime
        .service::<Translator>()
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!(
        info.actions,
        [
            "translate",
            "work",
            "sleep",
            "explode",
            "refuse",
            "who-am-i"
        ]
    );
    assert_eq!(info.events, ["TranslationCompleted"]);
    assert_eq!(info.concurrency, 1);
    assert!(!info.critical);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_type_may_serve_several_named_services() {
    let (ja, jb) = (Journal::default(), Journal::default());
    let runtime = Runtime::builder()
        .service_with(translator(&ja, None), |def| {
            def.name("translator-eu");
        })
        .service_with(translator(&jb, None), |def| {
            def.name("translator-us");
        })
        .start()
        .await
        .unwrap();
    let us = runtime
        .service_named::<Translator>("translator-us")
        .unwrap();
    us.act(Translate {
        text: "hi".into(),
        to: "en".into(),
    })
    .await
    .unwrap();
    assert_eq!(jb.entries(), ["translate:hi"]);
    assert!(ja.entries().is_empty());
    assert_eq!(
        runtime.service::<Translator>().unwrap().name(),
        "translator-eu"
    );
    assert!(runtime.service_named::<Relay>("translator-us").is_err());
    runtime.shutdown().await.unwrap();
}

#[test]
#[should_panic(expected = "service name `Translator` is registered twice")]
fn a_name_registered_twice_panics() {
    let _ = Runtime::builder()
        .service(Translator::default)
        .service(Translator::default);
}
