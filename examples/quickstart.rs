//! A tour of Sora: services of different kinds under one supervisor, tuned by `sora.toml`.
//!
//! - `Migrations`, a start-up service, runs first;
//! - `Translator` answers typed actions (with a priority, a timeout and a correlation id);
//! - `Cleanup` runs on a schedule with its own typed settings, and processes batches on demand;
//! - `Heartbeat` has long-running background work of its own;
//! - `Mailer` sends welcome mails as durable jobs, kept in `sora.redb` in the working directory
//!   (try `sora jobs` while it runs);
//! - `DemoData` runs in development only.
//!
//! Each service registers itself with `sora::register!`; `discover()` starts them all, and
//! `examples/sora.toml` (or the file `SORA_CONFIG` names) overrides what they declare.
//!
//! ```sh
//! cargo run --example quickstart                       # stop it with Ctrl-C
//! cargo run --example quickstart -- --for 5            # or let it stop itself after 5 seconds
//! SORA_ENV=production cargo run --example quickstart   # DemoData is disabled
//! SORA__SERVICES__CLEANUP__INTERVAL=1s cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sora::config::{Config, Environment};
use sora::{
    Action, BoxError, Command, Context, Definition, Handler, Retry, Runtime, Schedule, Service,
    Startup,
};

/// Brings the (pretend) database schema up to date before anything else starts.
#[derive(Default)]
struct Migrations;

impl Service for Migrations {
    fn define(def: &mut Definition<Self>) {
        def.name("migrations")
            .startup(Startup::order(1).timeout(Duration::from_secs(30)));
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        for step in ["0001_create_files", "0002_add_language"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!("[{}] applied {step}", ctx.name());
        }
        Ok(())
    }
}

sora::register!(Migrations);

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

/// Emitted once a file is translated (`sora events` shows it).
#[derive(Debug, Serialize, Deserialize)]
struct Translated {
    file_id: String,
    to: String,
}

impl sora::Event for Translated {
    const NAME: &'static str = "Translated";
}

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.name("translator")
            .action::<Translate>()
            .emits::<Translated>();
    }
}

sora::register!(Translator);

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
        let reply = format!("{}.{}.txt", t.file_id, t.to);
        ctx.emit(Translated {
            file_id: t.file_id,
            to: t.to,
        })?;
        Ok(reply)
    }
}

/// Deletes old records on a schedule, and a batch on demand.
#[derive(Default)]
struct Cleanup {
    deleted: AtomicU64,
}

/// The cleanup's own settings, read from `[services.cleanup.settings]`.
#[derive(Debug, Deserialize)]
struct CleanupOptions {
    #[serde(default = "CleanupOptions::default_retention")]
    retention_days: u32,
    #[serde(default = "CleanupOptions::default_batch")]
    batch_size: u64,
}

impl CleanupOptions {
    fn default_retention() -> u32 {
        90
    }
    fn default_batch() -> u64 {
        100
    }
}

impl Service for Cleanup {
    fn define(def: &mut Definition<Self>) {
        def.name("cleanup")
            .periodic(Schedule::every(Duration::from_secs(60)))
            .command(Command::PROCESS_BATCH)
            .settings::<CleanupOptions>()
            .emits::<CleanedUp>();
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        let options = ctx.settings::<CleanupOptions>().ok_or("no settings")?;
        let batch = options.batch_size;
        let total = self.deleted.fetch_add(batch, Ordering::Relaxed) + batch;
        println!(
            "[{}] scheduled run: deleted {batch} records older than {} days ({total} so far)",
            ctx.name(),
            options.retention_days
        );
        ctx.emit(CleanedUp { deleted: batch })?;
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
            ctx.emit(CleanedUp {
                deleted: size as u64,
            })?;
        }
        Ok(())
    }
}

/// Emitted by every run and batch of the cleanup.
#[derive(Debug, Serialize, Deserialize)]
struct CleanedUp {
    deleted: u64,
}

impl sora::Event for CleanedUp {
    const NAME: &'static str = "CleanedUp";
}

sora::register!(Cleanup);

/// Background work of its own: beats until it is told to stop.
#[derive(Default)]
struct Heartbeat;

impl Service for Heartbeat {
    fn define(def: &mut Definition<Self>) {
        def.name("heartbeat");
    }

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

sora::register!(Heartbeat);

/// Sends welcome mails. Each is a durable job: committed before it is accepted, retried if the
/// (pretend) mail server fails, and kept with its outcome across restarts.
#[derive(Default)]
struct Mailer;

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    to: String,
}

impl Action for Welcome {
    const NAME: &'static str = "welcome";
    type Reply = String;
}

impl Service for Mailer {
    fn define(def: &mut Definition<Self>) {
        def.name("mailer").durable::<Welcome>(Retry::attempts(5));
    }
}

impl Handler<Welcome> for Mailer {
    async fn handle(&self, mail: Welcome, ctx: &Context) -> Result<String, BoxError> {
        let job = ctx.job().expect("a durable call runs as a job");
        println!(
            "[{}] welcome mail to {} (job {}, attempt {})",
            ctx.name(),
            mail.to,
            job.id,
            job.attempt
        );
        Ok(format!("sent to {}", mail.to))
    }
}

sora::register!(Mailer);

/// Fills the (pretend) database with sample rows; meant for development only.
#[derive(Default)]
struct DemoData;

impl Service for DemoData {
    fn define(def: &mut Definition<Self>) {
        def.name("demo-data").run_in([Environment::Development]);
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        println!("[{}] seeded 3 sample files", ctx.name());
        Ok(())
    }
}

sora::register!(DemoData);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // A bad `sora.toml` or variable reads as one line naming the key and the source.
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = std::env::args()
        .skip_while(|a| a != "--for")
        .nth(1)
        .map(|s| s.parse::<u64>().map(Duration::from_secs))
        .transpose()?;

    // The example's own file, wherever it is run from, unless SORA_CONFIG names another.
    let config = match std::env::var_os("SORA_CONFIG") {
        Some(_) => Config::load(),
        None => Config::file(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sora.toml")),
    };
    let runtime = Runtime::builder().discover().config(config).start().await?;
    println!(
        "runtime ready: {} (environment {})",
        runtime.is_ready().await,
        runtime.environment()
    );
    if let Some(address) = runtime.http_address() {
        println!(
            "control plane: http://{address}  (try: sora services, or curl http://{address}/api/services)"
        );
    }

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
        .service_by_name("translator")?
        .act_json(
            "translate",
            serde_json::json!({"file_id": "notes", "to": "fr"}),
            Default::default(),
        )
        .await?;
    println!("by name: {by_name}");

    // A durable job, enqueued once however often the program runs: its key names it.
    let mailer = runtime.service::<Mailer>()?;
    let welcome = mailer
        .enqueue(Welcome {
            to: "ada@example.com".into(),
        })
        .key("welcome-ada")
        .await?;
    println!(
        "welcome mail: job {} ({}), {}",
        welcome.id(),
        if welcome.is_new() {
            "new"
        } else {
            "kept from an earlier run"
        },
        welcome.result().await?
    );

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
            "{:<10} kinds {:?}, state {:?}, runs {}, calls {}, health {:?}",
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
