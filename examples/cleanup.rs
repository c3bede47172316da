//! A periodic cleanup service with options: interval, batch size and retention.
//!
//! Every interval it deletes expired records in batches, continuing past a record that fails to
//! delete (it is retried on the next run). A `process-batch` command runs a batch on demand with
//! its own size and filter. Here the interval is short so that the example finishes quickly.
//!
//! ```sh
//! cargo run --example cleanup
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sora::{BoxError, Command, Context, Definition, Runtime, Schedule, Service};

/// The options of the service, as an operator would set them.
#[derive(Debug, Clone)]
struct CleanupOptions {
    interval: Duration,
    batch_size: usize,
    retention_days: u32,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions {
            interval: Duration::from_millis(500),
            batch_size: 3,
            retention_days: 30,
        }
    }
}

/// A record in the (pretend) store: its id and its age in days.
#[derive(Debug, Clone)]
struct Record {
    id: u32,
    age_days: u32,
}

struct Cleanup {
    options: CleanupOptions,
    store: Mutex<Vec<Record>>,
    /// Record 7 is locked by another writer the first time it is deleted.
    locked_once: AtomicBool,
}

impl Cleanup {
    fn new(options: CleanupOptions) -> Self {
        let store = (1..=10)
            .map(|id| Record {
                id,
                age_days: id * 7,
            })
            .collect();
        Cleanup {
            options,
            store: Mutex::new(store),
            locked_once: AtomicBool::new(false),
        }
    }

    /// Deletes up to `size` expired records; a failed delete is logged and skipped.
    fn delete_batch(&self, size: usize, ctx: &Context) -> usize {
        let mut store = self.store.lock().expect("store lock");
        let expired: Vec<Record> = store
            .iter()
            .filter(|r| r.age_days > self.options.retention_days)
            .take(size)
            .cloned()
            .collect();
        let mut deleted = 0;
        for record in expired {
            if record.id == 7 && !self.locked_once.swap(true, Ordering::SeqCst) {
                println!(
                    "[{}] could not delete record {}; retrying next run",
                    ctx.name(),
                    record.id
                );
                continue;
            }
            store.retain(|r| r.id != record.id);
            deleted += 1;
        }
        deleted
    }
}

impl Service for Cleanup {
    fn define(def: &mut Definition<Self>) {
        let options = CleanupOptions::default();
        def.periodic(Schedule::every(options.interval))
            .command(Command::PROCESS_BATCH);
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        let deleted = self.delete_batch(self.options.batch_size, ctx);
        let left = self.store.lock().expect("store lock").len();
        println!(
            "[{}] scheduled run: deleted {deleted}, {left} records left",
            ctx.name()
        );
        Ok(())
    }

    async fn command(&self, command: Command, ctx: &Context) -> Result<(), BoxError> {
        if let Command::ProcessBatch { size, filter } = command {
            let size = size.unwrap_or(self.options.batch_size);
            let deleted = self.delete_batch(size, ctx);
            println!(
                "[{}] on-demand batch (size {size}, filter {filter:?}): deleted {deleted}",
                ctx.name()
            );
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = CleanupOptions::default();
    println!("options: {options:?}");
    let runtime = Runtime::builder()
        .service(move || Cleanup::new(options.clone()))
        .start()
        .await?;
    let cleanup = runtime.service::<Cleanup>()?;

    cleanup
        .process_batch(Some(1), Some("oldest-first".into()))
        .await?;
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let status = cleanup.status().await?;
    println!(
        "runs {}, skipped {}, failures {}, next run in {:?}",
        status.runs, status.skipped, status.failures, status.next_run_in
    );
    runtime.shutdown().await?;
    Ok(())
}
