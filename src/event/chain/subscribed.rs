//! What a subscribed chain gives back: the [`Subscription`] that disposes it, the
//! [`EventStream`] of a polled clause, and the task that drives a closure subscriber.

use super::*;

/// What an event handler may return: nothing, or a `Result` whose error is counted and logged.
pub trait HandlerResult {
    /// The failure, rendered, if there was one.
    ///
    /// # Errors
    ///
    /// The handler's error as text.
    fn into_result(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The task of a closure subscriber: one event at a time until the subscription ends.
pub(super) async fn drive<T, H, Fut>(sub: Arc<Sub<T>>, handler: H)
where
    T: Send + Sync + 'static,
    H: Fn(Emitted<T>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    while let Some(event) = std::future::poll_fn(|cx| sub.poll_next(cx)).await {
        let id = event.id();
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
            Ok(run) => AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .map(HandlerResult::into_result),
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                tracing::warn!(
                    subscription = sub.id(),
                    event = sub.event(),
                    event_id = id,
                    "event handler failed: {message}"
                );
                sub.failed(message);
            }
            Err(panic) => {
                let message = format!("panicked: {}", panic_message(&*panic));
                tracing::error!(
                    subscription = sub.id(),
                    event = sub.event(),
                    event_id = id,
                    "event handler {message}"
                );
                sub.failed(message);
            }
        }
    }
}

/// An active subscription: one or several clauses, disposed together.
///
/// Dropping it disposes it; [`detach`](Self::detach) keeps it until the runtime stops.
#[must_use = "dropping a subscription disposes it at once; `detach` keeps it"]
pub struct Subscription {
    pub(super) events: Arc<EventsShared>,
    pub(super) subs: Vec<Arc<dyn Deliver>>,
    pub(super) detached: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field(
                "clauses",
                &self.subs.iter().map(|s| s.id()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Subscription {
    /// Ends every clause: queued events are discarded. A handler already running, or one whose
    /// task had taken its event from the queue, finishes; no other runs.
    pub fn dispose(self) {
        drop(self);
    }

    /// Keeps the subscription active until the runtime stops, without a handle.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Whether any clause is still active.
    pub fn is_active(&self) -> bool {
        self.subs.iter().any(|s| !s.is_ended())
    }

    /// What each clause has seen, in chain order.
    pub fn stats(&self) -> Vec<SubscriptionStats> {
        self.subs.iter().map(|s| s.stats()).collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        for sub in &self.subs {
            self.events.remove(sub.as_ref(), Ended::Disposed);
        }
    }
}

/// A clause's events as a [`Stream`](futures::Stream). It ends when the subscription ends;
/// dropping it disposes the subscription.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream<T> {
    pub(super) sub: Arc<Sub<T>>,
    pub(super) subscription: Subscription,
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscription", &self.subscription)
            .finish()
    }
}

impl<T: Send + Sync + 'static> EventStream<T> {
    /// The subscription the stream belongs to.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// What this clause has seen.
    pub fn stats(&self) -> SubscriptionStats {
        self.sub.stats()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Emitted<T>> {
        self.sub.try_pop()
    }
}

impl<T: Send + Sync + 'static> futures::Stream for EventStream<T> {
    type Item = Emitted<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Emitted<T>>> {
        self.sub.poll_next(cx)
    }
}
