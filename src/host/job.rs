//! Units of work a host runs on its tasks: typed actions and commands.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ServiceCell;
use super::guard::{Outcome, guarded_call};
use super::messages::{Internal, InternalKind, ServiceMessage};
use super::reply::ReplyTo;
use super::scheduler::{Admit, Gate, Scheduler};
use crate::action::{Action, Handler, JobRun};
use crate::service::{Command, Context, Life, Service};
use crate::status::{RunKind, RunOutcome, RunRecord};
use crate::store::id::JobId;
use crate::{BoxError, Error};

/// How a job's run ended, as far as the host is concerned.
pub(crate) enum JobEnd {
    /// It ran (or was refused) and replied.
    Done,
    /// User code panicked: the incarnation must fail.
    Panicked(String),
}

/// A queued or running unit of work of a service `S`.
///
/// A job is one allocation for its whole life: it holds its call until it begins, and then, in
/// the same place, the future that runs it (see [`Staged`]).
pub(crate) trait Job<S: Service>: Send + 'static {
    fn priority(&self) -> i32;
    /// Runs the job: the first poll begins it with `inc`, later polls go on with it.
    fn poll_run(
        self: Pin<&mut Self>,
        inc: &Arc<Incarnation<S>>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<JobEnd>;
    /// Replies with `err` without running; a job that has begun is left to finish.
    fn reject(self: Pin<&mut Self>, err: Error);
}

/// A job, as the queue and the host hold it.
pub(crate) type JobBox<S> = Pin<Box<dyn Job<S>>>;

/// A call that can be answered with an error instead of being run.
pub(crate) trait Refuse {
    fn refuse(self, err: Error);
}

pin_project_lite::pin_project! {
    /// A call and the future it becomes, in one allocation: `begin` turns `call` into `running`
    /// in place when the job is first polled.
    ///
    /// The future's type is that of `begin`'s result, named by inference from the function item
    /// passed in, so the sender allocates room for it with the call and the host allocates
    /// nothing to start a job.
    pub(crate) struct Staged<C, M, F> {
        priority: i32,
        call: Option<C>,
        begin: M,
        #[pin]
        running: Option<F>,
    }
}

impl<C, M, F> Staged<C, M, F> {
    fn new<S>(priority: i32, call: C, begin: M) -> Self
    where
        S: Service,
        M: Fn(C, Arc<Incarnation<S>>) -> F,
    {
        Staged {
            priority,
            call: Some(call),
            begin,
            running: None,
        }
    }
}

impl<S, C, M, F> Job<S> for Staged<C, M, F>
where
    S: Service,
    C: Refuse + Send + 'static,
    M: Fn(C, Arc<Incarnation<S>>) -> F + Send + 'static,
    F: Future<Output = JobEnd> + Send + 'static,
{
    fn priority(&self) -> i32 {
        self.priority
    }

    fn poll_run(
        self: Pin<&mut Self>,
        inc: &Arc<Incarnation<S>>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<JobEnd> {
        let mut this = self.project();
        if let Some(call) = this.call.take() {
            this.running.set(Some((this.begin)(call, inc.clone())));
        }
        match this.running.as_pin_mut() {
            Some(running) => running.poll(cx),
            None => Poll::Ready(JobEnd::Done),
        }
    }

    fn reject(self: Pin<&mut Self>, err: Error) {
        if let Some(call) = self.project().call.take() {
            call.refuse(err);
        }
    }
}

pin_project_lite::pin_project! {
    /// A job that begins as it is made: the future of a command that found a free slot.
    struct Begun<F> {
        #[pin]
        running: F,
    }
}

impl<S, F> Job<S> for Begun<F>
where
    S: Service,
    F: Future<Output = JobEnd> + Send + 'static,
{
    fn priority(&self) -> i32 {
        0
    }

    fn poll_run(
        self: Pin<&mut Self>,
        _: &Arc<Incarnation<S>>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<JobEnd> {
        self.project().running.poll(cx)
    }

    /// Never queued, so never refused.
    fn reject(self: Pin<&mut Self>, _: Error) {}
}

/// Work on its way in: a typed action, allocated as a job by its caller, or a command, which
/// travels unboxed so that a `tell` allocates nothing beyond ractor's own box for the message.
pub(crate) trait Submit<S: Service> {
    /// The job, to begin now on `inc`.
    fn begin(self, inc: &Arc<Incarnation<S>>) -> JobBox<S>;
    /// The job, to wait in the queue.
    fn into_job(self) -> JobBox<S>;
}

impl<S: Service> Submit<S> for JobBox<S> {
    fn begin(self, _: &Arc<Incarnation<S>>) -> JobBox<S> {
        self
    }

    fn into_job(self) -> JobBox<S> {
        self
    }
}

/// One life of a service between its start and its stop or failure.
pub(crate) struct Incarnation<S: Service> {
    pub(crate) svc: Arc<S>,
    pub(crate) cell: Arc<ServiceCell<S>>,
    pub(crate) sched: Scheduler<JobBox<S>>,
    cancel_reason: OnceLock<Error>,
    pub(crate) host: ActorRef<ServiceMessage<S>>,
    /// The context of everything the incarnation runs without a correlation id of its own.
    ctx: Context,
}

impl<S: Service> Incarnation<S> {
    pub(crate) fn new(
        svc: S,
        cell: Arc<ServiceCell<S>>,
        host: ActorRef<ServiceMessage<S>>,
    ) -> Self {
        let (limit, queue_limit) = (cell.def.concurrency, cell.def.queue_limit);
        let gate = Arc::new(Gate::default());
        cell.shared.set_gate(gate.clone());
        let life = Arc::new(Life {
            shared: cell.shared.clone(),
            cancel: CancellationToken::new(),
            host: host.get_cell(),
        });
        Incarnation {
            svc: Arc::new(svc),
            cell,
            sched: Scheduler::new(limit, queue_limit, gate),
            cancel_reason: OnceLock::new(),
            host,
            ctx: Context::new(life),
        }
    }

    /// The incarnation's context, shared by everything it runs without a correlation id.
    pub(crate) fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// The context of a call: the shared one, unless the call has a correlation id of its own
    /// or is an attempt of a durable job.
    pub(crate) fn context(
        &self,
        correlation_id: Option<Arc<str>>,
        job: Option<Arc<JobRun>>,
    ) -> Cow<'_, Context> {
        if correlation_id.is_none() && job.is_none() {
            return Cow::Borrowed(&self.ctx);
        }
        Cow::Owned(self.ctx.with_call(correlation_id, job))
    }

    /// The token that stops everything this incarnation runs.
    pub(crate) fn token(&self) -> &CancellationToken {
        self.ctx.token()
    }

    /// Cancels everything the incarnation runs; in-flight calls get `reason`.
    pub(crate) fn cancel(&self, reason: Error) {
        let _ = self.cancel_reason.set(reason);
        self.ctx.token().cancel();
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
    #[inline]
    pub(crate) fn submit(self: &Arc<Self>, job: impl Submit<S>) {
        if self.sched.try_enter() {
            return self.start(job.begin(self));
        }
        match self.sched.admit(job.into_job()) {
            Admit::Run(job) => self.start(job),
            Admit::Queued => {}
            Admit::Full(mut job, limit) => {
                self.cell.shared.rejected.fetch_add(1, Ordering::Relaxed);
                job.as_mut().reject(Error::Overloaded {
                    service: self.cell.name().to_owned(),
                    limit,
                });
            }
            Admit::Closed(mut job, err) => job.as_mut().reject(err),
        }
    }

    /// Polls a job once, inline; only if it has to wait does it move to a task of its own.
    ///
    /// Most handlers either finish at once or reach an `.await` quickly, so the common call
    /// costs no task spawn and no extra wake-up. The price: code that runs before a handler's
    /// first `.await` runs on the host's task (see `docs/design/host.md`).
    #[inline]
    fn start(self: &Arc<Self>, mut job: JobBox<S>) {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        match job.as_mut().poll_run(self, &mut cx) {
            Poll::Ready(end) => {
                drop(job);
                if let Some(next) = self.finish(end) {
                    tokio::spawn(drive(self.clone(), next));
                }
            }
            Poll::Pending => {
                tokio::spawn(drive(self.clone(), job));
            }
        }
    }

    /// Books a finished job and hands its slot to the next queued one, if any.
    #[inline]
    fn finish(&self, end: JobEnd) -> Option<JobBox<S>> {
        let next = match end {
            JobEnd::Done => self.sched.finish(),
            JobEnd::Panicked(reason) => {
                self.sched.release();
                let failed = InternalKind::Failed(reason);
                let _ = self.host.cast(ServiceMessage::Internal(Internal(failed)));
                None
            }
        };
        if next.is_none() {
            self.cell.shared.wake_if_draining();
        }
        next
    }
}

/// Runs a job that had to wait, then every job queued behind it, on one task.
async fn drive<S: Service>(inc: Arc<Incarnation<S>>, mut job: JobBox<S>) {
    loop {
        let end = std::future::poll_fn(|cx| job.as_mut().poll_run(&inc, cx)).await;
        match inc.finish(end) {
            Some(next) => job = next,
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
/// The error is boxed: it is rare, and the result travels back through the reply channel.
///
/// Books the call before the caller hears back, so the status it reads next includes it.
fn settle<S: Service, T>(
    inc: &Incarnation<S>,
    label: Cow<'static, str>,
    started: Option<Instant>,
    deadline: Option<Deadline>,
    outcome: Outcome<Result<T, BoxError>>,
    ran: &Ran,
) -> (Result<T, Box<Error>>, JobEnd) {
    let service = inc.cell.name();
    let label_ref: &str = &label;
    let (result, end, how) = match outcome {
        Outcome::Done(Ok(v)) => (Ok(v), JobEnd::Done, RunOutcome::Ok),
        Outcome::Done(Err(e)) => (
            Err(Error::action_failed(service, label_ref, e)),
            JobEnd::Done,
            RunOutcome::Failed,
        ),
        Outcome::TimedOut => {
            let after = deadline.map(|d| d.after).unwrap_or_default();
            tracing::warn!(
                service,
                action = label_ref,
                ?after,
                "call timed out; handler cancelled"
            );
            (
                Err(timeout(service, label_ref, after)),
                JobEnd::Done,
                RunOutcome::TimedOut,
            )
        }
        Outcome::Cancelled => (
            Err(inc.cancelled_error()),
            JobEnd::Done,
            RunOutcome::Cancelled,
        ),
        Outcome::Panicked(msg) => {
            let reason = format!("`{label}` panicked: {msg}");
            tracing::error!(service, action = label_ref, %reason, "handler panicked");
            let err = Error::ServiceFailed {
                service: service.to_owned(),
                reason: reason.clone(),
            };
            (Err(err), JobEnd::Panicked(reason), RunOutcome::Panicked)
        }
    };
    book(inc, label_ref, started, result.is_err());
    let error = result.as_ref().err().map(|e| match e {
        Error::ActionFailed { message, .. } => message.as_str().into(),
        e => e.to_string().into_boxed_str(),
    });
    ran.keep(inc, label, started, how, error);
    (result.map_err(Box::new), end)
}

/// What the run history keeps of a call beyond how it ended (see [`crate::status::Run`]).
pub(super) struct Ran {
    kind: RunKind,
    correlation_id: Option<Arc<str>>,
    job: Option<(JobId, u32)>,
}

impl Ran {
    /// Keeps the call's run in its service's history; `started` times it, when it was timed.
    fn keep<S: Service>(
        &self,
        inc: &Incarnation<S>,
        name: Cow<'static, str>,
        started: Option<Instant>,
        outcome: RunOutcome,
        error: Option<Box<str>>,
    ) {
        let duration = started.map(|s| s.elapsed());
        let now = SystemTime::now();
        inc.cell.shared.history.push(RunRecord {
            kind: self.kind,
            name,
            started_at: duration.and_then(|d| now.checked_sub(d)).unwrap_or(now),
            duration,
            outcome,
            error,
            correlation_id: self.correlation_id.clone(),
            job: self.job,
        });
    }
}

/// Counts a settled call; with metrics served, records it there too (`started` is taken only
/// then: see [`clock`]).
pub(super) fn book<S: Service>(
    inc: &Incarnation<S>,
    label: &str,
    started: Option<Instant>,
    failed: bool,
) {
    let shared = &inc.cell.shared;
    shared.calls.fetch_add(1, Ordering::Relaxed);
    if failed {
        shared.failures.fetch_add(1, Ordering::Relaxed);
    }
    // `started` is there only if metrics were kept when the call began: without it, the
    // runtime's metrics are not looked up at all.
    #[cfg(feature = "http")]
    if let Some(started) = started
        && let Some(metrics) = shared.runtime.metrics.get()
    {
        metrics.record(&shared.name, label, started.elapsed(), failed);
    }
    #[cfg(not(feature = "http"))]
    let _ = (label, started);
}

/// The start of a call, when metrics are kept; nothing (and no clock read) otherwise.
pub(super) fn clock<S: Service>(inc: &Incarnation<S>) -> Option<Instant> {
    #[cfg(feature = "http")]
    if inc.cell.shared.runtime.metrics.get().is_some() {
        return Some(Instant::now());
    }
    let _ = inc;
    None
}

fn timeout(service: &str, label: &str, after: Duration) -> Error {
    Error::Timeout {
        service: service.to_owned(),
        action: label.to_owned(),
        after,
    }
}

/// The timeout error of a call whose deadline passed while it waited in the queue.
#[expect(
    clippy::ptr_arg,
    reason = "the label is cloned, owned or borrowed as it is, only for a call that expired"
)]
fn expired<S: Service>(
    inc: &Incarnation<S>,
    label: &Cow<'static, str>,
    deadline: Option<Deadline>,
    ran: &Ran,
) -> Option<Error> {
    let d = deadline?;
    if Instant::now() < d.at {
        return None;
    }
    // It waited its whole timeout in the queue: that is its latency.
    let queued_at = d.at.checked_sub(d.after).unwrap_or(d.at);
    book(inc, label, clock(inc).map(|_| queued_at), true);
    let err = timeout(inc.cell.name(), label, d.after);
    let error = Some(err.to_string().into_boxed_str());
    ran.keep(
        inc,
        label.clone(),
        Some(queued_at),
        RunOutcome::TimedOut,
        error,
    );
    Some(err)
}

/// A typed action on its way to its handler.
///
/// `J` is the durable job it is an attempt of (`Arc<JobRun>`), or `()` for an in-memory call,
/// which then carries nothing more than it did before jobs existed.
pub(crate) struct ActionCall<A: Action, J = ()> {
    pub(crate) action: A,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) reply: ReplyTo<A::Reply>,
    pub(crate) job: J,
}

/// The durable job a call is an attempt of, if any.
pub(crate) trait OfJob: Send + 'static {
    fn job(&self) -> Option<Arc<JobRun>>;
}

impl OfJob for () {
    #[inline(always)]
    fn job(&self) -> Option<Arc<JobRun>> {
        None
    }
}

impl OfJob for Arc<JobRun> {
    fn job(&self) -> Option<Arc<JobRun>> {
        Some(self.clone())
    }
}

impl<A: Action, J: OfJob> Refuse for ActionCall<A, J> {
    fn refuse(self, err: Error) {
        self.reply.fail(err);
    }
}

/// The job of a typed action with `priority`: one allocation, made by the caller.
pub(crate) fn action_job<S, A, J>(priority: i32, call: ActionCall<A, J>) -> JobBox<S>
where
    S: Handler<A>,
    A: Action,
    J: OfJob,
{
    Box::pin(Staged::new(priority, call, run_action::<S, A, J>))
}

async fn run_action<S, A, J>(call: ActionCall<A, J>, inc: Arc<Incarnation<S>>) -> JobEnd
where
    S: Handler<A>,
    A: Action,
    J: OfJob,
{
    // The call's fields are used where they lie: taking the call apart first would copy each
    // of them to a slot of its own in this future.
    let job = call.job.job();
    let ran = Ran {
        kind: if job.is_some() {
            RunKind::Job
        } else {
            RunKind::Action
        },
        correlation_id: call.correlation_id.clone(),
        job: job.as_ref().map(|j| (j.id, j.attempt)),
    };
    if call.deadline.is_some()
        && let Some(err) = expired(&inc, &Cow::Borrowed(A::NAME), call.deadline, &ran)
    {
        call.reply.fail(err);
        return JobEnd::Done;
    }
    let ctx = inc.context(call.correlation_id.clone(), job);
    let span = tracing::info_span!(
        "action",
        service = %inc.cell.shared.name,
        action = A::NAME,
        correlation_id = call.correlation_id.as_deref(),
    );
    // An attempt of a durable job is kept in the history whatever its end, so it is timed.
    let started = if ran.job.is_some() {
        Some(Instant::now())
    } else {
        clock(&inc)
    };
    let outcome = guarded_call(
        inc.svc.handle(call.action, &ctx),
        call.deadline.map(|d| d.at),
        Some(inc.token()),
        span,
        call.correlation_id,
    )
    .await;
    // The common end, a reply, is booked here; every other end goes through `settle`.
    if let Outcome::Done(Ok(value)) = outcome {
        book(&inc, A::NAME, started, false);
        if ran.job.is_some() {
            ran.keep(&inc, Cow::Borrowed(A::NAME), started, RunOutcome::Ok, None);
        }
        call.reply.send(Ok(value));
        return JobEnd::Done;
    }
    let name = Cow::Borrowed(A::NAME);
    let (result, end) = settle(&inc, name, started, call.deadline, outcome, &ran);
    call.reply.send(result);
    end
}

/// A command on its way to the service.
pub(crate) struct CommandJob {
    pub(crate) command: Command,
    pub(crate) priority: i32,
    /// It rang its host's doorbell on its way in (see `EnvelopeKind`).
    pub(crate) rang: bool,
    /// What a plain `tell` does not carry, boxed so that the message stays small.
    pub(crate) call: Option<Box<CallParts>>,
}

/// The parts of a command that only some commands carry.
pub(crate) struct CallParts {
    pub(crate) deadline: Option<Deadline>,
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) reply: Option<ReplyTo<()>>,
}

impl CommandJob {
    pub(crate) fn new(
        command: Command,
        priority: i32,
        deadline: Option<Deadline>,
        correlation_id: Option<Arc<str>>,
        reply: Option<ReplyTo<()>>,
    ) -> Self {
        let call = (deadline.is_some() || correlation_id.is_some() || reply.is_some()).then(|| {
            Box::new(CallParts {
                deadline,
                correlation_id,
                reply,
            })
        });
        CommandJob {
            command,
            priority,
            rang: false,
            call,
        }
    }

    /// Takes the reply port, if the sender waits for one.
    pub(crate) fn take_reply(&mut self) -> Option<ReplyTo<()>> {
        self.call.as_mut().and_then(|call| call.reply.take())
    }
}

impl Refuse for CommandJob {
    /// Answers the sender, if it waits, with `err` without running the command.
    fn refuse(mut self, err: Error) {
        if let Some(reply) = self.take_reply() {
            reply.fail(err);
        }
    }
}

impl<S: Service> Submit<S> for CommandJob {
    /// Built in place, as its future: a command's parts move once.
    fn begin(self, inc: &Arc<Incarnation<S>>) -> JobBox<S> {
        Box::pin(Begun {
            running: run_command(self, inc.clone()),
        })
    }

    fn into_job(self) -> JobBox<S> {
        Box::pin(Staged::new(self.priority, self, run_command::<S>))
    }
}

async fn run_command<S: Service>(job: CommandJob, inc: Arc<Incarnation<S>>) -> JobEnd {
    let CommandJob { command, call, .. } = job;
    // A command that its caller waits for, or that carries a deadline or a correlation id, is
    // kept in the history whatever its end, so it is timed; a plain `tell` is kept only if it
    // fails, as an in-memory action is, so that its path stays free of the bookkeeping.
    let kept = call.is_some();
    let (deadline, correlation_id, reply) = match call {
        Some(call) => (call.deadline, call.correlation_id, call.reply),
        None => (None, None, None),
    };
    let label = command.label();
    let ran = Ran {
        kind: RunKind::Command,
        correlation_id: correlation_id.clone(),
        job: None,
    };
    if deadline.is_some()
        && let Some(err) = expired(&inc, &label, deadline, &ran)
    {
        if let Some(reply) = reply {
            reply.fail(err);
        }
        return JobEnd::Done;
    }
    let ctx = inc.context(correlation_id.clone(), None);
    let span = tracing::info_span!(
        "command",
        service = %inc.cell.shared.name,
        command = %label,
        correlation_id = correlation_id.as_deref(),
    );
    let started = if kept {
        Some(Instant::now())
    } else {
        clock(&inc)
    };
    let outcome = guarded_call(
        inc.svc.command(command, &ctx),
        deadline.map(|d| d.at),
        Some(inc.token()),
        span,
        correlation_id,
    )
    .await;
    if let Outcome::Done(Ok(())) = outcome {
        book(&inc, &label, started, false);
        if kept {
            ran.keep(&inc, label, started, RunOutcome::Ok, None);
        }
        if let Some(reply) = reply {
            reply.send(Ok(()));
        }
        return JobEnd::Done;
    }
    let (result, end) = settle(&inc, label, started, deadline, outcome, &ran);
    if let Some(reply) = reply {
        reply.send(result);
    }
    end
}
