//! What an event is, as data: the trait a payload implements, what a service declares it emits,
//! and the record an emission travels in (built once, shared by every local subscriber, encoded
//! at most once per format). The model's part of events: services build records here, and the
//! bus above carries them.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

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

/// A named event a service emits.
///
/// The payload is serializable both ways so that it can reach subscribers that want bytes
/// (by-name subscribers and the HTTP event stream take JSON) and typed subscribers on other
/// nodes of a cluster, which decode it back into `Self`. Local subscribers get it as is.
///
/// # Examples
///
/// ```
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// struct TranslationCompleted {
///     file_id: String,
///     language: String,
/// }
///
/// impl sora::Event for TranslationCompleted {
///     const NAME: &'static str = "translation-completed";
/// }
/// # let _ = TranslationCompleted { file_id: "a".into(), language: "pt".into() };
/// ```
pub trait Event: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The event's name, unique within a service: what by-name subscribers and other nodes
    /// know it by.
    const NAME: &'static str;
}

/// An event a service declared it emits.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) type_id: std::any::TypeId,
    /// A hash of the payload type's shape, for nodes to compare; computed once, as an
    /// action's is.
    #[cfg(feature = "cluster")]
    pub(crate) schema: u64,
}
