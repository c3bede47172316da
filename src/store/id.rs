//! Job ids: 128 bits, the creation time in milliseconds then 80 random bits, written as 26
//! characters of Crockford's base32 (the ULID layout), so that ids sort by creation and two
//! processes never coordinate to make one.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The id of a job: made by the caller, unique without coordination, sorted by creation.
///
/// ```
/// use std::time::SystemTime;
/// use sora::store::JobId;
///
/// let id = JobId::new(SystemTime::now());
/// let text = id.to_string();
/// assert_eq!(text.len(), 26);
/// assert_eq!(text.parse::<JobId>().unwrap(), id);
/// assert!("not-an-id".parse::<JobId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub(crate) u128);

/// Crockford's base32: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

const MASK_48: u128 = (1 << 48) - 1;
const MASK_80: u128 = (1 << 80) - 1;

impl JobId {
    /// A new id for a job created at `now`.
    pub fn new(now: SystemTime) -> Self {
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let random =
            (u128::from(fastrand::u64(..)) << 16 | u128::from(fastrand::u16(..))) & MASK_80;
        JobId((ms & MASK_48) << 80 | random)
    }

    /// When the id was made, to the millisecond.
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis((self.0 >> 80) as u64)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// A string that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id (26 characters of Crockford base32)")]
pub struct BadJobId(String);

impl FromStr for JobId {
    type Err = BadJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadJobId(s.chars().take(40).collect());
        if s.len() != 26 {
            return Err(bad());
        }
        let mut value: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let digit = match b.to_ascii_uppercase() {
                b'O' => 0,
                b'I' | b'L' => 1,
                c => ALPHABET.iter().position(|&a| a == c).ok_or_else(bad)? as u128,
            };
            // 26 digits hold 130 bits: the first may use only the lowest three.
            if i == 0 && digit > 7 {
                return Err(bad());
            }
            value = value << 5 | digit;
        }
        Ok(JobId(value))
    }
}

impl serde::Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_round_trip() {
        let early = JobId::new(UNIX_EPOCH + Duration::from_millis(1_000));
        let late = JobId::new(UNIX_EPOCH + Duration::from_millis(2_000));
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
        assert_eq!(early.created(), UNIX_EPOCH + Duration::from_millis(1_000));
        for id in [early, late, JobId(0), JobId(u128::MAX)] {
            assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
            assert_eq!(id.to_string().to_lowercase().parse::<JobId>().unwrap(), id);
        }
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "0",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000U",
            "é",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let err = long.parse::<JobId>().unwrap_err();
        assert!(
            err.to_string().len() < 100,
            "the error does not echo what it was given"
        );
    }
}
