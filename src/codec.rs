//! The codec seam: how typed values become bytes and back.
//!
//! In-process calls never serialize. Callers by name (the HTTP plane, the CLI) send JSON, and
//! nodes of a cluster send bincode. Both go through [`Codec`], so a format can be swapped in one
//! place. [`Format`] names the formats a service's action table knows.

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

/// bincode 2 with its standard configuration, through serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    const FORMAT: Format = Format::Bincode;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| DecodeError {
            field: None,
            message: e.to_string(),
        })?;
        if read != bytes.len() {
            return Err(DecodeError {
                field: None,
                message: format!("{} trailing bytes", bytes.len() - read),
            });
        }
        Ok(value)
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
}
