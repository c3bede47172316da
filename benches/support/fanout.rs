//! The fan-out targets shared by `benches/events.rs` and `benches/ops.rs`: an event, a service
//! that emits it, subscribers that count what they see, for Sora and for ractor's `OutputPort`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use sora::{
    Action, BoxError, Context, Definition, Event, Handler, Service, ServiceHandle, Subscription,
};
use tokio::sync::Notify;

/// The event: a small `Copy` payload.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tick(pub(crate) u64);

impl Event for Tick {
    const NAME: &'static str = "tick";
}

// With `cluster`, an output port's messages must be convertible to bytes.
#[cfg(feature = "cluster")]
impl ractor::BytesConvertable for Tick {
    fn into_bytes(self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut raw = [0; 8];
        raw.copy_from_slice(&bytes[..8]);
        Tick(u64::from_le_bytes(raw))
    }
}

/// Emits one `Tick`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Emit(pub(crate) u64);

impl Action for Emit {
    const NAME: &'static str = "emit";
    type Reply = ();
}

#[derive(Default)]
pub(crate) struct Source;

impl Service for Source {
    fn define(def: &mut Definition<Self>) {
        def.action::<Emit>().emits::<Tick>();
    }
}

impl Handler<Emit> for Source {
    async fn handle(&self, emit: Emit, ctx: &Context) -> Result<(), BoxError> {
        ctx.emit(Tick(emit.0))?;
        Ok(())
    }
}

/// Counts the subscribers that still have to see the current event; the last one wakes the
/// bench.
#[derive(Default)]
pub(crate) struct Done {
    remaining: AtomicUsize,
    pub(crate) notify: Notify,
}

impl Done {
    pub(crate) fn arm(&self, subscribers: usize) {
        self.remaining.store(subscribers, Ordering::SeqCst);
    }

    pub(crate) fn arrive(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify.notify_one();
        }
    }
}

/// Whether subscriber `i` takes the events: all of them, or one in a hundred.
pub(crate) fn takes(i: usize, filtered: bool) -> bool {
    !filtered || i % 100 == 0
}

pub(crate) fn taking(n: usize, filtered: bool) -> usize {
    (0..n).filter(|&i| takes(i, filtered)).count()
}

pub(crate) struct Counter;

pub(crate) struct Count(#[allow(dead_code)] Tick);

#[cfg(feature = "cluster")]
impl ractor::Message for Count {}

impl Actor for Counter {
    type Msg = Count;
    type State = Arc<Done>;
    type Arguments = Arc<Done>;

    async fn pre_start(
        &self,
        _: ActorRef<Count>,
        done: Arc<Done>,
    ) -> Result<Arc<Done>, ActorProcessingErr> {
        Ok(done)
    }

    async fn handle(
        &self,
        _: ActorRef<Count>,
        _: Count,
        done: &mut Arc<Done>,
    ) -> Result<(), ActorProcessingErr> {
        done.arrive();
        Ok(())
    }
}

/// `n` actors subscribed to a new `OutputPort` (made inside the runtime: the v2 port spawns its
/// fan-out task); with `filtered`, all but one in a hundred turn the event away in the converter.
pub(crate) async fn port_subscribers(
    n: usize,
    filtered: bool,
    done: &Arc<Done>,
) -> (Arc<OutputPort<Tick>>, Vec<ActorRef<Count>>) {
    let port = Arc::new(OutputPort::<Tick>::default());
    let mut actors = Vec::with_capacity(n);
    for i in 0..n {
        let (actor, _) = Actor::spawn(None, Counter, done.clone())
            .await
            .expect("spawn");
        let takes = takes(i, filtered);
        port.subscribe(actor.clone(), move |tick| takes.then_some(Count(tick)));
        actors.push(actor);
    }
    (port, actors)
}

/// `n` closures subscribed to `source`'s ticks through the fluent chain; with `filtered`, all
/// but one in a hundred turn the event away in a filter.
pub(crate) async fn sora_subscribers(
    source: &ServiceHandle<Source>,
    n: usize,
    filtered: bool,
    done: &Arc<Done>,
) -> Vec<Subscription> {
    let mut subscriptions = Vec::with_capacity(n);
    for i in 0..n {
        let (done, takes) = (done.clone(), takes(i, filtered));
        let handler = move |tick: sora::Emitted<Tick>| {
            std::hint::black_box(tick.0);
            done.arrive();
            async {}
        };
        let chain = if filtered {
            source.on::<Tick>().filter(move |_| takes).run(handler)
        } else {
            source.on::<Tick>().run(handler)
        };
        subscriptions.push(chain.subscribe().await.expect("subscribe"));
    }
    subscriptions
}
