//! A tour of Sora: four services of different kinds under one supervisor.
//!
//! - `Migrations`, a start-up service, runs first;
//! - `Translator` answers typed actions (with a priority, a timeout and a correlation id);
//! - `Cleanup` runs every few seconds and processes batches on demand;
//! - `Heartbeat` has long-running background work of its own.
//!
//! ```sh
//! cargo run --example quickstart            # stop it with Ctrl-C
//! cargo run --example quickstart -- --for 5 # or let it stop itself after 5 seconds
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sora::{
    Action, BoxError, Command, Context, Definition, Handler, Runtime, Schedule, Service, Startup,
};

/// Brings the (pretend) database schema up to date before anything else starts.
#[derive(Default)]
struct Migrations;

impl Service for Migrations {
    fn define(def: &mut Definition<Self>) {
        def.startup(Startup::order(1).timeout(Duration::from_secs(30)));
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        for step in ["0001_create_files", "0002_add_language"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!("[{}] applied {step}", ctx.name());
        }
        Ok(())
    }
}

/// Translates text: the seeds' translation service.
#[derive(Default)]
struct Translator {
    translated: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Translate {
    file_id: String,
    to: String,
}

impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = String;
}

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.action::<Translate>().concurrency(4);
    }
}

impl Handler<Translate> for Translator {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<String, BoxError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = self.translated.fetch_add(1, Ordering::Relaxed) + 1;
        println!(
            "[{}] translated {} to {} (#{n}, correlation {:?})",
            ctx.name(),
            t.file_id,
            t.to,
            ctx.correlation_id()
        );
        Ok(format!("{}.{}.txt", t.file_id, t.to))
    }
}

/// Deletes old records every few seconds, and a batch on demand.
#[derive(Default)]
struct Cleanup {
    deleted: AtomicU64,
}

impl Service for Cleanup {
    fn define(def: &mut Definition<Self>) {
        def.periodic(Schedule::every(Duration::from_secs(2)).run_on_start())
            .command(Command::PROCESS_BATCH);
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        let total = self.deleted.fetch_add(10, Ordering::Relaxed) + 10;
        println!(
            "[{}] scheduled run: deleted 10 old records ({total} so far)",
            ctx.name()
        );
        Ok(())
    }

    async fn command(&self, command: Command, ctx: &Context) -> Result<(), BoxError> {
        if let Command::ProcessBatch { size, filter } = command {
            let size = size.unwrap_or(100);
            self.deleted.fetch_add(size as u64, Ordering::Relaxed);
            println!(
                "[{}] batch of {size} processed (filter {filter:?})",
                ctx.name()
            );
        }
        Ok(())
    }
}

/// Background work of its own: beats until it is told to stop.
#[derive(Default)]
struct Heartbeat;

impl Service for Heartbeat {
    async fn run(&self, ctx: &Context) -> Result<(), BoxError> {
        let mut beats = 0u64;
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(3)) => {
                    beats += 1;
                    println!("[{}] beat {beats}", ctx.name());
                }
            }
        }
        println!("[{}] stopping after {beats} beats", ctx.name());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = std::env::args()
        .skip_while(|a| a != "--for")
        .nth(1)
        .map(|s| s.parse::<u64>().map(Duration::from_secs))
        .transpose()?;

    let runtime = Runtime::builder()
        .service(Translator::default)
        .service(Cleanup::default)
        .service(Heartbeat::default)
        .service(Migrations::default)
        .shutdown_timeout(Duration::from_secs(10))
        .start()
        .await?;
    println!("runtime ready: {}", runtime.is_ready().await);

    // Typed actions, with options, and several at once (the translator runs 4 at a time).
    let translator = runtime.service::<Translator>()?;
    let uploads = ["report", "invoice", "memo"].map(|file| {
        translator
            .act(Translate {
                file_id: file.into(),
                to: "pt-BR".into(),
            })
            .priority(10)
            .timeout(Duration::from_secs(5))
            .correlation_id(format!("upload-{file}"))
            .send()
    });
    for result in futures::future::join_all(uploads).await {
        println!("translation ready: {}", result?);
    }

    // The same action by name, with JSON, as the HTTP plane and the CLI will call it.
    let by_name = runtime
        .service_by_name("Translator")?
        .act_json(
            "translate",
            serde_json::json!({"file_id": "notes", "to": "fr"}),
            Default::default(),
        )
        .await?;
    println!("by name: {by_name}");

    // Poke the periodic service.
    let cleanup = runtime.service::<Cleanup>()?;
    cleanup
        .process_batch(Some(50), Some("older-than-30-days".into()))
        .await?;
    cleanup.trigger().await?;

    for service in runtime.services() {
        let status = service.status().await?;
        let info = service.info().await?;
        println!(
            "{:<11} kinds {:?}, state {:?}, runs {}, calls {}, health {:?}",
            service.name(),
            info.kinds,
            status.state,
            status.runs,
            status.calls,
            service.health().await?,
        );
    }

    match run_for {
        Some(limit) => {
            println!("running for {limit:?}...");
            tokio::time::sleep(limit).await;
            runtime.shutdown().await?;
        }
        None => {
            println!("running; press Ctrl-C to stop");
            runtime.run().await?;
        }
    }
    println!("stopped cleanly");
    Ok(())
}
