//! Two nodes: one runs a translator, the other drives it across the network and takes the
//! events it emits.
//!
//! In one terminal, the node that serves:
//!
//! ```text
//! cargo run --example cluster --features cluster -- serve
//! ```
//!
//! In another, the node that calls (it stops after `--count` calls, or on Ctrl-C):
//!
//! ```text
//! cargo run --example cluster --features cluster -- drive --count 5
//! ```
//!
//! Stop the first node while the second runs: its calls fail with `service_unavailable` naming
//! the lost node, and succeed again once the first is back, with no restart of the second.
//! `SORA_CLUSTER_SECRET` sets the secret both nodes share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sora::cluster::ClusterConfig;
use sora::{Action, BoxError, Context, Definition, Handler, Runtime, Service};

const SERVE_ON: &str = "127.0.0.1:7171";
const DRIVE_ON: &str = "127.0.0.1:7172";

#[derive(Debug, Serialize, Deserialize)]
struct Translate {
    text: String,
    to: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Translated {
    text: String,
    by: String,
    call: u64,
}

impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = Translated;
}

/// Emitted by the translator after each translation.
#[derive(Debug, Serialize, Deserialize)]
struct TranslationDone {
    call: u64,
    to: String,
}

impl sora::Event for TranslationDone {
    const NAME: &'static str = "translation-done";
}

#[derive(Default)]
struct Translator {
    calls: AtomicU64,
}

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.action::<Translate>().emits::<TranslationDone>();
    }
}

impl Handler<Translate> for Translator {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<Translated, BoxError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let by = ctx.runtime().cluster().map(|c| c.node().to_owned());
        println!(
            "translating {:?} to {} (correlation id {:?})",
            t.text,
            t.to,
            ctx.correlation_id()
        );
        ctx.emit(TranslationDone {
            call,
            to: t.to.clone(),
        })?;
        Ok(Translated {
            text: format!("[{}] {}", t.to, t.text),
            by: by.unwrap_or_default(),
            call,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("sora=info")
        .with_target(false)
        .init();
    let secret = std::env::var("SORA_CLUSTER_SECRET").unwrap_or_else(|_| "change-me".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(secret).await,
        Some("drive") => {
            let count = args
                .iter()
                .position(|a| a == "--count")
                .and_then(|i| args.get(i + 1))
                .map(|n| n.parse())
                .transpose()?;
            drive(secret, count).await
        }
        _ => {
            eprintln!("usage: cluster serve | cluster drive [--count N]");
            std::process::exit(2);
        }
    }
}

/// The node that runs the translator.
async fn serve(secret: String) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .service(Translator::default)
        .cluster(ClusterConfig::new("alpha", secret).listen(SERVE_ON.parse()?))
        .start()
        .await?;
    println!("alpha serves Translator on {SERVE_ON}; press Ctrl-C to stop");
    runtime.run().await?;
    println!("alpha stopped cleanly");
    Ok(())
}

/// The node that knows the translator's type and calls it where it runs.
async fn drive(secret: String, count: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .remote::<Translator>()
        .cluster(
            ClusterConfig::new("beta", secret)
                .listen(DRIVE_ON.parse()?)
                .seed(SERVE_ON),
        )
        .start()
        .await?;
    let cluster = runtime.cluster().expect("a node");
    println!("beta waits for alpha at {SERVE_ON}…");
    cluster.wait_until(|c| c.serves("Translator")).await;
    let translator = runtime.service::<Translator>()?;
    // alpha's events, forwarded to this node.
    let mut done = translator.on::<TranslationDone>().stream().await?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while count.is_none_or(|count| sent < count) {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        sent += 1;
        let reply = translator
            .act(Translate {
                text: format!("hello #{sent}"),
                to: "pt".into(),
            })
            .correlation_id(format!("beta-{sent}"))
            .timeout(Duration::from_secs(5))
            .await;
        match reply {
            Ok(t) => println!("{} (by {}, its call #{})", t.text, t.by, t.call),
            Err(err) => {
                println!("call #{sent} failed: {} ({err})", err.code());
                continue;
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), done.next()).await {
            Ok(Some(event)) => println!(
                "event {} from {}: call #{} to {} done",
                event.name(),
                event.node().unwrap_or("this node"),
                event.call,
                event.to
            ),
            _ => println!("no event for call #{sent}"),
        }
    }
    runtime.shutdown().await?;
    println!("beta stopped cleanly");
    Ok(())
}
