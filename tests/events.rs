//! Events: emit from handlers, subscribe with closures, streams and actors, and every delivery
//! rule of the event bus (filter, once, dispose, order, overflow, panics, bus restarts).

#[path = "support/common.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sora::event::{Ended, Overflow};
use sora::{
    Action, BoxError, Context, Definition, Emitted, Error, Event, Handler, Runtime, Service,
};
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
#[derive(Debug, serde::Serialize, serde::Deserialize)]
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

/// Counts the handler runs of one subscriber.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicUsize>);

impl Runs {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// A handler that counts its runs here.
    fn handler(&self) -> impl Fn(Emitted<Numbered>) -> std::future::Ready<()> + use<> {
        let runs = self.clone();
        move |_| {
            runs.hit();
            std::future::ready(())
        }
    }
}

#[tokio::test]
async fn a_filter_runs_before_delivery_so_a_rejected_event_wakes_nobody() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let (odd, all) = (Runs::default(), Runs::default());
    let subscription = emitter
        .on::<Numbered>()
        .filter(|e| e.n % 2 == 1)
        .run(odd.handler())
        .on::<Numbered>()
        .filter(|e| e.n > 1000)
        .run(all.handler())
        .subscribe()
        .await
        .unwrap();
    emitter.act(burst("f", 10)).await.unwrap();
    runtime.events().flush().await.unwrap();
    until(|| async { odd.count() == 5 }).await;
    let stats = subscription.stats();
    assert_eq!(stats[0].delivered, 5, "only odd numbers were queued");
    assert_eq!(stats[1].delivered, 0, "nothing passed the second filter");
    assert_eq!(all.count(), 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_takes_exactly_one_event_of_many_emitted_at_once_then_ends() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let runs = Runs::default();
    let subscription = emitter
        .on::<Numbered>()
        .once()
        .run(runs.handler())
        .subscribe()
        .await
        .unwrap();
    let mut stream = emitter.on::<Numbered>().stream().await.unwrap();
    // Eight actions at once, each emitting 50 events, from as many tasks.
    let bursts: Vec<_> = (0..8)
        .map(|i| emitter.act(burst(&format!("t{i}"), 50)).send())
        .collect();
    for result in futures::future::join_all(bursts).await {
        result.unwrap();
    }
    runtime.events().flush().await.unwrap();
    for _ in 0..400 {
        within(stream.next()).await.unwrap();
    }
    until(|| async { runs.count() == 1 }).await;
    let stats = &subscription.stats()[0];
    assert_eq!(stats.delivered, 1);
    assert_eq!(stats.ended, Some(Ended::Once));
    assert!(!subscription.is_active());
    assert_eq!(
        runtime.events().subscriptions(),
        1,
        "only the stream is left"
    );
    runtime.shutdown().await.unwrap();
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_disposed_or_dropped_subscription_sees_nothing_more() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let (kept, disposed, dropped) = (Runs::default(), Runs::default(), Runs::default());
    let subscribe = |runs: &Runs| emitter.on::<Numbered>().run(runs.handler()).subscribe();
    let keep = subscribe(&kept).await.unwrap();
    let dispose = subscribe(&disposed).await.unwrap();
    let drop_me = subscribe(&dropped).await.unwrap();
    assert_eq!(runtime.events().subscriptions(), 3);

    emitter.act(burst("before", 1)).await.unwrap();
    runtime.events().flush().await.unwrap();
    until(|| async { kept.count() == 1 && disposed.count() == 1 && dropped.count() == 1 }).await;

    dispose.dispose();
    drop(drop_me);
    assert_eq!(runtime.events().subscriptions(), 1);
    emitter.act(burst("after", 3)).await.unwrap();
    runtime.events().flush().await.unwrap();
    until(|| async { kept.count() == 4 }).await;
    assert_eq!(disposed.count(), 1);
    assert_eq!(dropped.count(), 1);
    assert_eq!(keep.stats()[0].ended, None);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_or_failing_handler_is_contained_and_counted() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let (flaky_runs, steady_runs) = (Runs::default(), Runs::default());
    let f = flaky_runs.clone();
    let subscription = emitter
        .on::<Numbered>()
        .run(move |e| {
            f.hit();
            async move {
                match e.n {
                    2 => panic!("handler blew up on {}", e.n),
                    3 => Err(format!("cannot take {}", e.n)),
                    _ => Ok(()),
                }
            }
        })
        .on::<Numbered>()
        .run(steady_runs.handler())
        .subscribe()
        .await
        .unwrap();
    emitter.act(burst("p", 5)).await.unwrap();
    until(|| async { flaky_runs.count() == 5 && steady_runs.count() == 5 }).await;
    until(|| async { subscription.stats()[0].failed == 2 }).await;
    let stats = subscription.stats();
    assert_eq!(stats[0].last_error.as_deref(), Some("cannot take 3"));
    assert_eq!(stats[1].failed, 0);
    assert!(subscription.is_active());
    runtime.shutdown().await.unwrap();
}

/// Subscribes a handler that waits at `gate` for every event, with the given queue.
async fn slow_subscriber(
    runtime: &Runtime,
    gate: &Gate,
    capacity: usize,
    overflow: Overflow,
) -> (sora::Subscription, Arc<std::sync::Mutex<Vec<u32>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (gate, s) = (gate.clone(), seen.clone());
    let subscription = runtime
        .service::<Emitter>()
        .unwrap()
        .on::<Numbered>()
        .queue(capacity, overflow)
        .run(move |e| {
            let (gate, seen) = (gate.clone(), s.clone());
            async move {
                gate.pass().await;
                seen.lock().unwrap().push(e.n);
            }
        })
        .subscribe()
        .await
        .unwrap();
    (subscription, seen)
}

#[tokio::test]
async fn a_full_queue_follows_its_overflow_policy_and_counts_what_it_loses() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let gate = Gate::default();
    let (oldest, oldest_seen) = slow_subscriber(&runtime, &gate, 4, Overflow::DropOldest).await;
    let (newest, newest_seen) = slow_subscriber(&runtime, &gate, 4, Overflow::DropNewest).await;
    let (cut, cut_seen) = slow_subscriber(&runtime, &gate, 4, Overflow::Disconnect).await;
    let fast = emitter
        .on::<Numbered>()
        .queue(16, Overflow::Disconnect)
        .capture();
    let mut fast = fast.await.unwrap();

    // Each slow handler takes event 1 and waits at the gate; 2..=10 meet a queue of 4.
    emitter.act(burst("o", 1)).await.unwrap();
    runtime.events().flush().await.unwrap();
    until(|| async { oldest.stats()[0].queued == 0 && newest.stats()[0].queued == 0 }).await;
    emitter.act(burst("o", 10)).await.unwrap();
    runtime.events().flush().await.unwrap();
    // The emitter was never held up: its action returned with every handler still blocked.

    assert_eq!(oldest.stats()[0].dropped, 6);
    assert_eq!(newest.stats()[0].dropped, 6);
    assert_eq!(cut.stats()[0].ended, Some(Ended::Disconnected));
    assert_eq!(cut.stats()[0].dropped, 1);
    assert_eq!(
        fast.wait_for(11).await.len(),
        11,
        "a fast subscriber loses nothing"
    );
    let status = emitter.status().await.unwrap();
    assert_eq!(status.events_emitted, 11);
    assert_eq!(status.events_dropped, 6 + 6 + 1);

    gate.open(100);
    until(|| async { oldest_seen.lock().unwrap().len() == 5 }).await;
    until(|| async { newest_seen.lock().unwrap().len() == 5 }).await;
    assert_eq!(*oldest_seen.lock().unwrap(), [1, 7, 8, 9, 10]);
    assert_eq!(*newest_seen.lock().unwrap(), [1, 1, 2, 3, 4]);
    // Disconnected: the event it held finishes; what was queued is gone.
    until(|| async { !cut_seen.lock().unwrap().is_empty() }).await;
    assert_eq!(*cut_seen.lock().unwrap(), [1]);
    runtime.shutdown().await.unwrap();
}

/// A user's actor that subscribes to events: it reports the numbers it sees.
struct Collector;

enum CollectorMsg {
    Numbered(Emitted<Numbered>),
}

impl From<Emitted<Numbered>> for CollectorMsg {
    fn from(event: Emitted<Numbered>) -> Self {
        CollectorMsg::Numbered(event)
    }
}

#[cfg(feature = "cluster")]
impl ractor::Message for CollectorMsg {}

impl Actor for Collector {
    type Msg = CollectorMsg;
    type State = tokio::sync::mpsc::UnboundedSender<u32>;
    type Arguments = tokio::sync::mpsc::UnboundedSender<u32>;

    async fn pre_start(
        &self,
        _me: ActorRef<CollectorMsg>,
        seen: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(seen)
    }

    async fn handle(
        &self,
        _me: ActorRef<CollectorMsg>,
        msg: CollectorMsg,
        seen: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let CollectorMsg::Numbered(event) = msg;
        let _ = seen.send(event.n);
        Ok(())
    }
}

#[tokio::test]
async fn an_actor_receives_events_as_its_messages_until_it_stops() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (collector, handle) = Actor::spawn(None, Collector, tx).await.unwrap();
    let subscription = emitter
        .on::<Numbered>()
        .send_to(&collector)
        .subscribe()
        .await
        .unwrap();

    emitter.act(burst("a", 300)).await.unwrap();
    for n in 1..=300 {
        assert_eq!(within(seen.recv()).await, Some(n));
    }
    assert_eq!(subscription.stats()[0].dropped, 0);

    collector.stop(None);
    handle.await.unwrap();
    until(|| async { !subscription.is_active() }).await;
    assert_eq!(
        subscription.stats()[0].ended,
        Some(Ended::SubscriberStopped)
    );
    assert_eq!(runtime.events().subscriptions(), 0);
    emitter.act(burst("b", 1)).await.unwrap();
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_subscribes_an_actor_through_its_actor_reference() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (collector, _) = Actor::spawn(None, Collector, tx).await.unwrap();
    let actor = emitter.actor_ref().unwrap();
    let to = collector.clone();
    let subscription = ractor::call!(actor, |reply| {
        sora::ServiceMessage::Subscribe(Box::new(sora::Subscribe::new(
            move |chain| chain.on::<Numbered>().filter(|e| e.n == 2).send_to(&to),
            reply,
        )))
    })
    .unwrap()
    .unwrap();
    emitter.act(burst("a", 3)).await.unwrap();
    assert_eq!(within(seen.recv()).await, Some(2));

    let refused = ractor::call!(actor, |reply| {
        sora::ServiceMessage::Subscribe(Box::new(sora::Subscribe::new(
            |chain| chain.on::<TranslationCompleted>().run(|_| async {}),
            reply,
        )))
    })
    .unwrap();
    assert!(matches!(refused, Err(Error::UnknownEvent { .. })));
    drop(subscription);
    collector.stop(None);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscriptions_survive_a_restart_of_the_bus() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let mut events = emitter.on::<Numbered>().stream().await.unwrap();
    emitter.act(burst("before", 1)).await.unwrap();
    assert_eq!(within(events.next()).await.unwrap().tag, "before");

    let bus = runtime.events();
    let first = bus.actor().unwrap();
    first.kill();
    until(|| async { bus.restarts() == 1 && bus.actor().is_some() }).await;
    assert_ne!(bus.actor().unwrap().get_id(), first.get_id());

    emitter.act(burst("after", 2)).await.unwrap();
    for n in 1..=2 {
        let event = within(events.next()).await.unwrap();
        assert_eq!((event.tag.as_str(), event.n), ("after", n));
    }
    assert_eq!(bus.subscriptions(), 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn emits_while_the_bus_is_down_reach_subscribers_after_it_restarts() {
    let runtime = start().await;
    let emitter = runtime.service::<Emitter>().unwrap();
    let mut events = emitter.on::<Numbered>().stream().await.unwrap();
    let bus = runtime.events();
    // Kill the bus and emit at once, most often before the supervisor has spawned its
    // successor: the emits wait in the bus's queue, which outlives it.
    bus.actor().unwrap().kill();
    emitter.act(burst("meanwhile", 20)).await.unwrap();
    for n in 1..=20 {
        assert_eq!(within(events.next()).await.unwrap().n, n);
    }
    until(|| async { bus.restarts() == 1 }).await;
    runtime.shutdown().await.unwrap();
}

#[derive(Debug, serde::Deserialize)]
struct JustTheNumber {
    n: u32,
}

#[derive(Debug, serde::Deserialize)]
struct WrongShape {
    #[allow(dead_code)]
    n: String,
}

#[tokio::test]
async fn by_name_subscribers_get_json_payloads_and_undecodable_ones_are_counted() {
    let runtime = start().await;
    let emitter = runtime.service_by_name("Emitter").unwrap();
    let mut numbers = emitter
        .on_named::<JustTheNumber>("numbered")
        .stream()
        .await
        .unwrap();
    let mut values = emitter
        .on_named::<serde_json::Value>("numbered")
        .stream()
        .await
        .unwrap();
    let mut wrong = emitter
        .on_named::<WrongShape>("numbered")
        .capture()
        .await
        .unwrap();
    let err = emitter
        .on_named::<serde_json::Value>("no-such-event")
        .stream()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownEvent { .. }), "{err}");

    runtime
        .service::<Emitter>()
        .unwrap()
        .act(burst("j", 2))
        .await
        .unwrap();
    for n in 1..=2 {
        let event = within(numbers.next()).await.unwrap();
        assert_eq!(
            (event.n, event.service(), event.name()),
            (n, "Emitter", "numbered")
        );
        let value = within(values.next()).await.unwrap();
        assert_eq!(*value, serde_json::json!({"tag": "j", "n": n}));
    }
    runtime.events().flush().await.unwrap();
    assert!(wrong.events().is_empty());
    let stats = wrong.stream().stats();
    assert_eq!(stats.undecodable, 2);
    let error = stats.last_error.unwrap();
    assert!(error.contains("`numbered` at `n`"), "{error}");
    assert_eq!(stats.ended, None, "the subscription goes on");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_runtime_wide_subscription_hears_every_emitter_in_order_per_emitter() {
    let runtime = Runtime::builder()
        .service_with(Emitter::default, |def| {
            def.name("left");
        })
        .service_with(Emitter::default, |def| {
            def.name("right");
        })
        .start()
        .await
        .unwrap();
    let mut all = runtime.on::<Numbered>().capture().await.unwrap();
    let left = runtime.service_named::<Emitter>("left").unwrap();
    let right = runtime.service_named::<Emitter>("right").unwrap();
    let (l, r) = tokio::join!(
        left.act(burst("l", 100)).send(),
        right.act(burst("r", 100)).send()
    );
    l.unwrap();
    r.unwrap();
    let events = all.wait_for(200).await;
    for service in ["left", "right"] {
        let numbers: Vec<u32> = events
            .iter()
            .filter(|e| e.service() == service)
            .map(|e| e.n)
            .collect();
        assert_eq!(numbers, (1..=100).collect::<Vec<_>>(), "{service}");
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chain_subscribes_before_it_acts_so_it_sees_what_the_action_emits() {
    let runtime = start().await;
    let translator = runtime.service::<Translator>().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscription, reply) = translator
        .on::<TranslationCompleted>()
        .run(move |done| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(done.text.clone());
            }
        })
        .act(Translate {
            text: "bonjour".into(),
            to: "en".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.unwrap(), "[en] bonjour");
    assert_eq!(within(rx.recv()).await.as_deref(), Some("bonjour"));
    assert!(subscription.is_active());
    runtime.shutdown().await.unwrap();
}

/// Emits one event from its stop hook.
#[derive(Default)]
struct Farewell;

impl Service for Farewell {
    fn define(def: &mut Definition<Self>) {
        def.emits::<Numbered>();
    }

    async fn stop(&self, ctx: &Context) {
        ctx.emit(Numbered {
            tag: "goodbye".into(),
            n: 1,
        })
        .expect("the bus takes events until every service has stopped");
    }
}

#[tokio::test]
async fn shutdown_delivers_what_was_emitted_then_ends_every_subscription() {
    let runtime = Runtime::builder()
        .service(Farewell::default)
        .start()
        .await
        .unwrap();
    let mut events = runtime
        .service::<Farewell>()
        .unwrap()
        .on::<Numbered>()
        .stream()
        .await
        .unwrap();
    runtime.shutdown().await.unwrap();
    assert_eq!(within(events.next()).await.unwrap().tag, "goodbye");
    assert!(within(events.next()).await.is_none(), "the stream ends");
    assert_eq!(events.stats().ended, Some(Ended::RuntimeStopped));
    let late = runtime.on::<Numbered>().stream().await.unwrap_err();
    assert!(matches!(late, Error::ShuttingDown), "{late}");
}

#[tokio::test]
async fn a_subscription_to_any_event_hears_every_name_from_its_target() {
    let runtime = start().await;
    let mut everything = runtime
        .on_any::<serde_json::Value>()
        .capture()
        .await
        .unwrap();
    let mut emitter_only = runtime
        .service_by_name("Emitter")
        .unwrap()
        .on_any::<serde_json::Value>()
        .capture()
        .await
        .unwrap();
    runtime
        .service::<Emitter>()
        .unwrap()
        .act(burst("a", 2))
        .await
        .unwrap();
    translate_en(&runtime, "olá").await;
    let all = everything.wait_for(3).await;
    let seen: Vec<(&str, &str)> = all.iter().map(|e| (e.service(), e.name())).collect();
    assert_eq!(
        seen,
        [
            ("Emitter", "numbered"),
            ("Emitter", "numbered"),
            ("Translator", "TranslationCompleted")
        ]
    );
    assert_eq!(all[1].payload()["n"], 2);
    assert_eq!(all[2].payload()["to"], "en");
    emitter_only.wait_for(2).await;
    // Everything emitted has been fanned out: nothing from the translator came in.
    runtime.events().flush().await.unwrap();
    let mine = emitter_only.events();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|e| e.service() == "Emitter"));
    runtime.shutdown().await.unwrap();
}
