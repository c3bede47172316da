//! The services that the control plane's tests (HTTP and CLI) drive.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use sora::{BoxError, Command, Context, Definition, Schedule, Service};

use super::support::Journal;

/// Periodic and pokable: records its runs and commands, emits on every run.
pub struct Batcher {
    pub journal: Journal,
}

impl Service for Batcher {
    fn define(def: &mut Definition<Self>) {
        def.name("batcher")
            .periodic(Schedule::every(Duration::from_secs(3600)))
            .command(Command::PROCESS_BATCH)
            .command(Command::CHECK_QUEUE)
            .command("reindex")
            .emits::<Ticked>();
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        self.journal.push("tick");
        ctx.emit(Ticked)?;
        Ok(())
    }

    async fn command(&self, command: Command, _: &Context) -> Result<(), BoxError> {
        self.journal.push(match command {
            Command::ProcessBatch { size, filter } => format!("batch:{size:?}:{filter:?}"),
            Command::CheckQueue => "check-queue".into(),
            Command::Custom { name, args } => format!("{name}:{args:?}"),
            other => format!("{other:?}"),
        });
        Ok(())
    }
}

/// Emitted by every run of the batcher.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Ticked;

impl sora::Event for Ticked {
    const NAME: &'static str = "ticked";
}

/// Registered, disabled.
#[derive(Default)]
pub struct Off;

impl Service for Off {
    fn define(def: &mut Definition<Self>) {
        def.enabled(false);
    }
}
