//! The translation service of the seeds, with events: each translation emits started, then
//! completed or failed; subscribers react without the service knowing them.
//!
//! ```sh
//! cargo run --example translation
//! ```
//!
//! A notifier (an async closure) hears every completion; an auditor (a stream) logs every event
//! of the service; an alert fires on the first failure only (`once`); a filter keeps the
//! Portuguese desk from ever waking for other languages.

use futures::StreamExt;
use sora::{Action, BoxError, Context, Definition, Event, Handler, Runtime, Service};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TranslationStarted {
    file: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TranslationCompleted {
    file: String,
    language: String,
    words: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TranslationFailed {
    file: String,
    error: String,
}

impl Event for TranslationStarted {
    const NAME: &'static str = "translation-started";
}
impl Event for TranslationCompleted {
    const NAME: &'static str = "translation-completed";
}
impl Event for TranslationFailed {
    const NAME: &'static str = "translation-failed";
}

/// Translates a file into a language.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Translate {
    file: String,
    to: String,
}

impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = usize;
}

#[derive(Default)]
struct TranslationService;

impl Service for TranslationService {
    fn define(def: &mut Definition<Self>) {
        def.name("translation")
            .action::<Translate>()
            .emits::<TranslationStarted>()
            .emits::<TranslationCompleted>()
            .emits::<TranslationFailed>()
            .concurrency(4);
    }
}

impl Handler<Translate> for TranslationService {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<usize, BoxError> {
        ctx.emit(TranslationStarted {
            file: t.file.clone(),
        })?;
        if t.file.ends_with(".bin") {
            let error = "binary files cannot be translated".to_owned();
            ctx.emit(TranslationFailed {
                file: t.file,
                error: error.clone(),
            })?;
            return Err(error.into());
        }
        let words = t.file.len() * 100;
        ctx.emit(TranslationCompleted {
            file: t.file,
            language: t.to,
            words,
        })?;
        Ok(words)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .service(TranslationService::default)
        .start()
        .await?;
    let translation = runtime.service::<TranslationService>()?;

    let notifications = translation
        .on::<TranslationCompleted>()
        .run(|done| async move {
            println!(
                "notifier: {} is ready in {} ({} words, for {:?})",
                done.file,
                done.language,
                done.words,
                done.correlation_id()
            );
        })
        .on::<TranslationFailed>()
        .once()
        .run(|failed| async move {
            println!("alert: {} failed: {}", failed.file, failed.error);
        })
        .on::<TranslationCompleted>()
        .filter(|done| done.language == "pt")
        .run(|done| async move { println!("portuguese desk: {} is ours", done.file) })
        .subscribe()
        .await?;

    // An auditor that knows the events only by name, as a dynamic caller would.
    let mut audit = runtime
        .service_by_name("translation")?
        .on_named::<serde_json::Value>("translation-started")
        .stream()
        .await?;
    let auditor = tokio::spawn(async move {
        while let Some(started) = audit.next().await {
            println!("audit: #{} started {}", started.id(), *started);
        }
    });

    for (file, to) in [
        ("contract.txt", "pt"),
        ("manual.md", "en"),
        ("logo.bin", "pt"),
        ("faq.txt", "pt"),
        ("firmware.bin", "de"),
    ] {
        let outcome = translation
            .act(Translate {
                file: file.into(),
                to: to.into(),
            })
            .correlation_id(format!("upload-{file}"))
            .await;
        match outcome {
            Ok(words) => println!("caller: {file} -> {to}: {words} words"),
            Err(err) => println!("caller: {file}: {err}"),
        }
    }

    // Every event emitted so far is in its subscribers' queues once `flush` returns; the
    // handlers may still be running.
    runtime.events().flush().await?;
    let stats = notifications.stats();
    println!(
        "delivered: {} completions, {} failure (once), {} Portuguese completions",
        stats[0].delivered, stats[1].delivered, stats[2].delivered
    );
    println!(
        "emitted by the service: {}",
        translation.status().await?.events_emitted
    );
    // Shutdown ends every subscription once its handler has been given what its queue holds.
    runtime.shutdown().await?;
    drop(notifications);
    // The runtime has stopped: the auditor's stream ends once it has delivered what it held.
    auditor.await?;
    Ok(())
}
