//! The shape of the configuration file: every key Sora reads, all optional, unknown keys refused.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::Value;
use serde::Deserialize;

use super::Environment;
use crate::service::restart::{RestartPolicy, Strategy};

/// The whole file (and the `SORA__` environment variables, which share its keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) enabled: Option<bool>,
    pub(crate) environment: Option<Environment>,
    #[serde(default, with = "duration")]
    pub(crate) startup_timeout: Option<Duration>,
    pub(crate) fail_fast: Option<bool>,
    #[serde(default, with = "duration")]
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) strategy: Option<Strategy>,
    #[serde(default)]
    pub(crate) services: BTreeMap<String, ServiceFile>,
    pub(crate) http: Option<HttpFile>,
    pub(crate) cluster: Option<ClusterFile>,
    pub(crate) store: Option<StoreFile>,
    pub(crate) history: Option<HistoryFile>,
}

/// `[history]`: how many runs each service keeps, and for how long.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryFile {
    pub(crate) runs: Option<usize>,
    #[serde(default, with = "duration")]
    pub(crate) keep: Option<Duration>,
}

/// `[store]`: where durable jobs are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreFile {
    /// The store's file; created on first start.
    pub(crate) path: Option<std::path::PathBuf>,
    /// How long a completed job is kept (and its idempotency key honoured).
    #[serde(default, with = "duration")]
    pub(crate) keep_completed: Option<Duration>,
    /// How long a dead job is kept in the dead letters.
    #[serde(default, with = "duration")]
    pub(crate) keep_dead: Option<Duration>,
}

/// `[cluster]`: the runtime joins a cluster when the table is present.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct ClusterFile {
    pub(crate) node: Option<String>,
    pub(crate) secret: Option<Secret>,
    pub(crate) listen: Option<std::net::SocketAddr>,
    pub(crate) seeds: Option<Vec<String>>,
    pub(crate) name: Option<String>,
    #[serde(default, with = "duration")]
    pub(crate) reconnect_min: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) reconnect_max: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) max_pending_connections: Option<usize>,
    pub(crate) max_message_size: Option<usize>,
}

/// `[http]`: the control plane, served when the table is present.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct HttpFile {
    pub(crate) address: Option<std::net::SocketAddr>,
    pub(crate) token: Option<Secret>,
    pub(crate) read_token: Option<Secret>,
    pub(crate) body_limit: Option<usize>,
    pub(crate) open_probes: Option<bool>,
    #[serde(default, with = "duration")]
    pub(crate) header_timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) body_timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) cors_origins: Option<Vec<String>>,
}

/// A value that is never shown in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// One `[services.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceFile {
    pub(crate) enabled: Option<bool>,
    pub(crate) run_in: Option<Vec<Environment>>,
    pub(crate) priority: Option<i32>,
    pub(crate) critical: Option<bool>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) queue_limit: Option<usize>,
    #[serde(default, with = "duration")]
    pub(crate) interval: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) initial_delay: Option<Duration>,
    pub(crate) run_on_start: Option<bool>,
    pub(crate) startup_order: Option<i32>,
    pub(crate) continue_on_failure: Option<bool>,
    #[serde(default, with = "duration")]
    pub(crate) start_timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) stop_timeout: Option<Duration>,
    pub(crate) restart: Option<RestartFile>,
    /// Read into the service's own type, which is known only to the service.
    pub(crate) settings: Option<Value>,
}

/// `[services.NAME.restart]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestartFile {
    pub(crate) policy: Option<RestartPolicy>,
    pub(crate) max_restarts: Option<u32>,
    #[serde(default, with = "duration")]
    pub(crate) within: Option<Duration>,
    pub(crate) backoff: Option<BackoffFile>,
}

/// `[services.NAME.restart.backoff]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackoffFile {
    #[serde(default, with = "duration")]
    pub(crate) initial: Option<Duration>,
    #[serde(default, with = "duration")]
    pub(crate) max: Option<Duration>,
    pub(crate) factor: Option<f64>,
    pub(crate) jitter: Option<f64>,
    #[serde(default, with = "duration")]
    pub(crate) reset_after: Option<Duration>,
}

/// Human durations (`90s`, `5m`, `1h30m`, `250ms`), read with `humantime`.
pub(crate) mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::Deserializer;
    use serde::de::{self, Visitor};

    pub(crate) const EXPECTED: &str = "a duration such as \"90s\", \"5m\" or \"1h30m\"";

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(Human).map(Some)
    }

    struct Human;

    impl Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim())
                .map_err(|e| E::custom(format_args!("expected {EXPECTED}, found \"{text}\" ({e})")))
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    fn parse(text: &str) -> Result<FileConfig, Box<figment::Error>> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn human_durations_read_as_durations() {
        let cfg = parse(
            "shutdown_timeout = \"1h30m\"\n[services.a]\ninterval = \"90s\"\ninitial_delay = \"250ms\"",
        )
        .unwrap();
        assert_eq!(cfg.shutdown_timeout, Some(Duration::from_secs(5400)));
        let a = &cfg.services["a"];
        assert_eq!(a.interval, Some(Duration::from_secs(90)));
        assert_eq!(a.initial_delay, Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_malformed_duration_says_what_was_expected() {
        let err = parse("[services.a]\ninterval = \"5 minutes please\"").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("expected a duration such as"), "{text}");
        assert!(text.contains("5 minutes please"), "{text}");
        let err = parse("[services.a]\ninterval = 90").unwrap_err();
        assert!(
            err.to_string().contains("expected a duration such as"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("[services.a]\nintervall = \"5s\"").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field: found `intervall`"), "{text}");
        assert!(text.contains("`interval`"), "{text}");
        let err = parse("shutdown_timout = \"5s\"").unwrap_err();
        assert!(err.to_string().contains("found `shutdown_timout`"), "{err}");
    }
}
