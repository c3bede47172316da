//! A call's reply on its way back to the caller, bounded by the call's timeout.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

#[cfg(feature = "cluster")]
use futures::future::BoxFuture;
use tokio::time::Sleep;

use super::cell::ServiceCell;
use super::{ServiceShared, SlimReceiver};
use crate::Error;
use crate::service::Service;

/// The reply of a call on its way back: resolves to the reply, or to the error that stopped it.
#[must_use = "futures do nothing unless polled"]
pub struct ReplyFuture<T> {
    /// The service called, for its name in errors: the caller's own reference, handed over.
    service: Arc<dyn Called>,
    label: Cow<'static, str>,
    /// Boxed on the way out: an error is rare, and the future moves a few times before it is
    /// polled.
    rx: Result<Source<T>, Option<Box<Error>>>,
    timeout: Option<(Pin<Box<Sleep>>, Duration)>,
}

/// What a reply future keeps of the service it called: the cell of a typed call (the request's
/// reference moves into the future, no count is taken) or the service's shared state.
pub(crate) trait Called: Send + Sync + 'static {
    fn shared(&self) -> &ServiceShared;
}

impl Called for ServiceShared {
    fn shared(&self) -> &ServiceShared {
        self
    }
}

impl<S: Service> Called for ServiceCell<S> {
    fn shared(&self) -> &ServiceShared {
        &self.shared
    }
}

/// Where a reply comes from: the host's reply channel, or a call to another node.
enum Source<T> {
    Channel(SlimReceiver<T>),
    #[cfg(feature = "cluster")]
    Remote(BoxFuture<'static, Result<T, Error>>),
}

impl<T> std::fmt::Debug for ReplyFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyFuture")
            .field("service", &self.service.shared().name)
            .field("call", &self.label)
            .finish_non_exhaustive()
    }
}

impl<T> ReplyFuture<T> {
    #[inline(always)]
    pub(crate) fn new(
        service: Arc<dyn Called>,
        label: Cow<'static, str>,
        sent: Result<SlimReceiver<T>, Error>,
        timeout: Option<Duration>,
    ) -> Self {
        let timeout = match (&sent, timeout) {
            (Ok(_), Some(after)) => Some((Box::pin(tokio::time::sleep(after)), after)),
            _ => None,
        };
        ReplyFuture {
            service,
            label,
            rx: sent.map(Source::Channel).map_err(|err| Some(Box::new(err))),
            timeout,
        }
    }

    /// The reply of a call sent to another node.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote(
        service: Arc<dyn Called>,
        label: Cow<'static, str>,
        reply: BoxFuture<'static, Result<T, Error>>,
        timeout: Option<Duration>,
    ) -> Self {
        ReplyFuture {
            service,
            label,
            rx: Ok(Source::Remote(reply)),
            timeout: timeout.map(|after| (Box::pin(tokio::time::sleep(after)), after)),
        }
    }
}

impl<T> Future for ReplyFuture<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Each end returns where it is found: the output carries an `Error` (96 bytes), and a
        // result held in a local first is copied once more on its way out.
        match &mut this.rx {
            Ok(Source::Channel(rx)) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(Ok(reply))) => return Poll::Ready(Ok(reply)),
                Poll::Ready(Ok(Err(err))) => return Poll::Ready(Err(*err)),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(this.service.shared().lost())),
                Poll::Pending => {}
            },
            #[cfg(feature = "cluster")]
            Ok(Source::Remote(reply)) => {
                if let Poll::Ready(result) = reply.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
            }
            Err(err) => {
                let shared = this.service.shared();
                return Poll::Ready(Err(err.take().map_or_else(|| shared.lost(), |e| *e)));
            }
        }
        if let Some((sleep, after)) = &mut this.timeout
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(Error::Timeout {
                service: this.service.shared().name.to_string(),
                action: this.label.to_string(),
                after: *after,
            }));
        }
        Poll::Pending
    }
}
