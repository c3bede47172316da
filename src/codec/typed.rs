//! The codec of a type that only its declaration knows: captured where the types are known, as
//! plain function pointers, and used by whoever carries the bytes (the cluster, today). Also the
//! fingerprint of a type's shape, which nodes compare before they trust each other's bytes.

use std::any::Any;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Bincode, Codec, DecodeError};
use crate::action::Action;

/// How a typed action leaves this node and how its reply comes back: captured where the types
/// are known ([`Definition::action`](crate::Definition::action)), used where they are erased
/// (the cluster sends it).
#[derive(Clone, Copy)]
pub(crate) struct WireAction {
    pub(crate) encode: fn(Erased) -> Result<Vec<u8>, String>,
    pub(crate) decode_reply: fn(&[u8]) -> Result<Erased, DecodeError>,
    /// A hash of the shapes of the action's and its reply's types (see [`schema_of`]).
    pub(crate) schema: u64,
}

/// An action or a reply whose type only its declaration knows.
pub(crate) type Erased = Box<dyn Any + Send>;

impl WireAction {
    pub(crate) fn of<A>() -> Self
    where
        A: Action + Serialize + DeserializeOwned,
        A::Reply: DeserializeOwned,
    {
        WireAction {
            encode: |action| match action.downcast::<A>() {
                Ok(action) => Bincode::encode(&*action),
                Err(_) => Err(format!("not a `{}`", A::NAME)),
            },
            decode_reply: |bytes| Bincode::decode::<A::Reply>(bytes).map(|r| Box::new(r) as Erased),
            schema: schema_of::<A, A::Reply>(),
        }
    }
}

/// A hash of the shape of an event's payload type (see [`schema_of`]).
pub(crate) fn event_schema<E: DeserializeOwned>() -> u64 {
    schema_of::<E, ()>()
}

/// A hash of the shapes of an action's and its reply's types, the same in every process whose
/// types have the same names, fields, variants and field types in the same order (what bincode's
/// encoding depends on, and the names), whatever the build: FNV-1a over the JSON of the formats
/// `serde-reflection` traces. A type that cannot be traced (it decodes through
/// `deserialize_any`, which bincode cannot decode either) is hashed by its name.
pub(crate) fn schema_of<A: DeserializeOwned, R: DeserializeOwned>() -> u64 {
    fn shape<T: DeserializeOwned>() -> String {
        use serde_reflection::{Tracer, TracerConfig};
        let mut tracer = Tracer::new(TracerConfig::default());
        let traced = tracer.trace_simple_type::<T>();
        match (traced, tracer.registry()) {
            (Ok((format, _)), Ok(registry)) => {
                serde_json::to_string(&(format, registry)).unwrap_or_default()
            }
            _ => std::any::type_name::<T>().to_owned(),
        }
    }
    let text = format!("{}\n{}", shape::<A>(), shape::<R>());
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The names and schema hashes of one service's actions and events, as a node serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServiceSchemas {
    pub(crate) service: String,
    pub(crate) actions: Vec<(String, u64)>,
    pub(crate) events: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_schema_changes_with_the_shape_of_its_types_only() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Translate {
            text: String,
            to: String,
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Renamed {
            text: String,
            to: String,
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Widened {
            text: String,
            to: String,
            pages: u32,
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Reply {
            Done(String),
            Skipped,
        }
        let base = schema_of::<Translate, String>();
        assert_eq!(base, schema_of::<Translate, String>());
        assert_ne!(base, schema_of::<Widened, String>());
        assert_ne!(base, schema_of::<Translate, u64>());
        assert_ne!(schema_of::<Translate, Reply>(), base);
        // The shape names the type: a renamed type is another contract.
        assert_ne!(base, schema_of::<Renamed, String>());
    }
}
