//! A pokable service triggered on demand: an outbox processor.
//!
//! The outbox normally runs every minute. When an order is placed, the code that placed it
//! pokes the processor (`trigger`) so the message goes out at once instead of up to a minute
//! later. Pokes that arrive while a run is in progress coalesce into one follow-up run, so a
//! burst of orders costs two runs, not one run per order.
//!
//! ```sh
//! cargo run --example pokable
//! ```

use std::future::IntoFuture;
use std::sync::Mutex;
use std::time::Duration;

use sora::{BoxError, Command, Context, Definition, Runtime, Schedule, Service};

#[derive(Default)]
struct Outbox {
    pending: Mutex<Vec<String>>,
    sent: Mutex<Vec<String>>,
}

impl Service for Outbox {
    fn define(def: &mut Definition<Self>) {
        def.periodic(Schedule::every(Duration::from_secs(60)))
            .command(Command::CHECK_QUEUE)
            .command("enqueue");
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        let batch: Vec<String> = std::mem::take(&mut *self.pending.lock().expect("lock"));
        // Sending takes a while: pokes that arrive meanwhile coalesce.
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!(
            "[{}] sent {} message(s): {batch:?}",
            ctx.name(),
            batch.len()
        );
        self.sent.lock().expect("lock").extend(batch);
        Ok(())
    }

    async fn command(&self, command: Command, ctx: &Context) -> Result<(), BoxError> {
        match command {
            Command::CheckQueue => {
                let n = self.pending.lock().expect("lock").len();
                println!("[{}] {n} message(s) waiting", ctx.name());
            }
            Command::Custom { name, args } if name == "enqueue" => {
                let order: String = serde_json::from_str(args.as_deref().unwrap_or("\"\""))?;
                self.pending.lock().expect("lock").push(order);
            }
            _ => {}
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder().service(Outbox::default).start().await?;
    let outbox = runtime.service::<Outbox>()?;

    // One order: enqueue its message, then poke the processor.
    outbox
        .command(Command::custom_with("enqueue", &"order-1"))
        .await?;
    outbox.trigger().await?;

    // A burst of five orders, each poking: the first poke runs at once, the rest coalesce.
    let mut pokes = Vec::new();
    for n in 2..=6 {
        outbox
            .command(Command::custom_with("enqueue", &format!("order-{n}")))
            .await?;
        // A request is sent when first polled: spawn it to poke without waiting for the run.
        pokes.push(tokio::spawn(outbox.trigger().into_future()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for poke in pokes {
        poke.await??;
    }
    outbox.check_queue().await?;

    let status = outbox.status().await?;
    println!("6 pokes, {} runs", status.runs);
    runtime.shutdown().await?;
    Ok(())
}
