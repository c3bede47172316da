//! Events: emit from handlers, subscribe with closures, streams and actors, and every delivery
//! rule of the event bus (filter, once, dispose, order, overflow, panics, bus restarts).

#[path = "support/common.rs"]
mod support;

use futures::StreamExt;
use sora::{Action, BoxError, Context, Definition, Error, Event, Handler, Runtime, Service};
use support::*;

/// One numbered event of a burst.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Numbered {
    tag: String,
    n: u32,
}

impl Event for Numbered {
    const NAME: &'static str = "numbered";
}

/// Emitted by nobody: declared only by `Quiet`.
#[derive(Debug, serde::Serialize)]
struct Silence;

impl Event for Silence {
    const NAME: &'static str = "silence";
}

/// Emits `count` `Numbered` events tagged `tag`, numbered from 1.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Burst {
    tag: String,
    count: u32,
}

impl Action for Burst {
    const NAME: &'static str = "burst";
    type Reply = ();
}

/// Emits what it is asked to; runs up to 8 actions at once.
#[derive(Default)]
struct Emitter;

impl Service for Emitter {
    fn define(def: &mut Definition<Self>) {
        def.action::<Burst>().emits::<Numbered>().concurrency(8);
    }
}

impl Handler<Burst> for Emitter {
    async fn handle(&self, burst: Burst, ctx: &Context) -> Result<(), BoxError> {
        for n in 1..=burst.count {
            ctx.emit(Numbered {
                tag: burst.tag.clone(),
                n,
            })?;
        }
        Ok(())
    }
}

fn burst(tag: &str, count: u32) -> Burst {
    Burst {
        tag: tag.into(),
        count,
    }
}

async fn start() -> Runtime {
    Runtime::builder()
        .service(Emitter::default)
        .service(translator(&Journal::default(), None))
        .start()
        .await
        .expect("runtime starts")
}

#[tokio::test]
async fn a_closure_sees_the_event_with_its_emitter_and_correlation_id() {
    let runtime = start().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let translator = runtime.service::<Translator>().unwrap();
    let subscription = translator
        .on::<TranslationCompleted>()
        .run(move |done| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((
                    done.payload().clone(),
                    done.service().to_owned(),
                    done.correlation_id().map(str::to_owned),
                    done.name().to_owned(),
                ));
            }
        })
        .subscribe()
        .await
        .unwrap();

    let reply = translator
        .act(Translate {
            text: "hola".into(),
            to: "en".into(),
        })
        .correlation_id("upload-7")
        .await
        .unwrap();
    assert_eq!(reply, "[en] hola");
    let (payload, service, correlation, name) = within(rx.recv()).await.unwrap();
    assert_eq!(payload.text, "hola");
    assert_eq!(service, "Translator");
    assert_eq!(correlation.as_deref(), Some("upload-7"));
    assert_eq!(name, "TranslationCompleted");
    assert_eq!(subscription.stats()[0].delivered, 1);
    let status = translator.status().await.unwrap();
    assert_eq!(status.events_emitted, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscribing_to_an_undeclared_event_names_the_service_and_what_it_emits() {
    let runtime = start().await;
    let err = runtime
        .service::<Translator>()
        .unwrap()
        .on::<Numbered>()
        .run(|_| async {})
        .subscribe()
        .await
        .unwrap_err();
    match &err {
        Error::UnknownEvent {
            service,
            event,
            emits,
        } => {
            assert_eq!(service, "Translator");
            assert_eq!(event, "numbered");
            assert_eq!(emits, &["TranslationCompleted"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "service `Translator` does not emit `numbered` (it emits: TranslationCompleted)"
    );
    let err = runtime.on::<Silence>().stream().await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownEvent { ref service, .. } if service == "*"),
        "{err}"
    );
    assert_eq!(runtime.events().subscriptions(), 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_sees_every_event_of_one_emitter_in_emission_order() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let mut events = emitter.on::<Numbered>().stream().await.unwrap();
    emitter.act(burst("a", 500)).await.unwrap();
    let mut last_id = 0;
    for n in 1..=500 {
        let event = within(events.next()).await.unwrap();
        assert_eq!(event.n, n);
        assert!(event.id() > last_id, "ids increase");
        last_id = event.id();
    }
    runtime.shutdown().await.unwrap();
}
