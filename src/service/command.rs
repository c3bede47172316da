use serde::{Deserialize, Serialize};

use crate::codec::{Codec, DecodeError, Json};

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

/// The arguments of [`Command::ProcessBatch`] as JSON: `{"batchSize": 100, "filter": "..."}`,
/// both optional.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchArgs {
    /// How many items to take.
    pub(crate) batch_size: Option<usize>,
    /// Which items to take.
    pub(crate) filter: Option<String>,
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

    /// The command called `name`, with `args`, the JSON text of its arguments: a built-in
    /// name gives the built-in command (`process-batch` reads `{"batchSize": 100, "filter":
    /// "..."}`, both optional; `trigger` and `check-queue` take none), any other name a custom
    /// command with `args` as they are. Every command is read so before it is sent, whatever
    /// path it came by: `Command::custom("process-batch")`, the CLI's or HTTP's
    /// `commands/process-batch` and another node's all run as [`Command::ProcessBatch`].
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the field when a built-in command's arguments are not its own
    /// (`{"batchSize": -5}`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sora::Command;
    ///
    /// let batch = Command::named("process-batch", Some(r#"{"batchSize": 50}"#.into())).unwrap();
    /// assert_eq!(batch, Command::ProcessBatch { size: Some(50), filter: None });
    /// let err = Command::named("process-batch", Some(r#"{"batchSize": -5}"#.into())).unwrap_err();
    /// assert_eq!(err.field.as_deref(), Some("batchSize"));
    /// assert_eq!(Command::named("reindex", None).unwrap(), Command::custom("reindex"));
    /// ```
    pub fn named(name: impl Into<String>, args: Option<String>) -> Result<Command, DecodeError> {
        let name = name.into();
        let none = |args: &Option<String>| {
            args.as_deref()
                .is_none_or(|a| matches!(a.trim(), "null" | "{}" | ""))
        };
        let no_arguments = |args: &Option<String>, command: Command| {
            if none(args) {
                Ok(command)
            } else {
                Err(DecodeError {
                    field: None,
                    message: format!("`{}` takes no arguments", command.name()),
                })
            }
        };
        match name.as_str() {
            Self::TRIGGER => no_arguments(&args, Command::TriggerNow),
            Self::CHECK_QUEUE => no_arguments(&args, Command::CheckQueue),
            Self::PROCESS_BATCH => {
                let batch = match &args {
                    _ if none(&args) => BatchArgs::default(),
                    Some(text) => Json::decode::<BatchArgs>(text.as_bytes())?,
                    None => BatchArgs::default(),
                };
                Ok(Command::ProcessBatch {
                    size: batch.batch_size,
                    filter: batch.filter,
                })
            }
            _ => Ok(Command::Custom { name, args }),
        }
    }

    /// Whether `name` is the name of a built-in command.
    pub(crate) fn is_built_in(name: &str) -> bool {
        matches!(
            name,
            Self::TRIGGER | Self::PROCESS_BATCH | Self::CHECK_QUEUE
        )
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
