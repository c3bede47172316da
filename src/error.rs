//! The one error type that every Sora call returns.
//!
//! Each variant is a case a caller can act on: retry later, fix the request, give up. Display text
//! is short and lowercase; [`Error::code`] gives a stable machine-readable code for the HTTP plane
//! and the CLI.

use std::sync::Arc;
use std::time::Duration;

/// A boxed error from user code: what service hooks and action handlers return on failure.
///
/// Any error type converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a call into the runtime.
///
/// The enum is `#[non_exhaustive]`: later versions may add cases.
///
/// It is serializable so that it crosses nodes whole: a remote service answers with the same
/// error a local one would (the `source` of [`Error::ActionFailed`] stays on the node that
/// raised it).
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// No service of that name or type is registered in this runtime.
    #[error("unknown service `{name}`")]
    UnknownService {
        /// The name (or type name) that was looked up.
        name: String,
    },
    /// The service does not declare an action of that name.
    #[error("service `{service}` has no action `{action}`")]
    UnknownAction {
        /// The service that was called.
        service: String,
        /// The action name that it does not know.
        action: String,
    },
    /// The service does not emit an event of that name.
    #[error("service `{service}` does not emit `{event}` (it emits: {})", emits.join(", "))]
    UnknownEvent {
        /// The service that was asked.
        service: String,
        /// The event name it does not emit.
        event: String,
        /// The events it does emit.
        emits: Vec<String>,
    },
    /// The service does not accept that command.
    #[error("service `{service}` does not accept the command `{command}`")]
    UnknownCommand {
        /// The service that was called.
        service: String,
        /// The command name that it does not accept.
        command: String,
    },
    /// The parameters of a call by name could not be decoded into the action's type.
    #[error("bad parameters for `{service}.{action}`: {message}")]
    BadParameters {
        /// The service that was called.
        service: String,
        /// The action whose parameters were bad.
        action: String,
        /// The path of the offending field (`options.to`), when it is known.
        field: Option<String>,
        /// What the decoder said.
        message: String,
    },
    /// The call did not complete within its timeout; the handler was cancelled.
    #[error("`{service}.{action}` timed out after {after:?}")]
    Timeout {
        /// The service that was called.
        service: String,
        /// The action or command that timed out.
        action: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The handler ran and returned an error.
    #[error("`{service}.{action}` failed: {message}")]
    ActionFailed {
        /// The service that was called.
        service: String,
        /// The action or command that failed.
        action: String,
        /// The handler's error, rendered.
        message: String,
        /// The handler's error itself, when it was raised in this process.
        #[source]
        #[serde(skip)]
        source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The service crashed (a panic or a failed hook) while it held or queued the call.
    #[error("service `{service}` failed: {reason}")]
    ServiceFailed {
        /// The service that failed.
        service: String,
        /// Why it failed.
        reason: String,
    },
    /// The service exists but cannot take calls now (it is restarting, or it has stopped).
    #[error("service `{service}` is unavailable: {reason}")]
    ServiceUnavailable {
        /// The service that was called.
        service: String,
        /// Why it cannot take the call.
        reason: String,
    },
    /// The service is disabled in this runtime.
    #[error("service `{service}` is disabled")]
    ServiceDisabled {
        /// The disabled service.
        service: String,
    },
    /// The service's queue holds as many calls as its limit allows
    /// ([`Definition::queue_limit`](crate::Definition::queue_limit)): the call was refused
    /// at once, whatever its priority. Retry later.
    #[error("service `{service}` is overloaded: {limit} calls already wait for it")]
    Overloaded {
        /// The service that was called.
        service: String,
        /// Its queue limit.
        limit: usize,
    },
    /// The runtime is shutting down and takes no new work.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// A start-up service failed and the runtime did not start.
    #[error("start-up of `{service}` failed: {reason}")]
    StartupFailed {
        /// The service whose start-up failed.
        service: String,
        /// Why it failed.
        reason: String,
    },
    /// A critical service exceeded its restart intensity and stopped the runtime.
    #[error("critical service `{service}` could not be kept up: {reason}")]
    CriticalFailure {
        /// The critical service.
        service: String,
        /// Its last failure.
        reason: String,
    },
    /// The configuration is invalid, so the runtime did not start (nothing was started).
    #[error("bad configuration at `{key}` ({origin}): {message}")]
    Config {
        /// Where the bad value came from: the file's path, the environment variable's name, or
        /// `no file or variable sets it` for a value that is missing.
        origin: String,
        /// The key, dotted from the top of the file (`services.cleanup.interval`).
        key: String,
        /// What was wrong, and what was expected.
        message: String,
    },
    /// Two nodes of a cluster could not understand each other: a message could not be decoded,
    /// or an action's schema differs between the caller and the node that serves it.
    #[error("incompatible with node `{node}`: {reason}")]
    Incompatible {
        /// The other node.
        node: String,
        /// What did not match.
        reason: String,
    },
    /// The store of durable work failed: it could not be opened (its file is not a store, is
    /// of another version, or is open elsewhere), a change could not be committed, or a change
    /// was refused (a job too large, an unknown job).
    #[error("store `{path}`: {message}")]
    Store {
        /// The store's file, or `memory`.
        path: String,
        /// What failed.
        message: String,
    },
    /// No job of that id is kept in the store (it never was, or it was discarded).
    #[error("unknown job `{id}`")]
    UnknownJob {
        /// The id that was looked up.
        id: String,
    },
    /// The job is not in a state that allows what was asked: only a dead job can be retried,
    /// and a running one cannot be discarded.
    #[error("job `{id}` is {state}: {reason}")]
    JobConflict {
        /// The job.
        id: String,
        /// The state it is in.
        state: String,
        /// What cannot be done in it.
        reason: String,
    },
    /// The action is not durable, so it cannot be enqueued as a job: declare it with
    /// [`Definition::durable`](crate::Definition::durable).
    #[error("`{service}.{action}` is not a durable action")]
    NotDurable {
        /// The service that was called.
        service: String,
        /// The action that is not durable.
        action: String,
    },
    /// The service keeps no state: declare it with
    /// [`Definition::state`](crate::Definition::state).
    #[error("service `{service}` keeps no state: declare it with `def.state()`")]
    NoState {
        /// The service whose state was asked for.
        service: String,
    },
    /// A value of a service's state could not be kept or read as asked: its key or value is
    /// past its limit, it does not encode to JSON, or what is stored does not decode into the
    /// type asked for. Nothing was written.
    #[error("state `{key}` of `{service}`: {message}")]
    BadState {
        /// The service.
        service: String,
        /// The key, cut to its first 64 characters.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value could not be encoded for the wire or for a by-name caller.
    #[error("could not encode the reply of `{service}.{action}`: {message}")]
    Encode {
        /// The service that was called.
        service: String,
        /// The action whose reply could not be encoded.
        action: String,
        /// What the encoder said.
        message: String,
    },
}

impl Error {
    /// A stable, machine-readable code for this error (`unknown_service`, `timeout`, ...).
    ///
    /// The HTTP plane and the CLI report it; it never changes between versions.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = sora::Error::ShuttingDown;
    /// assert_eq!(err.code(), "shutting_down");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownService { .. } => "unknown_service",
            Error::UnknownAction { .. } => "unknown_action",
            Error::UnknownCommand { .. } => "unknown_command",
            Error::UnknownEvent { .. } => "unknown_event",
            Error::BadParameters { .. } => "bad_parameters",
            Error::Timeout { .. } => "timeout",
            Error::ActionFailed { .. } => "action_failed",
            Error::ServiceFailed { .. } => "service_failed",
            Error::ServiceUnavailable { .. } => "service_unavailable",
            Error::ServiceDisabled { .. } => "service_disabled",
            Error::Overloaded { .. } => "overloaded",
            Error::ShuttingDown => "shutting_down",
            Error::StartupFailed { .. } => "startup_failed",
            Error::CriticalFailure { .. } => "critical_failure",
            Error::Encode { .. } => "encode",
            Error::Incompatible { .. } => "incompatible",
            Error::Config { .. } => "bad_config",
            Error::Store { .. } => "store",
            Error::UnknownJob { .. } => "unknown_job",
            Error::JobConflict { .. } => "job_conflict",
            Error::NotDurable { .. } => "not_durable",
            Error::NoState { .. } => "no_state",
            Error::BadState { .. } => "bad_state",
        }
    }

    pub(crate) fn action_failed(service: &str, action: &str, err: BoxError) -> Self {
        Error::ActionFailed {
            service: service.to_owned(),
            action: action.to_owned(),
            message: err.to_string(),
            source: Some(Arc::from(err)),
        }
    }
}
