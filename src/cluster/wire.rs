//! What crosses between nodes: one request envelope in, one reply out, both bincode.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::action::CallOptions;
pub(crate) use crate::codec::typed::ServiceSchemas;
use crate::codec::{Bincode, Codec, DecodeError, Format};
use crate::service::{Command, Health};

/// A request from one node to another's gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Calls an action by name; the reply comes back in `format`. A typed caller sends the
    /// hash of its action's schema, which the serving node compares with its own.
    Act {
        service: String,
        action: String,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
        schema: Option<u64>,
    },
    /// Enqueues a durable action by name with JSON `params`; answered with the job's id and
    /// whether it is new (`(u128, bool)`) once the serving node's store has committed it.
    Enqueue {
        service: String,
        action: String,
        params: Vec<u8>,
        key: Option<String>,
        /// Not before this long after the commit.
        delay: Option<std::time::Duration>,
        /// Not before this time.
        at: Option<std::time::SystemTime>,
        options: CallOptions,
    },
    /// Waits for a job this node committed to end; answered with its reply as JSON.
    WaitJob { service: String, id: u128 },
    /// Runs a command and answers once it has run.
    Command {
        service: String,
        command: WireCommand,
        options: CallOptions,
    },
    /// Sends a command without waiting (no reply is read).
    Tell {
        service: String,
        command: WireCommand,
    },
    /// Pauses or resumes a schedule.
    Pause { service: String, paused: bool },
    /// The service's status, health or info.
    Query { service: String, query: Query },
    /// Asks the serving node to forward the service's events called `event` (`*`: every event)
    /// to `node`, in `formats`. Each hash in `schemas` is of a payload type a subscriber on
    /// `node` decodes the event into; the serving node compares them with its own.
    Subscribe {
        service: String,
        event: String,
        node: String,
        formats: Formats,
        schemas: Vec<u64>,
    },
    /// Nobody on `node` takes the service's events called `event` any more.
    Unsubscribe {
        service: String,
        event: String,
        node: String,
    },
    /// The schema hashes of every action and event of every service the node serves.
    Catalog,
}

/// The encodings of an event a subscriber node needs: bincode for its typed subscribers, JSON
/// for those that know the event by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Formats {
    pub(crate) bincode: bool,
    pub(crate) json: bool,
}

impl Formats {
    pub(crate) fn union(self, other: Formats) -> Formats {
        Formats {
            bincode: self.bincode || other.bincode,
            json: self.json || other.json,
        }
    }
}

/// Events forwarded from the node that emitted them, in the order its bus fanned them out.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireEvents {
    /// The emitting node (first, as in every message: see [`sender`]).
    pub(crate) node: String,
    /// The (service, event) names the events refer to, each once per batch.
    pub(crate) names: Vec<(String, String)>,
    pub(crate) events: Vec<WireEvent>,
}

/// One forwarded event, encoded once on its node in every format some subscriber node asked
/// for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    /// Its service's and its own name: an index into [`WireEvents::names`].
    pub(crate) name: u32,
    pub(crate) correlation_id: Option<String>,
    pub(crate) at: std::time::SystemTime,
    pub(crate) bincode: Option<Vec<u8>>,
    pub(crate) json: Option<Vec<u8>>,
}

/// A [`Command`] as it crosses: [`Command`]'s own serde form is internally tagged (for JSON),
/// which a format that does not describe itself, like bincode, cannot decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireCommand {
    TriggerNow,
    ProcessBatch {
        size: Option<usize>,
        filter: Option<String>,
    },
    CheckQueue,
    Custom {
        name: String,
        args: Option<String>,
    },
}

impl From<Command> for WireCommand {
    fn from(command: Command) -> Self {
        match command {
            Command::TriggerNow => WireCommand::TriggerNow,
            Command::ProcessBatch { size, filter } => WireCommand::ProcessBatch { size, filter },
            Command::CheckQueue => WireCommand::CheckQueue,
            Command::Custom { name, args } => WireCommand::Custom { name, args },
        }
    }
}

impl From<WireCommand> for Command {
    fn from(command: WireCommand) -> Self {
        match command {
            WireCommand::TriggerNow => Command::TriggerNow,
            WireCommand::ProcessBatch { size, filter } => Command::ProcessBatch { size, filter },
            WireCommand::CheckQueue => Command::CheckQueue,
            WireCommand::Custom { name, args } => Command::Custom { name, args },
        }
    }
}

/// A [`Health`] as it crosses: its serde form is adjacently tagged (for JSON), which bincode
/// cannot decode either.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireHealth {
    Healthy,
    Degraded(String),
    Unhealthy(String),
}

impl From<Health> for WireHealth {
    fn from(health: Health) -> Self {
        match health {
            Health::Healthy => WireHealth::Healthy,
            Health::Degraded(reason) => WireHealth::Degraded(reason),
            Health::Unhealthy(reason) => WireHealth::Unhealthy(reason),
        }
    }
}

impl From<WireHealth> for Health {
    fn from(health: WireHealth) -> Self {
        match health {
            WireHealth::Healthy => Health::Healthy,
            WireHealth::Degraded(reason) => Health::Degraded(reason),
            WireHealth::Unhealthy(reason) => Health::Unhealthy(reason),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Query {
    Status,
    Health,
    Info,
}

impl Request {
    /// What the request does, for an error about it: the action's or the command's name.
    pub(crate) fn label(&self) -> String {
        match self {
            Request::Act { action, .. } | Request::Enqueue { action, .. } => action.clone(),
            Request::WaitJob { id, .. } => format!("job {}", crate::store::JobId(*id)),
            Request::Command { command, .. } | Request::Tell { command, .. } => {
                Command::from(command.clone()).name().to_owned()
            }
            Request::Pause { paused: true, .. } => "pause".into(),
            Request::Pause { paused: false, .. } => "resume".into(),
            Request::Query { query, .. } => format!("{query:?}").to_lowercase(),
            Request::Subscribe { event, .. } | Request::Unsubscribe { event, .. } => event.clone(),
            Request::Catalog => "catalog".into(),
        }
    }

    pub(crate) fn service(&self) -> &str {
        match self {
            Request::Act { service, .. }
            | Request::Enqueue { service, .. }
            | Request::WaitJob { service, .. }
            | Request::Command { service, .. }
            | Request::Tell { service, .. }
            | Request::Pause { service, .. }
            | Request::Query { service, .. }
            | Request::Subscribe { service, .. }
            | Request::Unsubscribe { service, .. } => service,
            // Of the node, not of one service.
            Request::Catalog => "",
        }
    }
}

/// What a gateway answers: the reply's bytes, or the error a local caller would have had.
pub(crate) type Reply = Result<Vec<u8>, Error>;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // The envelopes are plain data (strings, numbers, byte vectors): bincode cannot fail on them.
    Bincode::encode(value).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    Bincode::decode(bytes)
}

/// A request as it crosses: the name of the node that sends it, then the request.
pub(crate) fn encode_request(from: &str, request: &Request) -> Vec<u8> {
    encode(&(from, request))
}

/// Refuses bytes longer than `limit`, the largest message a node takes from another: sent,
/// they would close the link (and fail every call on it) rather than this one message.
pub(crate) fn fits(bytes: Vec<u8>, limit: usize) -> Result<Vec<u8>, usize> {
    if bytes.len() <= limit {
        Ok(bytes)
    } else {
        Err(bytes.len())
    }
}

/// A request and the node that sent it.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<(String, Request), DecodeError> {
    decode(bytes)
}

/// The node a message names as its sender, when its first field reads as one: every message
/// between nodes begins with it. Only for saying who sent what could not be decoded; it is
/// what the message claims, not proof.
pub(crate) fn sender(bytes: &[u8]) -> Option<String> {
    let (name, _) = Bincode::decode_prefix::<String>(bytes).ok()?;
    let plausible =
        !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_graphic());
    plausible.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_crosses_whole() {
        let err = Error::UnknownAction {
            service: "Translator".into(),
            action: "summarize".into(),
        };
        let reply: Reply = Err(err);
        let back: Reply = decode(&encode(&reply)).unwrap();
        match back {
            Err(Error::UnknownAction { service, action }) => {
                assert_eq!(
                    (service.as_str(), action.as_str()),
                    ("Translator", "summarize")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_answers_of_queries_cross() {
        for health in [
            Health::Healthy,
            Health::degraded("slow disk"),
            Health::unhealthy("no database"),
        ] {
            let back: WireHealth = decode(&encode(&WireHealth::from(health.clone()))).unwrap();
            assert_eq!(Health::from(back), health);
        }
        // Its own serde form would not decode: the reason for the mirror.
        assert!(decode::<Health>(&encode(&Health::Healthy)).is_err());
    }

    #[test]
    fn every_command_crosses() {
        for command in [
            Command::TriggerNow,
            Command::CheckQueue,
            Command::ProcessBatch {
                size: Some(10),
                filter: Some("pending".into()),
            },
            Command::custom_with("reindex", &[1, 2]),
        ] {
            let request = Request::Tell {
                service: "Batcher".into(),
                command: command.clone().into(),
            };
            let Request::Tell { command: back, .. } = decode(&encode(&request)).unwrap() else {
                panic!("not a tell")
            };
            assert_eq!(Command::from(back), command);
        }
    }

    #[test]
    fn a_request_round_trips_with_its_options() {
        let request = Request::Act {
            service: "Translator".into(),
            action: "translate".into(),
            format: Format::Bincode,
            params: vec![1, 2, 3],
            schema: Some(7),
            options: CallOptions {
                priority: 7,
                timeout: Some(std::time::Duration::from_millis(1500)),
                correlation_id: Some("upload-42".into()),
            },
        };
        let (from, back) = decode_request(&encode_request("alpha@h", &request)).unwrap();
        assert_eq!(from, "alpha@h");
        let Request::Act {
            options, params, ..
        } = back
        else {
            panic!("{back:?}")
        };
        assert_eq!(params, [1, 2, 3]);
        assert_eq!(options.priority, 7);
        assert_eq!(options.correlation_id.as_deref(), Some("upload-42"));
        assert!(decode::<Request>(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn the_sender_of_a_message_is_read_from_its_first_field() {
        let request = encode_request("beta@10.0.0.2", &Request::Catalog);
        assert_eq!(sender(&request).as_deref(), Some("beta@10.0.0.2"));
        // Even when the rest does not decode.
        let mut broken = request.clone();
        broken.extend_from_slice(&[0xfd; 12]);
        assert!(decode_request(&broken).is_err());
        assert_eq!(sender(&broken).as_deref(), Some("beta@10.0.0.2"));
        // A first field that is no name names no one.
        assert_eq!(sender(&[0xfd, 0, 0, 0, 0, 0, 1, 0, 0]), None);
        assert_eq!(sender(&encode(&("bad\nname", 1))), None);
        assert_eq!(sender(&[]), None);
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;

        fn requests() -> Vec<Vec<u8>> {
            let act = Request::Act {
                service: "Translator".into(),
                action: "translate".into(),
                format: Format::Bincode,
                params: vec![1, 2, 3, 4],
                schema: Some(7),
                options: CallOptions {
                    priority: 3,
                    timeout: Some(std::time::Duration::from_secs(2)),
                    correlation_id: Some("upload-42".into()),
                },
            };
            let subscribe = Request::Subscribe {
                service: "Translator".into(),
                event: "done".into(),
                node: "beta@h".into(),
                formats: Formats {
                    bincode: true,
                    json: false,
                },
                schemas: vec![1, 2],
            };
            [act, subscribe, Request::Catalog]
                .iter()
                .map(|r| encode_request("alpha@h", r))
                .collect()
        }

        fn events() -> Vec<u8> {
            encode(&WireEvents {
                node: "alpha@h".into(),
                names: vec![("Translator".into(), "done".into())],
                events: vec![WireEvent {
                    name: 0,
                    correlation_id: Some("c".into()),
                    at: std::time::SystemTime::UNIX_EPOCH,
                    bincode: Some(vec![9; 16]),
                    json: None,
                }],
            })
        }

        /// A message as an attacker would shape it: a well-formed one cut short or with bytes
        /// changed, one with a length prefix spliced in, or bytes at random.
        fn hostile(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
            let valid = proptest::sample::select(valid);
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..256),
                (valid.clone(), any::<prop::sample::Index>())
                    .prop_map(|(v, at)| v[..at.index(v.len() + 1)].to_vec()),
                (valid.clone(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
                    |(mut v, at, b)| {
                        let at = at.index(v.len());
                        v[at] = b;
                        v
                    }
                ),
                (valid, any::<prop::sample::Index>(), any::<u64>()).prop_map(|(v, at, len)| {
                    let at = at.index(v.len() + 1);
                    let mut bomb = v[..at].to_vec();
                    bomb.push(0xfd);
                    bomb.extend_from_slice(&len.to_le_bytes());
                    bomb.extend_from_slice(&v[at..]);
                    bomb
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever a peer sends as a request, decoding it ends: a request, or an error.
            #[test]
            fn any_request_bytes_decode_or_are_refused(bytes in hostile(requests())) {
                let _ = decode_request(&bytes);
                let _ = sender(&bytes);
            }

            /// The same for a batch of events, and for a reply.
            #[test]
            fn any_events_or_reply_bytes_decode_or_are_refused(bytes in hostile(vec![events()])) {
                let _ = decode::<WireEvents>(&bytes);
                let _ = decode::<Reply>(&bytes);
                let _ = decode::<Vec<ServiceSchemas>>(&bytes);
            }

            /// A length that asks for more than the limit is refused, wherever it stands.
            #[test]
            fn a_length_past_the_limit_is_refused(
                valid in proptest::sample::select(requests()[..2].to_vec()),
                len in (crate::codec::DECODE_LIMIT as u64 + 1)..=u64::MAX,
            ) {
                // In the place of the service's name, the first string after the variant.
                let sender_len = Bincode::encode("alpha@h").unwrap().len();
                let mut bomb = valid[..sender_len + 1].to_vec();
                bomb.push(0xfd);
                bomb.extend_from_slice(&len.to_le_bytes());
                let err = decode_request(&bomb).unwrap_err();
                prop_assert!(err.message.contains("limit"), "{}", err);
            }
        }
    }
}
