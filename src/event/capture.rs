//! A helper for tests: capture a clause's events and look at them.

use futures::StreamExt;

use super::chain::{EventStream, Filter, On, Take};
use super::emitted::Emitted;
use crate::Error;

/// The events of one clause, captured for a test to look at.
///
/// Made by [`On::capture`]. Pair it with [`Events::flush`](crate::event::Events::flush): once
/// `flush` returns, every event emitted before it has been captured.
///
/// # Examples
///
/// ```
/// # use sora::{BoxError, Context, Definition, Event, Handler, Runtime, Service, Action};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Completed { file: String }
/// # impl Event for Completed { const NAME: &'static str = "translation-completed"; }
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Failed { file: String }
/// # impl Event for Failed { const NAME: &'static str = "translation-failed"; }
/// # struct Translate(String);
/// # impl Action for Translate { const NAME: &'static str = "translate"; type Reply = (); }
/// # #[derive(Default)] struct Translator;
/// # impl Service for Translator {
/// #     fn define(def: &mut Definition<Self>) { def.emits::<Completed>().emits::<Failed>(); }
/// # }
/// # impl Handler<Translate> for Translator {
/// #     async fn handle(&self, t: Translate, ctx: &Context) -> Result<(), BoxError> {
/// #         ctx.emit(Completed { file: t.0 })?; Ok(())
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
/// # let runtime = Runtime::builder().service(Translator::default).start().await?;
/// let translator = runtime.service::<Translator>()?;
/// let mut completed = translator.on::<Completed>().capture().await?;
/// let mut failed = translator.on::<Failed>().capture().await?;
///
/// translator.act(Translate("test.txt".into())).await?;
/// runtime.events().flush().await?;
///
/// assert_eq!(completed.events().len(), 1);
/// assert_eq!(completed.events()[0].file, "test.txt");
/// assert!(failed.events().is_empty());
/// # runtime.shutdown().await }
/// ```
#[derive(Debug)]
pub struct Captured<T> {
    stream: EventStream<T>,
    seen: Vec<Emitted<T>>,
}

impl<T: Send + Sync + 'static> Captured<T> {
    /// Every event captured so far, in the order they came.
    pub fn events(&mut self) -> &[Emitted<T>] {
        while let Some(event) = self.stream.try_next() {
            self.seen.push(event);
        }
        &self.seen
    }

    /// Waits for the next event; `None` once the subscription has ended. The event is kept in
    /// [`events`](Self::events) too.
    pub async fn next(&mut self) -> Option<Emitted<T>> {
        let event = self.stream.next().await?;
        self.seen.push(event.clone());
        Some(event)
    }

    /// Waits until `count` events in all have been captured, and returns them.
    pub async fn wait_for(&mut self, count: usize) -> &[Emitted<T>] {
        while self.events().len() < count {
            if self.next().await.is_none() {
                break;
            }
        }
        &self.seen
    }

    /// The stream the events come through (its statistics, its subscription).
    pub fn stream(&self) -> &EventStream<T> {
        &self.stream
    }
}

impl<T, S, K, F> On<T, S, K, F>
where
    T: Send + Sync + 'static,
    K: Take<T>,
    F: Filter<T>,
{
    /// Subscribes the chain and captures this clause's events, for tests.
    ///
    /// # Errors
    ///
    /// The errors of [`Chain::subscribe`](super::Chain::subscribe).
    pub async fn capture(self) -> Result<Captured<T>, Error> {
        Ok(Captured {
            stream: self.stream().await?,
            seen: Vec::new(),
        })
    }
}
