use serde::{Deserialize, Serialize};

/// A command sent to a pokable service: a nudge to do its work now.
///
/// A service accepts only the commands it declares with
/// [`Definition::command`](crate::Definition::command); any other is refused with
/// [`Error::UnknownCommand`](crate::Error::UnknownCommand). A periodic service accepts
/// [`Command::TriggerNow`] without declaring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Command {
    /// Run now: on an idle periodic service, a tick runs at once; on a busy one, the triggers
    /// coalesce into one follow-up run.
    TriggerNow,
    /// Process a batch of work.
    ProcessBatch {
        /// How many items to take, if the caller says.
        size: Option<usize>,
        /// Which items to take, if the caller says.
        filter: Option<String>,
    },
    /// Look at the work queue now.
    CheckQueue,
    /// A command of the service's own.
    Custom {
        /// Its name, as declared.
        name: String,
        /// Its arguments as JSON text, if any.
        args: Option<String>,
    },
}

impl Command {
    /// The name of [`Command::TriggerNow`].
    pub const TRIGGER: &'static str = "trigger";
    /// The name of [`Command::ProcessBatch`].
    pub const PROCESS_BATCH: &'static str = "process-batch";
    /// The name of [`Command::CheckQueue`].
    pub const CHECK_QUEUE: &'static str = "check-queue";

    /// A custom command without arguments.
    pub fn custom(name: impl Into<String>) -> Self {
        Command::Custom {
            name: name.into(),
            args: None,
        }
    }

    /// A custom command with arguments, serialized as JSON.
    ///
    /// # Panics
    ///
    /// Panics if `args` cannot be serialized to JSON (a map with non-string keys, for example).
    #[track_caller]
    pub fn custom_with<T: Serialize>(name: impl Into<String>, args: &T) -> Self {
        Command::Custom {
            name: name.into(),
            args: Some(serde_json::to_string(args).expect("command arguments serialize to JSON")),
        }
    }

    /// The command's name, owned only for custom commands: built-in names are static, so a
    /// command's span and errors cost no allocation.
    pub(crate) fn label(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Command::TriggerNow => Self::TRIGGER.into(),
            Command::ProcessBatch { .. } => Self::PROCESS_BATCH.into(),
            Command::CheckQueue => Self::CHECK_QUEUE.into(),
            Command::Custom { name, .. } => name.clone().into(),
        }
    }

    /// The command's name: `trigger`, `process-batch`, `check-queue`, or the custom name.
    pub fn name(&self) -> &str {
        match self {
            Command::TriggerNow => Self::TRIGGER,
            Command::ProcessBatch { .. } => Self::PROCESS_BATCH,
            Command::CheckQueue => Self::CHECK_QUEUE,
            Command::Custom { name, .. } => name,
        }
    }
}
