//! One future that runs user code with everything a call carries, in a single layer: the span,
//! the correlation id, a panic guard, a deadline and a cancellation token.
//!
//! Nesting the equivalent combinators moves the user's future through five layers of state
//! when a call starts; this does it in one, and allocates a timer or a cancellation waiter only
//! when the work has to wait.

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

/// The token that stops the work: none, not waited on yet, or waited on since the work first
/// had to wait.
enum Cancel<'a> {
    Never,
    Token(&'a CancellationToken),
    Waiting(Pin<Box<WaitForCancellationFutureOwned>>),
}

pin_project_lite::pin_project! {
    /// See the module docs.
    pub(crate) struct Guarded<'a, F> {
        #[pin]
        fut: F,
        span: tracing::Span,
        correlation: Option<Arc<str>>,
        deadline: Option<Instant>,
        sleep: Option<Pin<Box<Sleep>>>,
        cancel: Cancel<'a>,
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
        span,
        correlation,
        deadline,
        sleep: None,
        cancel: cancel.map_or(Cancel::Never, Cancel::Token),
    }
}

impl<F: Future> Future for Guarded<'_, F> {
    type Output = Outcome<F::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The work is polled first: work that finishes at once never touches the timer or the
        // token.
        let fut = this.fut;
        let polled = {
            let _entered = this.span.enter();
            // Hosts and their tasks never run inside a correlation scope, so without an id of
            // its own the work needs none: nested calls then find no id, as they should.
            match this.correlation {
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
        if let Some(at) = *this.deadline {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Outcome::TimedOut);
            }
        }
        if let Cancel::Token(token) = *this.cancel {
            *this.cancel = Cancel::Waiting(Box::pin(token.clone().cancelled_owned()));
        }
        if let Cancel::Waiting(waiting) = this.cancel
            && waiting.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Outcome::Cancelled);
        }
        Poll::Pending
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
