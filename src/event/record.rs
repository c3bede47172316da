//! An emitted event as it travels: built once, shared by every local subscriber, encoded at most
//! once per format.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use super::Event;
use crate::codec::{Bincode, Codec, Format, Json};

/// What one emitter counts about its events; shared by its records, so that a drop at a
/// subscriber is counted against the service that emitted the event.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) name: Arc<str>,
    pub(crate) emitted: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Source {
    pub(crate) fn new(name: Arc<str>) -> Arc<Self> {
        Arc::new(Source {
            name,
            emitted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }
}

/// Who emitted an event, when, and for which call.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) source: Arc<Source>,
    pub(crate) name: Arc<str>,
    pub(crate) correlation_id: Option<Arc<str>>,
    /// The node of the cluster where it was emitted; `None` for this one.
    pub(crate) node: Option<Arc<str>>,
    /// Given by the bus when it fans the event out; 0 before.
    pub(crate) id: AtomicU64,
    pub(crate) at: SystemTime,
}

impl Clone for Meta {
    fn clone(&self) -> Self {
        Meta {
            source: self.source.clone(),
            name: self.name.clone(),
            correlation_id: self.correlation_id.clone(),
            node: self.node.clone(),
            id: AtomicU64::new(self.id.load(Ordering::Relaxed)),
            at: self.at,
        }
    }
}

/// An event and what travels with it.
pub(crate) struct Record<T> {
    pub(crate) meta: Meta,
    pub(crate) payload: T,
    json: OnceLock<Result<Arc<[u8]>, String>>,
    bincode: OnceLock<Result<Arc<[u8]>, String>>,
}

impl<T> Record<T> {
    pub(crate) fn new(meta: Meta, payload: T) -> Self {
        Record {
            meta,
            payload,
            json: OnceLock::new(),
            bincode: OnceLock::new(),
        }
    }
}

/// A record whose payload type is erased: what the event bus moves and fans out.
pub(crate) trait AnyRecord: Send + Sync + 'static {
    fn meta(&self) -> &Meta;

    fn as_any(&self) -> &dyn Any;

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;

    /// The payload in `format`, encoded on first use and kept for every later subscriber.
    fn encoded(&self, format: Format) -> Result<Arc<[u8]>, String>;

    /// Numbers the event as the bus fans it out.
    fn set_id(&self, id: u64) {
        self.meta().id.store(id, Ordering::Relaxed);
    }

    /// The event as a record of the payload type `type_id`, for an event that came from another
    /// node and was decoded there for typed subscribers: a local event is its own record.
    fn typed(&self, _type_id: std::any::TypeId) -> Option<&Shared> {
        None
    }
}

impl<E: Event> AnyRecord for Record<E> {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn encoded(&self, format: Format) -> Result<Arc<[u8]>, String> {
        let cell = match format {
            Format::Json => &self.json,
            Format::Bincode => &self.bincode,
        };
        cell.get_or_init(|| {
            match format {
                Format::Json => Json::encode(&self.payload),
                Format::Bincode => Bincode::encode(&self.payload),
            }
            .map(Arc::from)
        })
        .clone()
    }
}

pub(crate) type Shared = Arc<dyn AnyRecord>;

/// An event as a subscriber receives it: the payload (through `Deref`) and who emitted it.
///
/// Every local subscriber of one emission shares the same value: receiving it costs a reference
/// count, never a copy of the payload. Cloning it is as cheap.
///
/// # Examples
///
/// ```
/// use sora::Emitted;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct TranslationCompleted { file_id: String }
/// # impl sora::Event for TranslationCompleted { const NAME: &'static str = "translation-completed"; }
///
/// async fn notify(done: Emitted<TranslationCompleted>) {
///     // `done.file_id` reads the payload; the rest says where the event comes from.
///     println!("{} finished {} ({:?})", done.service(), done.file_id, done.correlation_id());
/// }
/// # let _ = notify;
/// ```
pub struct Emitted<T> {
    record: Arc<Record<T>>,
    /// Held while an actor subscriber has the event; dropping it lets the next one through.
    pub(crate) ticket: Option<super::subscription::Ticket>,
}

impl<T> Emitted<T> {
    pub(crate) fn new(record: Arc<Record<T>>) -> Self {
        Emitted {
            record,
            ticket: None,
        }
    }

    pub(crate) fn source(&self) -> &Source {
        &self.record.meta.source
    }

    /// The event's payload.
    pub fn payload(&self) -> &T {
        &self.record.payload
    }

    /// The name of the service that emitted it.
    pub fn service(&self) -> &str {
        &self.record.meta.source.name
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.record.meta.name
    }

    /// The correlation id of the call during which it was emitted, if it had one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.record.meta.correlation_id.as_deref()
    }

    /// The node of the cluster where it was emitted (`node@host`); `None` for an event of this
    /// runtime.
    pub fn node(&self) -> Option<&str> {
        self.record.meta.node.as_deref()
    }

    /// Its number in the runtime: the event bus numbers events from 1 in the order it fans them
    /// out, so every subscriber sees ids increase.
    pub fn id(&self) -> u64 {
        self.record.meta.id.load(Ordering::Relaxed)
    }

    /// When it was emitted (wall clock).
    pub fn emitted_at(&self) -> SystemTime {
        self.record.meta.at
    }
}

// With `cluster`, ractor has no blanket `Message` impl: an actor may take events as its
// messages all the same (they are delivered to local actors only; events of other nodes reach
// them through this node's bus).
#[cfg(feature = "cluster")]
impl<T: Send + Sync + 'static> ractor::Message for Emitted<T> {}

impl<T> Clone for Emitted<T> {
    /// Another reference to the same event. An actor subscriber's next event waits for the
    /// original, not for its clones.
    fn clone(&self) -> Self {
        Emitted::new(self.record.clone())
    }
}

impl<T> std::ops::Deref for Emitted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.record.payload
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Emitted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitted")
            .field("service", &self.service())
            .field("name", &self.name())
            .field("id", &self.id())
            .field("correlation_id", &self.correlation_id())
            .field("node", &self.node())
            .field("payload", self.payload())
            .finish()
    }
}
