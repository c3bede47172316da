//! A subscription's queue under every interleaving loom finds: a delivery racing the
//! subscriber's sleep, and a disposal racing a delivery.

use std::sync::Arc;
use std::time::SystemTime;

use ::loom::thread;

use super::*;
use crate::event::record::{Meta, Record, Source};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Num(u32);

impl crate::Event for Num {
    const NAME: &'static str = "num";
}

fn record(n: u32) -> Shared {
    let meta = Meta {
        source: Source::new(Arc::from("counter")),
        name: Arc::from("num"),
        correlation_id: None,
        node: None,
        id: std::sync::atomic::AtomicU64::new(0),
        at: SystemTime::UNIX_EPOCH,
    };
    Arc::new(Record::new(meta, Num(n)))
}

fn subscription(once: bool) -> Arc<Sub<Num>> {
    let spec = Spec {
        id: 1,
        event: Arc::from("num"),
        source: None,
        once,
        capacity: 8,
        overflow: Overflow::DropOldest,
    };
    let pick: Pick<Num> =
        Box::new(
            |record: &Shared| match record.clone().into_any().downcast::<Record<Num>>() {
                Ok(record) => Picked::Take(Emitted::new(record)),
                Err(_) => Picked::Skip,
            },
        );
    Sub::new(spec, pick, Sink::Poll)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut model = ::loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(f);
}

#[test]
fn loom_a_subscriber_asleep_is_woken_by_the_delivery() {
    model(|| {
        let sub = subscription(false);
        let bus = {
            let sub = sub.clone();
            thread::spawn(move || {
                assert_eq!(sub.offer(&record(7)), Offer::Keep);
            })
        };
        // A lost wake-up leaves this waiting forever, which loom reports.
        let event = ::loom::future::block_on(std::future::poll_fn(|cx| sub.poll_next(cx)));
        assert_eq!(event.map(|e| e.0), Some(7));
        bus.join().unwrap();
    });
}

#[test]
fn loom_nothing_is_delivered_after_a_disposal() {
    model(|| {
        let sub = subscription(false);
        let bus = {
            let sub = sub.clone();
            thread::spawn(move || {
                let first = sub.offer(&record(1));
                let second = sub.offer(&record(2));
                // Once it has said remove, it says so for good.
                assert!(!(first == Offer::Remove && second == Offer::Keep));
            })
        };
        sub.end(Ended::Disposed);
        // Disposed: nothing is taken from now on, whatever the bus does meanwhile.
        assert!(sub.try_pop().is_none());
        bus.join().unwrap();
        assert!(sub.try_pop().is_none());
        assert!(sub.is_ended());
        assert_eq!(sub.stats().ended, Some(Ended::Disposed));
    });
}

#[test]
fn loom_a_disposal_wakes_a_subscriber_asleep() {
    model(|| {
        let sub = subscription(false);
        let disposer = {
            let sub = sub.clone();
            thread::spawn(move || sub.end(Ended::Disposed))
        };
        let event = ::loom::future::block_on(std::future::poll_fn(|cx| sub.poll_next(cx)));
        assert!(event.is_none(), "the stream ends");
        disposer.join().unwrap();
    });
}

#[test]
fn loom_once_takes_one_event_whatever_races_it() {
    model(|| {
        let sub = subscription(true);
        let disposer = {
            let sub = sub.clone();
            thread::spawn(move || sub.end(Ended::Disposed))
        };
        let offers = [sub.offer(&record(1)), sub.offer(&record(2))];
        disposer.join().unwrap();
        assert_eq!(offers[1], Offer::Remove);
        let mut taken = 0;
        while sub.try_pop().is_some() {
            taken += 1;
        }
        assert!(taken <= 1, "once, yet {taken} events");
    });
}
