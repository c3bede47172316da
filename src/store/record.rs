//! What the store writes: each value a versioned envelope around bincode, decoded within the
//! codec's limit, so that a damaged or hostile file cannot make the decoder allocate without
//! bound, and a record of another version is refused by name rather than misread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{AttemptError, Claim, Job, JobId, JobState, NewJob};
use crate::codec::{Bincode, Codec};

/// The version of the records this build writes and reads. A change to [`Stored`] that an
/// older build could not read takes a new number, and a reader of the old one.
pub(super) const RECORD_FORMAT: u8 = 1;

/// A job as the store keeps it: times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) id: u128,
    pub(super) service: String,
    pub(super) action: String,
    pub(super) params: Vec<u8>,
    pub(super) priority: i32,
    pub(super) correlation_id: Option<String>,
    pub(super) key: Option<String>,
    pub(super) state: StoredState,
    pub(super) max_attempts: u32,
    pub(super) timeout_ms: Option<u64>,
    /// Attempts made (claims counted).
    pub(super) attempts: u32,
    pub(super) interruptions: u32,
    pub(super) claim: Option<(String, u64)>,
    pub(super) errors: Vec<(u32, u64, String)>,
    pub(super) reply: Option<Vec<u8>>,
    pub(super) created_ms: u64,
    pub(super) finished_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum StoredState {
    Queued,
    Scheduled(u64),
    Running,
    Retrying(u64),
    Completed,
    Dead,
}

pub(super) fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Stored {
    pub(super) fn new(job: NewJob, now: SystemTime) -> Self {
        Stored {
            id: job.id.0,
            service: job.service,
            action: job.action,
            params: job.params,
            priority: job.priority,
            correlation_id: job.correlation_id,
            key: job.key,
            state: StoredState::Queued,
            max_attempts: job.max_attempts.max(1),
            timeout_ms: job
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            attempts: 0,
            interruptions: 0,
            claim: None,
            errors: Vec::new(),
            reply: None,
            created_ms: ms(now),
            finished_ms: None,
        }
    }

    /// Takes the job for `claim`: one more attempt.
    pub(super) fn claimed(&mut self, claim: &Claim) {
        self.attempts += 1;
        self.state = StoredState::Running;
        self.claim = Some((claim.owner.clone(), ms(claim.until)));
    }

    /// The view the store's callers get.
    pub(super) fn job(&self) -> Job {
        let state = match self.state {
            StoredState::Queued => JobState::Queued,
            StoredState::Scheduled(at) => JobState::Scheduled { at: time(at) },
            StoredState::Running => JobState::Running {
                attempt: self.attempts,
            },
            StoredState::Retrying(at) => JobState::Retrying {
                at: time(at),
                attempts: self.attempts,
            },
            StoredState::Completed => JobState::Completed,
            StoredState::Dead => JobState::Dead,
        };
        Job {
            id: JobId(self.id),
            service: self.service.clone(),
            action: self.action.clone(),
            params: self.params.clone(),
            priority: self.priority,
            correlation_id: self.correlation_id.clone(),
            key: self.key.clone(),
            state,
            max_attempts: self.max_attempts,
            timeout: self.timeout_ms.map(Duration::from_millis),
            interruptions: self.interruptions,
            claim: self.claim.as_ref().map(|(owner, until)| Claim {
                owner: owner.clone(),
                until: time(*until),
            }),
            errors: self
                .errors
                .iter()
                .map(|(attempt, at, error)| AttemptError {
                    attempt: *attempt,
                    at: time(*at),
                    error: error.clone(),
                })
                .collect(),
            reply: self.reply.clone(),
            created: time(self.created_ms),
            finished: self.finished_ms.map(time),
        }
    }

    /// The envelope: the format's number, then the record's bincode.
    pub(super) fn encode(&self) -> Result<Vec<u8>, String> {
        envelope(self)
    }

    /// Reads an envelope, within the codec's limit.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, String> {
        open_envelope(bytes)
    }
}

/// A record in its envelope: the format's number, then its bincode.
pub(super) fn envelope<T: Serialize>(record: &T) -> Result<Vec<u8>, String> {
    let body = Bincode::encode(record)?;
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(RECORD_FORMAT);
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// A record out of its envelope, decoded within the codec's limit.
pub(super) fn open_envelope<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, body)) => Bincode::decode(body).map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!(
            "a record of format {other}, and this build reads format {RECORD_FORMAT}"
        )),
        None => Err("an empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        let job = NewJob::new("mailer", "send", vec![1, 2, 3]).key("k");
        Stored::new(job, UNIX_EPOCH + Duration::from_secs(10))
    }

    #[test]
    fn a_record_round_trips_in_its_envelope() {
        let record = stored();
        let bytes = record.encode().unwrap();
        assert_eq!(bytes[0], RECORD_FORMAT);
        assert_eq!(Stored::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn damaged_and_foreign_records_are_refused() {
        let bytes = stored().encode().unwrap();
        assert!(Stored::decode(&[]).unwrap_err().contains("empty"));
        let mut foreign = bytes.clone();
        foreign[0] = 9;
        assert!(Stored::decode(&foreign).unwrap_err().contains("format 9"));
        for cut in 1..bytes.len() {
            assert!(Stored::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A length prefix that asks for 2^40 bytes: refused before anything is allocated.
        let mut bomb = vec![RECORD_FORMAT, 0];
        bomb.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(Stored::decode(&bomb).unwrap_err().contains("limit"));
    }
}
