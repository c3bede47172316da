//! An event as a subscriber receives it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::record::{Record, Source};

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
