//! Units of work a host runs on its tasks: typed actions and commands.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use ractor::{ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::CORRELATION;
use super::messages::{Internal, InternalKind, ServiceMessage};
use super::scheduler::{Admit, Scheduler};
use crate::action::{Action, Handler};
use crate::handle::ServiceCell;
use crate::service::{Command, Context, Service};
use crate::{BoxError, Error};

/// How a job's run ended, as far as the host is concerned.
pub(crate) enum JobEnd {
    /// It ran (or was refused) and replied; `failed` counts it as a failure.
    Done { failed: bool },
    /// User code panicked: the incarnation must fail.
    Panicked(String),
}

/// A queued or running unit of work of a service `S`.
pub(crate) trait Job<S: Service>: Send + 'static {
    fn priority(&self) -> i32;
    fn run(self: Box<Self>, inc: Arc<Incarnation<S>>) -> BoxFuture<'static, JobEnd>;
    /// Replies with `err` without running.
    fn reject(self: Box<Self>, err: Error);
}

/// One life of a service between its start and its stop or failure.
pub(crate) struct Incarnation<S: Service> {
    pub(crate) svc: Arc<S>,
    pub(crate) cell: Arc<ServiceCell<S>>,
    pub(crate) sched: Mutex<Scheduler<S>>,
    pub(crate) cancel: CancellationToken,
    cancel_reason: OnceLock<Error>,
    pub(crate) host: ActorRef<ServiceMessage<S>>,
}

impl<S: Service> Incarnation<S> {
    pub(crate) fn new(
        svc: S,
        cell: Arc<ServiceCell<S>>,
        host: ActorRef<ServiceMessage<S>>,
    ) -> Self {
        let limit = cell.def.concurrency;
        Incarnation {
            svc: Arc::new(svc),
            cell,
            sched: Mutex::new(Scheduler::new(limit)),
            cancel: CancellationToken::new(),
            cancel_reason: OnceLock::new(),
            host,
        }
    }

    pub(crate) fn context(&self, correlation_id: Option<Arc<str>>) -> Context {
        Context::new(
            self.cell.shared.clone(),
            correlation_id,
            self.cancel.clone(),
            self.host.get_cell(),
        )
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler<S>> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels everything the incarnation runs; in-flight calls get `reason`.
    pub(crate) fn cancel(&self, reason: Error) {
        let _ = self.cancel_reason.set(reason);
        self.cancel.cancel();
    }

    fn cancelled_error(&self) -> Error {
        self.cancel_reason
            .get()
            .cloned()
            .unwrap_or_else(|| Error::ServiceUnavailable {
                service: self.cell.name().to_owned(),
                reason: "stopped".into(),
            })
    }

    /// Runs the job at once if a slot is free, queues it otherwise.
    pub(crate) fn submit(self: &Arc<Self>, job: Box<dyn Job<S>>) {
        let shared = &self.cell.shared;
        let admitted = {
            let mut sched = self.lock();
            let admitted = sched.admit(job);
            shared.queued.store(sched.len(), Ordering::Relaxed);
            admitted
        };
        match admitted {
            Admit::Run(job) => {
                shared.in_flight.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(drive(self.clone(), job));
            }
            Admit::Queued => {}
            Admit::Closed(job, err) => job.reject(err),
        }
    }
}

/// Runs jobs on one task until the queue is empty: a finished job hands its slot to the next.
async fn drive<S: Service>(inc: Arc<Incarnation<S>>, mut job: Box<dyn Job<S>>) {
    let shared = inc.cell.shared.clone();
    loop {
        let end = job.run(inc.clone()).await;
        shared.calls.fetch_add(1, Ordering::Relaxed);
        let next = match end {
            JobEnd::Done { failed } => {
                if failed {
                    shared.failures.fetch_add(1, Ordering::Relaxed);
                }
                let mut sched = inc.lock();
                let next = sched.next();
                shared.queued.store(sched.len(), Ordering::Relaxed);
                next
            }
            JobEnd::Panicked(reason) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                inc.lock().release();
                let _ = inc
                    .host
                    .cast(ServiceMessage::Internal(Internal(InternalKind::Failed(
                        reason,
                    ))));
                None
            }
        };
        match next {
            Some(j) => job = j,
            None => {
                shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                shared.idle.notify_waiters();
                return;
            }
        }
    }
}

/// How guarded user code ended.
pub(crate) enum Outcome<T> {
    Done(T),
    TimedOut,
    Cancelled,
    Panicked(String),
}

/// Runs user code with a deadline, a cancellation token and a panic guard.
pub(crate) async fn guarded<F: Future>(
    fut: F,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Outcome<F::Output> {
    let caught = AssertUnwindSafe(fut).catch_unwind();
    let timed = async move {
        match deadline {
            Some(at) => tokio::time::timeout_at(at, caught).await.ok(),
            None => Some(caught.await),
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Outcome::Cancelled,
        r = timed => match r {
            None => Outcome::TimedOut,
            Some(Ok(v)) => Outcome::Done(v),
            Some(Err(payload)) => Outcome::Panicked(panic_message(payload.as_ref())),
        },
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

/// Where a call stands against its deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) after: Duration,
}

impl Deadline {
    pub(crate) fn after(after: Duration) -> Self {
        Deadline {
            at: Instant::now() + after,
            after,
        }
    }
}

/// Runs one call's user future with everything a call carries: span, correlation, deadline,
/// cancellation and panic guard. Returns the caller's result and the host's view.
async fn execute<S, T, F>(
    inc: &Incarnation<S>,
    label: &str,
    deadline: Option<Deadline>,
    span: tracing::Span,
    correlation_id: Option<Arc<str>>,
    fut: F,
) -> (Result<T, Error>, JobEnd)
where
    S: Service,
    F: Future<Output = Result<T, BoxError>>,
{
    let service = inc.cell.name();
    if let Some(d) = deadline {
        if Instant::now() >= d.at {
            let err = Error::Timeout {
                service: service.to_owned(),
                action: label.to_owned(),
                after: d.after,
            };
            return (Err(err), JobEnd::Done { failed: true });
        }
    }
    let fut = CORRELATION.scope(correlation_id, fut).instrument(span);
    match guarded(fut, deadline.map(|d| d.at), &inc.cancel).await {
        Outcome::Done(Ok(v)) => (Ok(v), JobEnd::Done { failed: false }),
        Outcome::Done(Err(e)) => (
            Err(Error::action_failed(service, label, e)),
            JobEnd::Done { failed: true },
        ),
        Outcome::TimedOut => {
            let after = deadline.map(|d| d.after).unwrap_or_default();
            tracing::warn!(
                service,
                action = label,
                ?after,
                "call timed out; handler cancelled"
            );
            let err = Error::Timeout {
                service: service.to_owned(),
                action: label.to_owned(),
                after,
            };
            (Err(err), JobEnd::Done { failed: true })
        }
        Outcome::Cancelled => (Err(inc.cancelled_error()), JobEnd::Done { failed: true }),
        Outcome::Panicked(msg) => {
            let reason = format!("`{label}` panicked: {msg}");
            tracing::error!(service, action = label, %reason, "handler panicked");
            let err = Error::ServiceFailed {
                service: service.to_owned(),
                reason: reason.clone(),
            };
            (Err(err), JobEnd::Panicked(reason))
        }
    }
}

/// A typed action on its way to its handler.
pub(crate) struct ActionJob<A: Action> {
    pub(crate) action: A,
    pub(crate) priority: i32,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) reply: RpcReplyPort<Result<A::Reply, Error>>,
}

impl<S, A> Job<S> for ActionJob<A>
where
    S: Handler<A>,
    A: Action,
{
    fn priority(&self) -> i32 {
        self.priority
    }

    fn run(self: Box<Self>, inc: Arc<Incarnation<S>>) -> BoxFuture<'static, JobEnd> {
        Box::pin(async move {
            let ActionJob {
                action,
                deadline,
                correlation_id,
                reply,
                ..
            } = *self;
            let ctx = inc.context(correlation_id.clone());
            let span = tracing::info_span!(
                "action",
                service = %inc.cell.shared.name,
                action = A::NAME,
                correlation_id = correlation_id.as_deref(),
            );
            let fut = inc.svc.handle(action, &ctx);
            let (result, end) = execute(&inc, A::NAME, deadline, span, correlation_id, fut).await;
            let _ = reply.send(result);
            end
        })
    }

    fn reject(self: Box<Self>, err: Error) {
        let _ = self.reply.send(Err(err));
    }
}

/// A command on its way to the service.
pub(crate) struct CommandJob {
    pub(crate) command: Command,
    pub(crate) priority: i32,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) reply: Option<RpcReplyPort<Result<(), Error>>>,
}

impl CommandJob {
    pub(crate) fn respond(self, result: Result<(), Error>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(result);
        }
    }
}

impl<S: Service> Job<S> for CommandJob {
    fn priority(&self) -> i32 {
        self.priority
    }

    fn run(self: Box<Self>, inc: Arc<Incarnation<S>>) -> BoxFuture<'static, JobEnd> {
        Box::pin(async move {
            let CommandJob {
                command,
                deadline,
                correlation_id,
                reply,
                ..
            } = *self;
            let label = command.name().to_owned();
            let ctx = inc.context(correlation_id.clone());
            let span = tracing::info_span!(
                "command",
                service = %inc.cell.shared.name,
                command = %label,
                correlation_id = correlation_id.as_deref(),
            );
            let fut = inc.svc.command(command, &ctx);
            let (result, end) = execute(&inc, &label, deadline, span, correlation_id, fut).await;
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            end
        })
    }

    fn reject(self: Box<Self>, err: Error) {
        self.respond(Err(err));
    }
}
