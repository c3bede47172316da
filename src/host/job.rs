//! Units of work a host runs on its tasks: typed actions and commands.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::{Outcome, guarded_call};
use super::messages::{Internal, InternalKind, ServiceMessage};
use super::scheduler::{Admit, Scheduler};
use crate::action::{Action, Handler};
use crate::handle::ServiceCell;
use crate::service::{Command, Context, Life, Service};
use crate::{BoxError, Error};

/// How a job's run ended, as far as the host is concerned.
pub(crate) enum JobEnd {
    /// It ran (or was refused) and replied.
    Done,
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
    cancel_reason: OnceLock<Error>,
    pub(crate) host: ActorRef<ServiceMessage<S>>,
    life: Arc<Life>,
}

impl<S: Service> Incarnation<S> {
    pub(crate) fn new(
        svc: S,
        cell: Arc<ServiceCell<S>>,
        host: ActorRef<ServiceMessage<S>>,
    ) -> Self {
        let limit = cell.def.concurrency;
        let life = Arc::new(Life {
            shared: cell.shared.clone(),
            cancel: CancellationToken::new(),
            host: host.get_cell(),
        });
        Incarnation {
            svc: Arc::new(svc),
            cell,
            sched: Mutex::new(Scheduler::new(limit)),
            cancel_reason: OnceLock::new(),
            host,
            life,
        }
    }

    pub(crate) fn context(&self, correlation_id: Option<Arc<str>>) -> Context {
        Context::new(self.life.clone(), correlation_id)
    }

    /// The token that stops everything this incarnation runs.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.life.cancel
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler<S>> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels everything the incarnation runs; in-flight calls get `reason`.
    pub(crate) fn cancel(&self, reason: Error) {
        let _ = self.cancel_reason.set(reason);
        self.life.cancel.cancel();
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
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                self.start(job);
            }
            Admit::Queued => {}
            Admit::Closed(job, err) => job.reject(err),
        }
    }

    /// Polls a job once, inline; only if it has to wait does it move to a task of its own.
    ///
    /// Most handlers either finish at once or reach an `.await` quickly, so the common call
    /// costs no task spawn and no extra wake-up. The price: code that runs before a handler's
    /// first `.await` runs on the host's task (see `docs/design/host.md`).
    fn start(self: &Arc<Self>, job: Box<dyn Job<S>>) {
        let mut running = job.run(self.clone());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match running.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(end) => {
                if let Some(next) = self.finish(end) {
                    tokio::spawn(drive(self.clone(), next.run(self.clone())));
                }
            }
            std::task::Poll::Pending => {
                tokio::spawn(drive(self.clone(), running));
            }
        }
    }

    /// Books a finished job and hands its slot to the next queued one, if any.
    fn finish(&self, end: JobEnd) -> Option<Box<dyn Job<S>>> {
        let shared = &self.cell.shared;
        let next = match end {
            JobEnd::Done => {
                let mut sched = self.lock();
                let next = sched.next();
                shared.queued.store(sched.len(), Ordering::Relaxed);
                next
            }
            JobEnd::Panicked(reason) => {
                self.lock().release();
                let failed = InternalKind::Failed(reason);
                let _ = self.host.cast(ServiceMessage::Internal(Internal(failed)));
                None
            }
        };
        if next.is_none() {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.wake_if_draining();
        }
        next
    }
}

/// Runs a job that had to wait, then every job queued behind it, on one task.
async fn drive<S: Service>(inc: Arc<Incarnation<S>>, mut running: BoxFuture<'static, JobEnd>) {
    loop {
        let end = running.await;
        match inc.finish(end) {
            Some(next) => running = next.run(inc.clone()),
            None => return,
        }
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

/// The caller's result of a call whose guarded run ended with `outcome`, and the host's view.
///
/// Books the call before the caller hears back, so the status it reads next includes it.
fn settle<S: Service, T>(
    inc: &Incarnation<S>,
    label: &str,
    deadline: Option<Deadline>,
    outcome: Outcome<Result<T, BoxError>>,
) -> (Result<T, Error>, JobEnd) {
    let service = inc.cell.name();
    let (result, end) = match outcome {
        Outcome::Done(Ok(v)) => (Ok(v), JobEnd::Done),
        Outcome::Done(Err(e)) => (Err(Error::action_failed(service, label, e)), JobEnd::Done),
        Outcome::TimedOut => {
            let after = deadline.map(|d| d.after).unwrap_or_default();
            tracing::warn!(
                service,
                action = label,
                ?after,
                "call timed out; handler cancelled"
            );
            (Err(timeout(service, label, after)), JobEnd::Done)
        }
        Outcome::Cancelled => (Err(inc.cancelled_error()), JobEnd::Done),
        Outcome::Panicked(msg) => {
            let reason = format!("`{label}` panicked: {msg}");
            tracing::error!(service, action = label, %reason, "handler panicked");
            let err = Error::ServiceFailed {
                service: service.to_owned(),
                reason: reason.clone(),
            };
            (Err(err), JobEnd::Panicked(reason))
        }
    };
    book(inc, result.is_err());
    (result, end)
}

fn book<S: Service>(inc: &Incarnation<S>, failed: bool) {
    let shared = &inc.cell.shared;
    shared.calls.fetch_add(1, Ordering::Relaxed);
    if failed {
        shared.failures.fetch_add(1, Ordering::Relaxed);
    }
}

fn timeout(service: &str, label: &str, after: Duration) -> Error {
    Error::Timeout {
        service: service.to_owned(),
        action: label.to_owned(),
        after,
    }
}

/// The timeout error of a call whose deadline passed while it waited in the queue.
fn expired<S: Service>(
    inc: &Incarnation<S>,
    label: &str,
    deadline: Option<Deadline>,
) -> Option<Error> {
    let d = deadline?;
    if Instant::now() < d.at {
        return None;
    }
    book(inc, true);
    Some(timeout(inc.cell.name(), label, d.after))
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
            if let Some(err) = expired(&inc, A::NAME, deadline) {
                let _ = reply.send(Err(err));
                return JobEnd::Done;
            }
            let ctx = inc.context(correlation_id.clone());
            let span = tracing::info_span!(
                "action",
                service = %inc.cell.shared.name,
                action = A::NAME,
                correlation_id = correlation_id.as_deref(),
            );
            let outcome = guarded_call(
                inc.svc.handle(action, &ctx),
                deadline.map(|d| d.at),
                Some(inc.token()),
                span,
                correlation_id,
            )
            .await;
            let (result, end) = settle(&inc, A::NAME, deadline, outcome);
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
            let label = command.label();
            if let Some(err) = expired(&inc, &label, deadline) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(err));
                }
                return JobEnd::Done;
            }
            let ctx = inc.context(correlation_id.clone());
            let span = tracing::info_span!(
                "command",
                service = %inc.cell.shared.name,
                command = %label,
                correlation_id = correlation_id.as_deref(),
            );
            let outcome = guarded_call(
                inc.svc.command(command, &ctx),
                deadline.map(|d| d.at),
                Some(inc.token()),
                span,
                correlation_id,
            )
            .await;
            let (result, end) = settle(&inc, &label, deadline, outcome);
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
