//! Workflow orchestration with events, from the seeds: an uploaded file is translated, and each
//! completed translation gets a thumbnail made by another service.
//!
//! ```sh
//! cargo run --example workflow
//! ```
//!
//! The orchestrator is a service of its own: its `start` hook subscribes to the events of the
//! other services (so the workflow is wired before the runtime reports started), its handlers
//! act on the next service, and its subscriptions end with it.

use std::sync::Mutex;
use std::time::Duration;

use sora::{Action, BoxError, Context, Definition, Event, Handler, Runtime, Service};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FileUploaded {
    file: String,
}
impl Event for FileUploaded {
    const NAME: &'static str = "file-uploaded";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TranslationCompleted {
    file: String,
    translated: String,
}
impl Event for TranslationCompleted {
    const NAME: &'static str = "translation-completed";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ThumbnailGenerated {
    file: String,
    size: (u32, u32),
}
impl Event for ThumbnailGenerated {
    const NAME: &'static str = "thumbnail-generated";
}

/// Stores an uploaded file and announces it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Upload(String);
impl Action for Upload {
    const NAME: &'static str = "upload";
    type Reply = ();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Translate(String);
impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = String;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct GenerateThumbnail {
    file: String,
    width: u32,
    height: u32,
}
impl Action for GenerateThumbnail {
    const NAME: &'static str = "generate-thumbnail";
    type Reply = ();
}

#[derive(Default)]
struct Files;

impl Service for Files {
    fn define(def: &mut Definition<Self>) {
        def.action::<Upload>().emits::<FileUploaded>();
    }
}

impl Handler<Upload> for Files {
    async fn handle(&self, upload: Upload, ctx: &Context) -> Result<(), BoxError> {
        println!("files: stored {}", upload.0);
        ctx.emit(FileUploaded { file: upload.0 })?;
        Ok(())
    }
}

#[derive(Default)]
struct Translator;

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.action::<Translate>().emits::<TranslationCompleted>();
    }
}

impl Handler<Translate> for Translator {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<String, BoxError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let translated = format!("{}.en", t.0);
        println!("translator: {} -> {translated}", t.0);
        ctx.emit(TranslationCompleted {
            file: t.0,
            translated: translated.clone(),
        })?;
        Ok(translated)
    }
}

#[derive(Default)]
struct Images;

impl Service for Images {
    fn define(def: &mut Definition<Self>) {
        def.action::<GenerateThumbnail>()
            .emits::<ThumbnailGenerated>();
    }
}

impl Handler<GenerateThumbnail> for Images {
    async fn handle(&self, t: GenerateThumbnail, ctx: &Context) -> Result<(), BoxError> {
        println!(
            "images: thumbnail of {} at {}x{}",
            t.file, t.width, t.height
        );
        ctx.emit(ThumbnailGenerated {
            file: t.file,
            size: (t.width, t.height),
        })?;
        Ok(())
    }
}

/// Wires the steps together: upload -> translate -> thumbnail.
#[derive(Default)]
struct Orchestrator {
    subscriptions: Mutex<Vec<sora::Subscription>>,
}

impl Service for Orchestrator {
    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        let runtime = ctx.runtime();
        let translator = runtime.service::<Translator>()?;
        let images = runtime.service::<Images>()?;
        let uploads = runtime
            .service::<Files>()?
            .on::<FileUploaded>()
            .run(move |uploaded| {
                let translator = translator.clone();
                async move {
                    translator
                        .act(Translate(uploaded.file.clone()))
                        .correlation_id(format!("workflow-{}", uploaded.file))
                        .await
                        .map(drop)
                }
            })
            .subscribe()
            .await?;
        let translations = runtime
            .service::<Translator>()?
            .on::<TranslationCompleted>()
            .run(move |done| {
                let images = images.clone();
                async move {
                    let mut call = images.act(GenerateThumbnail {
                        file: done.translated.clone(),
                        width: 200,
                        height: 200,
                    });
                    if let Some(id) = done.correlation_id() {
                        call = call.correlation_id(id);
                    }
                    call.await
                }
            })
            .subscribe()
            .await?;
        println!("orchestrator: workflow is wired");
        let mut held = self.subscriptions.lock().expect("lock");
        held.extend([uploads, translations]);
        Ok(())
    }

    async fn stop(&self, _ctx: &Context) {
        self.subscriptions.lock().expect("lock").clear();
        println!("orchestrator: workflow is unwired");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .service(Files::default)
        .service(Translator::default)
        .service(Images::default)
        .service(Orchestrator::default)
        .start()
        .await?;
    let mut thumbnails = runtime
        .service::<Images>()?
        .on::<ThumbnailGenerated>()
        .capture()
        .await?;
    let files = runtime.service::<Files>()?;
    for file in ["report.pdf", "slides.key"] {
        files.act(Upload(file.into())).await?;
    }
    for thumbnail in thumbnails.wait_for(2).await {
        println!(
            "done: {} ({}x{}) for {:?}",
            thumbnail.file,
            thumbnail.size.0,
            thumbnail.size.1,
            thumbnail.correlation_id()
        );
    }
    runtime.shutdown().await?;
    Ok(())
}
