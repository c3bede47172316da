//! The outbox, kept on disk: every message an order produces is a durable job, published at
//! least once, retried while the broker fails, and dead-lettered when it never will pass.
//!
//! The orders service writes each message to the outbox with the message's id as its
//! idempotency key, so placing the same order twice (a client that retried) publishes once.
//! The outbox processor publishes four at a time; a message the broker refuses for a moment is
//! retried on its backoff while the others go on past it, and one the broker can never take is
//! parked in the dead letters after three attempts, with every error, for an operator to look
//! at, retry or discard. A `JobDead` subscriber stands for the alert.
//!
//! ```sh
//! cargo run --example outbox
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sora::store::{JobId, RedbStore};
use sora::{
    Action, Backoff, BoxError, Context, Definition, Handler, JobDead, Retry, Runtime, Service,
};

/// One message of the outbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Publish {
    id: String,
    topic: String,
    body: String,
}

impl Action for Publish {
    const NAME: &'static str = "publish";
    /// Where the broker put it.
    type Reply = u64;
}

/// The broker the outbox publishes to: it is down for `orders.flaky` twice, and it never
/// takes `orders.poison`.
#[derive(Default)]
struct Broker {
    published: Mutex<Vec<String>>,
    refusals: Mutex<HashMap<String, u32>>,
}

impl Broker {
    fn publish(&self, message: &Publish) -> Result<u64, String> {
        let mut refusals = self.refusals.lock().unwrap();
        let refused = refusals.entry(message.id.clone()).or_default();
        match message.topic.as_str() {
            "orders.poison" => {
                *refused += 1;
                return Err(format!("topic {} does not exist", message.topic));
            }
            "orders.flaky" if *refused < 2 => {
                *refused += 1;
                return Err("broker unavailable".into());
            }
            _ => {}
        }
        let mut published = self.published.lock().unwrap();
        // Published at least once: a message seen again is acknowledged, not sent twice.
        if !published.contains(&message.id) {
            published.push(message.id.clone());
        }
        Ok(published.len() as u64)
    }
}

struct OutboxProcessor {
    broker: Arc<Broker>,
}

impl Service for OutboxProcessor {
    fn define(def: &mut Definition<Self>) {
        def.name("outbox")
            .concurrency(4)
            .durable::<Publish>(Retry::attempts(3).backoff(Backoff {
                initial: Duration::from_millis(50),
                ..Retry::default().backoff
            }));
    }
}

impl Handler<Publish> for OutboxProcessor {
    async fn handle(&self, message: Publish, ctx: &Context) -> Result<u64, BoxError> {
        let attempt = ctx.job().map_or(1, |job| job.attempt);
        match self.broker.publish(&message) {
            Ok(offset) => Ok(offset),
            Err(error) => {
                tracing::warn!(message = message.id, attempt, %error, "publish failed");
                Err(error.into())
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "outbox=info,sora=warn".into()),
        )
        .init();
    let path = std::env::temp_dir().join(format!("sora-outbox-{}.redb", std::process::id()));
    let broker = Arc::new(Broker::default());
    let runtime = Runtime::builder()
        .store(RedbStore::open(&path)?)
        .service({
            let broker = broker.clone();
            move || OutboxProcessor {
                broker: broker.clone(),
            }
        })
        .start()
        .await?;
    let outbox = runtime.service::<OutboxProcessor>()?;
    let mut alerts = outbox.on::<JobDead>().stream().await?;

    // Twenty orders, the last placed twice; each writes its message to the outbox.
    let mut messages: Vec<Publish> = (1..=20)
        .map(|n| Publish {
            id: format!("order-{n}"),
            topic: match n {
                7 => "orders.flaky",
                13 => "orders.poison",
                _ => "orders.placed",
            }
            .into(),
            body: format!("{{\"order\":{n}}}"),
        })
        .collect();
    messages.push(messages[19].clone());
    let mut ids: Vec<JobId> = Vec::new();
    for message in messages {
        let key = message.id.clone();
        let ticket = outbox.enqueue(message).key(key).await?;
        if ticket.is_new() {
            ids.push(ticket.id());
        } else {
            println!("order-20 was placed twice: its message is in the outbox once");
        }
    }

    // Every message ends: published, or dead.
    let jobs = runtime.jobs().expect("a store is open");
    let (mut published, mut dead) = (0, 0);
    for id in &ids {
        match jobs.wait(*id).await {
            Ok(_) => published += 1,
            Err(_) => dead += 1,
        }
    }
    let alert = alerts
        .next()
        .await
        .expect("an alert for the poison message");
    println!(
        "alert: job {} of `{}` is dead after {} attempts: {}",
        alert.id, alert.action, alert.attempts, alert.error
    );
    for letter in jobs.dead(Some("outbox"))? {
        let params: serde_json::Value = serde_json::from_slice(&letter.params)?;
        println!(
            "dead letter {}: {} ({} errors kept)",
            letter.id,
            params["id"],
            letter.errors.len()
        );
    }
    println!("{published} messages published, {dead} dead-lettered");
    runtime.shutdown().await?;
    std::fs::remove_file(&path).ok();

    assert_eq!(
        (published, dead),
        (19, 1),
        "19 published, the poison message dead"
    );
    assert_eq!(broker.published.lock().unwrap().len(), 19);
    assert_eq!(alert.attempts, 3);
    Ok(())
}
