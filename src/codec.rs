//! The codec seam: how typed values become bytes and back.
//!
//! In-process calls never serialize. Callers by name (the HTTP plane, the CLI) send JSON, and
//! nodes of a cluster send bincode. Both go through [`Codec`], so a format can be swapped in one
//! place. [`Format`] names the formats a service's action table knows.
//!
//! # Limits
//!
//! Bytes that arrive from outside are untrusted, so no decoder here allocates what a length
//! prefix asks for without a bound. [`Bincode`] refuses a message longer than [`DECODE_LIMIT`]
//! and a string or byte string whose length, added to those read before it, goes past that
//! limit; it refuses them before it allocates anything for them. A sequence reserves at most
//! about a mebibyte ahead of the elements it has actually read. [`Json`] reads only what its
//! input holds: the input's own size (the HTTP plane's body limit) bounds it.

#[cfg(feature = "cluster")]
pub(crate) mod typed;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A serialization format for parameters and replies.
pub trait Codec {
    /// The format this codec implements.
    const FORMAT: Format;

    /// Encodes a value.
    ///
    /// # Errors
    ///
    /// Returns a message when the value cannot be represented in this format.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String>;

    /// Decodes a value.
    ///
    /// # Errors
    ///
    /// Returns a [`DecodeError`] that names the offending field where the format allows it.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError>;
}

/// The formats Sora speaks at its edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON, for HTTP and the CLI.
    Json,
    /// bincode 2 (serde), between nodes.
    Bincode,
}

/// Why bytes could not be decoded into a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The path of the offending field (`options.to`, `items[2].id`), when the format knows it.
    pub field: Option<String>,
    /// What the decoder said.
    pub message: String,
}

/// JSON through `serde_json`, with field paths from `serde_path_to_error`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const FORMAT: Format = Format::Json;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            DecodeError {
                field: (path != ".").then_some(path),
                message: err.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| DecodeError {
            field: None,
            message: e.to_string(),
        })?;
        Ok(value)
    }
}

/// The most bytes that [`Bincode`] takes in one message, and the most that decoding one
/// message may set aside for the strings and byte strings it reads: 16 MiB, the largest frame
/// a node of a cluster accepts from another.
///
/// ```
/// use sora::codec::{Bincode, Codec, DECODE_LIMIT};
///
/// // A string that claims to be 2^40 bytes long, in four bytes: refused, nothing allocated.
/// let bomb = [0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
/// assert!(Bincode::decode::<String>(&bomb).unwrap_err().message.contains("limit"));
/// assert_eq!(DECODE_LIMIT, 16 * 1024 * 1024);
/// ```
pub const DECODE_LIMIT: usize = 16 * 1024 * 1024;

/// bincode 2 with its standard configuration, through serde; its decoder is bounded by
/// [`DECODE_LIMIT`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    const FORMAT: Format = Format::Bincode;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
        let (value, read) = Bincode::decode_prefix(bytes)?;
        if read != bytes.len() {
            return Err(DecodeError {
                field: None,
                message: format!("{} trailing bytes", bytes.len() - read),
            });
        }
        Ok(value)
    }
}

impl Bincode {
    /// Decodes a value from the start of `bytes`, and says how many bytes it took; within the
    /// same limits as [`Codec::decode`].
    pub(crate) fn decode_prefix<T: DeserializeOwned>(
        bytes: &[u8],
    ) -> Result<(T, usize), DecodeError> {
        if bytes.len() > DECODE_LIMIT {
            return Err(DecodeError {
                field: None,
                message: format!(
                    "{} bytes is more than the limit of {DECODE_LIMIT}",
                    bytes.len()
                ),
            });
        }
        let limited = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        bincode::serde::decode_from_slice(bytes, limited).map_err(|e| DecodeError {
            field: None,
            message: match e {
                bincode::error::DecodeError::LimitExceeded => format!(
                    "a length in the message asks for more than the limit of {DECODE_LIMIT} bytes"
                ),
                other => other.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Options {
        from: String,
        to: String,
        pages: u32,
    }

    #[test]
    fn json_names_the_bad_field() {
        let err = Json::decode::<Options>(br#"{"from":"en","to":"pt","pages":"x"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("pages"));
        let err = Json::decode::<Options>(br#"{"from":"en","pages":1}"#).unwrap_err();
        assert!(err.message.contains("missing field `to`"), "{err}");
    }

    #[test]
    fn bincode_round_trips() {
        let v = Options {
            from: "en".into(),
            to: "pt".into(),
            pages: 3,
        };
        let bytes = Bincode::encode(&v).unwrap();
        assert_eq!(Bincode::decode::<Options>(&bytes).unwrap(), v);
        assert!(Bincode::decode::<Options>(&bytes[..2]).is_err());
    }

    /// A varint length prefix: 0xfd then a u64, little-endian.
    fn long_length(len: u64) -> Vec<u8> {
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes
    }

    #[test]
    fn bincode_refuses_a_length_past_the_limit_before_allocating() {
        for len in [1 << 40, u64::MAX, DECODE_LIMIT as u64 + 1] {
            let err = Bincode::decode::<String>(&long_length(len)).unwrap_err();
            assert!(err.message.contains("limit"), "{len}: {err}");
            let err = Bincode::decode::<Options>(&long_length(len)).unwrap_err();
            assert!(err.message.contains("limit"), "{len}: {err}");
        }
        // Within the limit, but longer than the message: the message ends first.
        let err = Bincode::decode::<String>(&long_length(1 << 20)).unwrap_err();
        assert!(!err.message.contains("limit"), "{err}");
    }

    #[test]
    fn bincode_refuses_a_message_past_the_limit() {
        let err = Bincode::decode::<Vec<u8>>(&vec![0; DECODE_LIMIT + 1]).unwrap_err();
        assert!(err.message.contains("limit"), "{err}");
    }
}
