//! What a clause takes of an event, and which events: the [`Take`] kinds ([`Typed`], [`Decoded`])
//! and the [`Filter`]s.

use super::*;

/// A clause's filter: a closure `Fn(&T) -> bool`, [`All`] (no filter), or [`Both`].
pub trait Filter<T>: Send + Sync + 'static {
    /// Whether the event is for the subscriber.
    fn test(&self, payload: &T) -> bool;

    /// Whether this filter takes every event, so that the bus need not call it.
    fn takes_all(&self) -> bool {
        false
    }
}

/// The filter of a clause without one: every event passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct All;

impl<T> Filter<T> for All {
    fn test(&self, _: &T) -> bool {
        true
    }

    fn takes_all(&self) -> bool {
        true
    }
}

impl<T, F> Filter<T> for F
where
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    fn test(&self, payload: &T) -> bool {
        self(payload)
    }
}

/// Two filters that must both pass.
#[derive(Debug, Clone, Copy)]
pub struct Both<A, B>(pub(super) A, pub(super) B);

impl<T, A: Filter<T>, B: Filter<T>> Filter<T> for Both<A, B> {
    fn test(&self, payload: &T) -> bool {
        self.0.test(payload) && self.1.test(payload)
    }

    fn takes_all(&self) -> bool {
        self.0.takes_all() && self.1.takes_all()
    }
}

/// How a clause takes its payload out of an event: [`Typed`] or [`Decoded`]. Sealed.
pub trait Take<T>: sealed::Take<T> {}

impl<T, K: sealed::Take<T>> Take<T> for K {}

pub(super) mod sealed {
    use super::{Filter, Parts};

    pub trait Take<T>: 'static {
        /// How the subscription turns an event into what its subscriber gets, and how it
        /// joins the bus's index with `filter`.
        fn parts<F: Filter<T>>(filter: F) -> Parts<T>;
    }
}

/// What [`sealed::Take::parts`] makes. `pub` because the sealed trait names it; nothing
/// outside the crate can.
#[allow(unreachable_pub, missing_debug_implementations)]
pub struct Parts<T> {
    pub(super) pick: Pick<T>,
    pub(super) join: Join,
    /// How events of other nodes are decoded for a typed clause.
    #[cfg(feature = "cluster")]
    pub(super) typed: Option<crate::remote::TypedWire>,
}

/// Makes a subscription's member of the bus's index, from the subscription and its source.
type Join = Box<dyn FnOnce(Arc<dyn Deliver>, Option<Arc<str>>) -> Member + Send>;

/// A typed clause (`on::<E>()`): the bus runs its filter on the shared payload, and a taken
/// event costs a reference count.
#[derive(Debug, Clone, Copy)]
pub struct Typed;

impl<E: Event> sealed::Take<E> for Typed {
    fn parts<F: Filter<E>>(filter: F) -> Parts<E> {
        let pick = Box::new(|record: &Shared| {
            let record = match record.clone().into_any().downcast::<Record<E>>() {
                Ok(local) => Ok(local),
                // An event of another node, decoded here for subscribers of this type.
                Err(_) => match record.typed(TypeId::of::<E>()) {
                    Some(typed) => typed.clone().into_any().downcast::<Record<E>>(),
                    None => return Picked::Skip,
                },
            };
            match record {
                Ok(record) => Picked::Take(Emitted::new(record)),
                // The index offers a typed subscription only events of its type.
                Err(_) => Picked::Skip,
            }
        });
        let join = Box::new(move |sub, source| Member::new::<ByType<E>, F>(sub, source, filter));
        Parts {
            pick,
            join,
            #[cfg(feature = "cluster")]
            typed: Some(crate::remote::TypedWire::of::<E>()),
        }
    }
}

/// A by-name clause (`on_named::<T>(..)`): the payload is decoded from JSON for the subscriber,
/// then filtered.
#[derive(Debug, Clone, Copy)]
pub struct Decoded;

impl<T> sealed::Take<T> for Decoded
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    fn parts<F: Filter<T>>(filter: F) -> Parts<T> {
        let pick = Box::new(move |record: &Shared| {
            let bytes = match record.encoded(Format::Json) {
                Ok(bytes) => bytes,
                Err(message) => {
                    return Picked::Undecodable(DecodeError {
                        field: None,
                        message,
                    });
                }
            };
            let payload: T = match Json::decode(&bytes) {
                Ok(payload) => payload,
                Err(err) => return Picked::Undecodable(err),
            };
            if !filter.test(&payload) {
                return Picked::Skip;
            }
            Picked::Take(Emitted::new(Arc::new(Record::new(
                record.meta().clone(),
                payload,
            ))))
        });
        let join = Box::new(|sub, source| Member::new::<Whole, All>(sub, source, All));
        Parts {
            pick,
            join,
            #[cfg(feature = "cluster")]
            typed: None,
        }
    }
}
