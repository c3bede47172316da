//! Services and helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sora::{Action, BoxError, Context, Definition, Handler, Service};
use tokio::sync::Semaphore;

/// A generous bound on any wait in a test: a test that reaches it has failed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("timed out waiting in a test")
}

/// A log of what happened, in order, shared between a test and its services.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, entry: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == entry)
            .count()
    }
}

/// A gate that handlers wait at until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }
}

impl Gate {
    pub async fn pass(&self) {
        self.0.acquire().await.expect("gate closed").forget();
    }
    pub fn open(&self, n: usize) {
        self.0.add_permits(n);
    }
}

/// Has the runtime's [`Translator`] translate `text` into English; returns the reply.
pub async fn translate_en(runtime: &sora::RuntimeHandle, text: &str) -> String {
    let translate = Translate {
        text: text.into(),
        to: "en".into(),
    };
    let translator = runtime
        .service::<Translator>()
        .expect("a translator is registered");
    translator
        .act(translate)
        .await
        .expect("the translation succeeds")
}

/// A factory for a [`Translator`] that records into `journal` and, with a gate, waits at it.
pub fn translator(
    journal: &Journal,
    gate: Option<&Gate>,
) -> impl Fn() -> Translator + Send + Sync + 'static {
    let (journal, gate) = (journal.clone(), gate.cloned());
    move || Translator {
        journal: journal.clone(),
        gate: gate.clone(),
    }
}

/// Translates text; the seeds' translation service, small.
#[derive(Clone, Default)]
pub struct Translator {
    pub journal: Journal,
    pub gate: Option<Gate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Translate {
    pub text: String,
    pub to: String,
}

impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = String;
}

/// Waits at the gate, then records its label.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work(pub String);

impl Action for Work {
    const NAME: &'static str = "work";
    type Reply = ();
}

/// Sleeps for the given number of milliseconds (virtual time in tests), recording whether it
/// was cancelled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sleep(pub u64);

impl Action for Sleep {
    const NAME: &'static str = "sleep";
    type Reply = ();
}

/// Panics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explode;

impl Action for Explode {
    const NAME: &'static str = "explode";
    type Reply = ();
}

/// Returns an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refuse;

impl Action for Refuse {
    const NAME: &'static str = "refuse";
    type Reply = ();
}

/// Answers with the correlation id it sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI;

impl Action for WhoAmI {
    const NAME: &'static str = "who-am-i";
    type Reply = Option<String>;
}

/// Emitted by `Translate` once the text is translated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslationCompleted {
    pub text: String,
    pub to: String,
}

impl sora::Event for TranslationCompleted {
    const NAME: &'static str = "TranslationCompleted";
}

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.action::<Translate>()
            .action::<Work>()
            .action::<Sleep>()
            .action::<Explode>()
            .action::<Refuse>()
            .action::<WhoAmI>()
            .emits::<TranslationCompleted>();
    }
}

impl Handler<Translate> for Translator {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<String, BoxError> {
        tracing::info!(to = %t.to, "translating");
        self.journal.push(format!("translate:{}", t.text));
        let reply = format!("[{}] {}", t.to, t.text);
        ctx.emit(TranslationCompleted {
            text: t.text,
            to: t.to,
        })?;
        Ok(reply)
    }
}

impl Handler<Work> for Translator {
    async fn handle(&self, w: Work, _ctx: &Context) -> Result<(), BoxError> {
        self.journal.push(format!("begin:{}", w.0));
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        if w.0.starts_with("panic") {
            panic!("boom in {}", w.0);
        }
        self.journal.push(format!("end:{}", w.0));
        Ok(())
    }
}

struct OnDrop(Journal, &'static str);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.push(self.1);
    }
}

impl Handler<Sleep> for Translator {
    async fn handle(&self, s: Sleep, _ctx: &Context) -> Result<(), BoxError> {
        let guard = OnDrop(self.journal.clone(), "sleep-dropped");
        tokio::time::sleep(Duration::from_millis(s.0)).await;
        self.journal.push("sleep-done");
        drop(guard);
        Ok(())
    }
}

impl Handler<Explode> for Translator {
    async fn handle(&self, _: Explode, _ctx: &Context) -> Result<(), BoxError> {
        panic!("boom");
    }
}

impl Handler<Refuse> for Translator {
    async fn handle(&self, _: Refuse, _ctx: &Context) -> Result<(), BoxError> {
        Err("no such language".into())
    }
}

impl Handler<WhoAmI> for Translator {
    async fn handle(&self, _: WhoAmI, ctx: &Context) -> Result<Option<String>, BoxError> {
        Ok(ctx.correlation_id().map(str::to_owned))
    }
}

/// Yields until `check` holds, without moving virtual time: for a state the runtime reaches by
/// itself once its tasks have run. Fails the test after [`PATIENCE`].
pub async fn until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(async {
        while !check().await {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Polls `check` on virtual time until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
