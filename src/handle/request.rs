//! Fluent requests: build a call, set its options, then `.await` it.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::Callee;
use crate::Error;
use crate::action::{Action, CallOptions, Handler};
use crate::host::{ReplyFuture, ServiceCell};
use crate::service::{Command, Service};

/// A typed action call being built. Set options, then `.await` it (or call
/// [`send`](ActRequest::send)).
///
/// # Cancel safety
///
/// The action is delivered when the request is first polled. Dropping the future afterwards
/// stops the wait, not the work: the handler still runs, unless its timeout passes.
#[must_use = "an action is not sent until the request is awaited"]
pub struct ActRequest<S: Service, A: Action> {
    cell: Arc<ServiceCell<S>>,
    action: A,
    options: CallOptions,
}

impl<S: Service, A: Action> std::fmt::Debug for ActRequest<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActRequest")
            .field("service", &self.cell.name())
            .field("action", &A::NAME)
            .field("options", &self.options)
            .finish()
    }
}

impl<S, A> ActRequest<S, A>
where
    S: Handler<A>,
    A: Action,
{
    pub(crate) fn new(cell: Arc<ServiceCell<S>>, action: A) -> Self {
        ActRequest {
            cell,
            action,
            options: CallOptions::default(),
        }
    }

    /// Among queued calls of the service, the higher priority runs first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// Gives up after `timeout`: the caller gets [`Error::Timeout`] and the handler is cancelled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Tags the call, and everything its handler does, with a correlation id.
    pub fn correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.options.correlation_id = Some(id.into());
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs another action on the same service after this one succeeds; the chain's result is
    /// the last action's reply. Options set after `then` apply to the new action.
    pub fn then<B>(self, next: B) -> Then<Self, S, B>
    where
        S: Handler<B>,
        B: Action,
    {
        let cell = self.cell.clone();
        Then {
            prev: self,
            next: ActRequest::new(cell, next),
        }
    }

    /// Sends the action and waits for its reply; the same as `.await`.
    ///
    /// # Errors
    ///
    /// See [`ServiceHandle::act`](crate::ServiceHandle::act).
    pub async fn send(self) -> Result<A::Reply, Error> {
        self.await
    }
}

impl<S, A> IntoFuture for ActRequest<S, A>
where
    S: Handler<A>,
    A: Action,
{
    type Output = Result<A::Reply, Error>;
    type IntoFuture = ReplyFuture<A::Reply>;

    fn into_future(self) -> Self::IntoFuture {
        ServiceCell::call(self.cell, self.action, self.options)
    }
}

/// A chain of actions run one after another; see [`ActRequest::then`].
#[must_use = "the actions are not sent until the chain is awaited"]
pub struct Then<P, S: Service, B: Action> {
    prev: P,
    next: ActRequest<S, B>,
}

impl<P, S: Service, B: Action> std::fmt::Debug for Then<P, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Then")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<P, T, S, B> Then<P, S, B>
where
    P: IntoFuture<Output = Result<T, Error>> + Send + 'static,
    P::IntoFuture: Send,
    S: Handler<B>,
    B: Action,
{
    /// Sets the priority of the last action of the chain.
    pub fn priority(mut self, priority: i32) -> Self {
        self.next = self.next.priority(priority);
        self
    }

    /// Sets the timeout of the last action of the chain.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.next = self.next.timeout(timeout);
        self
    }

    /// Sets the correlation id of the last action of the chain.
    pub fn correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.next = self.next.correlation_id(id);
        self
    }

    /// Runs another action after the chain succeeds.
    pub fn then<C>(self, next: C) -> Then<Self, S, C>
    where
        S: Handler<C>,
        C: Action,
    {
        let cell = self.next.cell.clone();
        Then {
            prev: self,
            next: ActRequest::new(cell, next),
        }
    }
}

impl<P, T, S, B> IntoFuture for Then<P, S, B>
where
    P: IntoFuture<Output = Result<T, Error>> + Send + 'static,
    P::IntoFuture: Send,
    S: Handler<B>,
    B: Action,
{
    type Output = Result<B::Reply, Error>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.prev.await?;
            self.next.await
        })
    }
}

/// A command being built; `.await` it to wait until it has run.
#[must_use = "a command is not sent until the request is awaited"]
pub struct CommandRequest {
    service: Callee,
    command: Command,
    options: CallOptions,
}

impl std::fmt::Debug for CommandRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandRequest")
            .field("service", &self.service.name())
            .field("command", &self.command)
            .field("options", &self.options)
            .finish()
    }
}

impl CommandRequest {
    pub(crate) fn new(service: Callee, command: Command) -> Self {
        CommandRequest {
            service,
            command,
            options: CallOptions::default(),
        }
    }

    /// Among queued calls of the service, the higher priority runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// Gives up after `timeout` (the command's handler is cancelled).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Tags the command with a correlation id.
    pub fn correlation_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.options.correlation_id = Some(id.into());
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }
}

impl IntoFuture for CommandRequest {
    type Output = Result<(), Error>;
    type IntoFuture = BoxFuture<'static, Result<(), Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.service.command(self.command, self.options))
    }
}
