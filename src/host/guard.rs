//! One future that runs user code with everything a call carries, in a single layer: the span,
//! the correlation id, a panic guard, a deadline and a cancellation token.
//!
//! Nesting the equivalent combinators moves the user's future through five layers of state
//! when a call starts; this does it in one, and allocates a timer or a cancellation waiter only
//! when the work has to wait. The guard itself ([`Guard`]) is kept apart from the future it
//! guards, and takes the cancellation token at each poll rather than borrowing it for its life.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::with_correlation;

/// How guarded user code ended.
pub(crate) enum Outcome<T> {
    Done(T),
    TimedOut,
    Cancelled,
    Panicked(String),
}

/// Everything that guards one piece of user code, apart from the code itself: kept beside the
/// code's future in a [`Guarded`], and applied at each poll by [`Guard::poll`]. As a value of its
/// own, its fields lie together whatever the future's layout; the same fields and the same
/// steps laid out in `Guarded` itself cost an action about 70 more cycles (least of six runs of
/// `benches/ops.rs act`, 1,897 against 1,827) and a `tell` 12 more instructions.
pub(crate) struct Guard {
    span: tracing::Span,
    correlation: Option<Arc<str>>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The wait on the cancellation token, made the first time the work has to wait.
    waiting: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Guard {
    /// A guard with a deadline, polling inside `span` with `correlation` as the thread's
    /// correlation id.
    pub(crate) fn new(
        deadline: Option<Instant>,
        span: tracing::Span,
        correlation: Option<Arc<str>>,
    ) -> Self {
        Guard {
            span,
            correlation,
            deadline,
            sleep: None,
            waiting: None,
        }
    }

    /// Polls `fut` once under the guard; `cancel` is the token that stops the work.
    ///
    /// The work is polled first: work that finishes at once never touches the timer or the
    /// token.
    #[inline]
    pub(crate) fn poll<F: Future>(
        &mut self,
        fut: Pin<&mut F>,
        cancel: Option<&CancellationToken>,
        cx: &mut Context<'_>,
    ) -> Poll<Outcome<F::Output>> {
        let polled = {
            let _entered = self.span.enter();
            // Hosts and their tasks never run inside a correlation scope, so without an id of
            // its own the work needs none: nested calls then find no id, as they should.
            match &self.correlation {
                Some(id) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                    with_correlation(id.clone(), || fut.poll(cx))
                })),
                None => std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))),
            }
        };
        match polled {
            Ok(Poll::Ready(v)) => return Poll::Ready(Outcome::Done(v)),
            Err(payload) => return Poll::Ready(Outcome::Panicked(panic_message(payload.as_ref()))),
            Ok(Poll::Pending) => {}
        }
        if let Some(at) = self.deadline {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Outcome::TimedOut);
            }
        }
        if self.waiting.is_none()
            && let Some(token) = cancel
        {
            self.waiting = Some(Box::pin(token.clone().cancelled_owned()));
        }
        if let Some(waiting) = &mut self.waiting
            && waiting.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Outcome::Cancelled);
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// See the module docs.
    pub(crate) struct Guarded<'a, F> {
        #[pin]
        fut: F,
        guard: Guard,
        cancel: Option<&'a CancellationToken>,
    }
}

/// Guards `fut` with a deadline and a cancellation token, polling it inside `span`.
pub(crate) fn guarded<F: Future>(
    fut: F,
    deadline: Option<Instant>,
    cancel: Option<&CancellationToken>,
    span: tracing::Span,
) -> Guarded<'_, F> {
    guarded_call(fut, deadline, cancel, span, None)
}

/// As [`guarded`], with `correlation` as the thread's correlation id while the work is polled.
pub(crate) fn guarded_call<'a, F: Future>(
    fut: F,
    deadline: Option<Instant>,
    cancel: Option<&'a CancellationToken>,
    span: tracing::Span,
    correlation: Option<Arc<str>>,
) -> Guarded<'a, F> {
    Guarded {
        fut,
        guard: Guard::new(deadline, span, correlation),
        cancel,
    }
}

impl<F: Future> Future for Guarded<'_, F> {
    type Output = Outcome<F::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.guard.poll(this.fut, *this.cancel, cx)
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
