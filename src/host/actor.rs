//! The `ractor::Actor` impl of a service host.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ServiceCell;
use super::guard::{Outcome, guarded};
use super::inbox::{ServiceInbox, Turn};
use super::job::{Incarnation, Refuse};
use super::messages::{Drain, EnvelopeKind, InternalKind, Query, ServiceMessage, Subscribe};
use super::reply::ReplyTo;
use super::shared::{BACKGROUND_DONE, BACKGROUND_NONE, BACKGROUND_RUNNING};
use crate::Error;
use crate::event::{Chain, Target};
use crate::service::{Command, Health, MissedTick, Service};
use crate::status::{LastRun, RunKind, RunOutcome, RunRecord, ServiceState};

pub(crate) struct HostActor<S>(PhantomData<fn() -> S>);

impl<S> HostActor<S> {
    pub(crate) fn new() -> Self {
        HostActor(PhantomData)
    }
}

pub(crate) struct HostArgs<S: Service> {
    pub(crate) cell: Arc<ServiceCell<S>>,
    pub(crate) inbox: Arc<ServiceInbox<S>>,
}

type TickReply = ReplyTo<()>;

#[derive(Default)]
struct Ticks {
    running: bool,
    follow_up: bool,
    /// Waiting for the run in progress.
    waiters: Vec<TickReply>,
    /// Waiting for the follow-up run.
    next_waiters: Vec<TickReply>,
    /// Triggers the run in progress answers, and those the follow-up will: each is a call.
    triggered: u32,
    next_triggered: u32,
    /// When the run in progress started, if calls are clocked (see `job::clock`).
    clocked: Option<Instant>,
}

/// Aborts its task when dropped, so a failed incarnation leaves no timers behind.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct HostState<S: Service> {
    inc: Arc<Incarnation<S>>,
    inbox: Arc<ServiceInbox<S>>,
    ticks: Ticks,
    ticker: Option<AbortOnDrop>,
    background: Option<AbortOnDrop>,
    stopped_in_order: bool,
}

impl<S: Service> Actor for HostActor<S> {
    type Msg = ServiceMessage<S>;
    type State = HostState<S>;
    type Arguments = HostArgs<S>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HostArgs<S>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let HostArgs { cell, inbox } = args;
        cell.shared.set_state(ServiceState::Starting);
        let svc = (cell.factory)();
        let inc = Arc::new(Incarnation::new(svc, cell.clone(), myself));
        let ctx = inc.ctx();
        // While the runtime starts, its own start-up deadline bounds every service's start too.
        let mut deadline = Instant::now() + cell.def.start_timeout;
        if let Some(runtime_deadline) = cell.shared.runtime.startup_deadline() {
            deadline = deadline.min(runtime_deadline);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let span = tracing::info_span!("start", service = %cell.shared.name);
        let outcome = guarded(inc.svc.start(ctx), Some(deadline), None, span).await;
        match outcome {
            Outcome::Done(Ok(())) => Ok(HostState {
                inc,
                inbox,
                ticks: Ticks::default(),
                ticker: None,
                background: None,
                stopped_in_order: false,
            }),
            Outcome::Done(Err(e)) => Err(format!("start failed: {e}").into()),
            Outcome::TimedOut => Err(format!("start timed out after {timeout:?}").into()),
            Outcome::Cancelled => Err("start cancelled".into()),
            Outcome::Panicked(m) => Err(format!("start panicked: {m}").into()),
        }
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let cell = &state.inc.cell;
        cell.shared.set_state(ServiceState::Idle);
        state.background = Some(spawn_background(state.inc.clone()));
        if let Some(schedule) = &cell.def.schedule {
            // After a downtime, the schedule goes on from where the last process left it.
            let resumed = cell
                .shared
                .resumed_schedule()
                .and_then(|(mark, now)| schedule.resume(&mark, now));
            let runs_now = schedule.run_on_start || resumed.is_some_and(|r| r.run_now);
            let mut first = resumed.map_or_else(|| schedule.first_tick(), |r| r.first);
            // A tick due now while the run of the start is going would only be skipped (or,
            // with `RunOnce`, run again after it): the run now is that tick.
            if runs_now && first.is_zero() {
                first = schedule.period;
            }
            if let Some(resumed) = resumed.filter(|r| r.missed > 0) {
                tracing::info!(
                    service = %cell.shared.name,
                    missed = resumed.missed,
                    policy = ?schedule.missed,
                    "ticks fell while the process was down"
                );
                if schedule.missed == MissedTick::Skip {
                    cell.shared
                        .skipped
                        .fetch_add(resumed.missed, Ordering::Relaxed);
                }
            }
            cell.shared.set_next_run(Some(Instant::now() + first));
            state.ticker = Some(match schedule.missed {
                MissedTick::Delay => tick_after(myself, first),
                MissedTick::Skip | MissedTick::RunOnce => {
                    tick_every(myself, first, schedule.period)
                }
            });
            if runs_now {
                start_tick(state);
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ServiceMessage::Call(envelope) => {
                let rang = envelope.0.rang();
                on_call(state, envelope.0);
                if rang {
                    answer(&myself, state);
                }
                Ok(())
            }
            ServiceMessage::Query(query) => {
                on_query(state, query);
                Ok(())
            }
            ServiceMessage::Subscribe(sub) => {
                on_subscribe(state, *sub);
                Ok(())
            }
            ServiceMessage::Internal(internal) => match internal.0 {
                InternalKind::Wake => {
                    answer(&myself, state);
                    Ok(())
                }
                InternalKind::Tick => {
                    on_tick(state);
                    Ok(())
                }
                InternalKind::TickDone { error, panicked } => {
                    on_tick_done(myself, state, error, panicked)
                }
                InternalKind::Failed(reason) => fail(state, reason),
                InternalKind::Drain(drain) => {
                    let Drain {
                        deadline,
                        reason,
                        reply,
                    } = *drain;
                    // Boxed: an inlined stop would grow every host's task by its size.
                    Box::pin(stop_in_order(state, deadline, reason)).await;
                    let _ = reply.send(());
                    myself.stop(Some("stopped in order".into()));
                    Ok(())
                }
            },
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.stopped_in_order {
            let cell = &state.inc.cell;
            let reason = Error::ServiceUnavailable {
                service: cell.name().to_owned(),
                reason: "stopped".into(),
            };
            let deadline = Instant::now() + cell.def.stop_timeout;
            Box::pin(stop_in_order(state, deadline, reason)).await;
        }
        Ok(())
    }
}

/// Answers the inbox's doorbell: one turn over the calls waiting there.
#[inline]
fn answer<S: Service>(myself: &ActorRef<ServiceMessage<S>>, state: &mut HostState<S>) {
    let mut turn = Turn::default();
    while let Some(call) = state.inbox.next_call(&mut turn) {
        on_call(state, call);
    }
    if turn.more {
        let _ = myself.cast(ServiceMessage::internal(InternalKind::Wake));
    }
}

#[inline]
fn on_call<S: Service>(state: &mut HostState<S>, envelope: EnvelopeKind<S>) {
    let inc = &state.inc;
    if inc.cell.shared.runtime.is_shutting_down() {
        return envelope.refuse(Error::ShuttingDown);
    }
    match envelope {
        EnvelopeKind::Job(job, _) => inc.submit(job),
        EnvelopeKind::Command(mut cmd) => {
            let def = &inc.cell.def;
            if !def.accepts(&cmd.command) {
                let err = Error::UnknownCommand {
                    service: inc.cell.name().to_owned(),
                    command: cmd.command.name().to_owned(),
                };
                cmd.refuse(err);
            } else if cmd.command == Command::TriggerNow && def.schedule.is_some() {
                trigger(state, cmd.take_reply());
            } else {
                inc.submit(cmd);
            }
        }
    }
}

fn on_query<S: Service>(state: &HostState<S>, query: Query) {
    let cell = &state.inc.cell;
    match query {
        Query::Status(reply) => {
            let _ = reply.send(cell.shared.status());
        }
        Query::Info(reply) => {
            let _ = reply.send(cell.info());
        }
        Query::Health(reply) => {
            let inc = state.inc.clone();
            tokio::spawn(async move {
                let _ = reply.send(check_health(&inc).await);
            });
        }
        Query::Ready(reply) => {
            let inc = state.inc.clone();
            tokio::spawn(async move {
                let _ = reply.send(check_ready(&inc).await);
            });
        }
    }
}

/// Runs the service's readiness check within the health timeout; no answer means not ready.
async fn check_ready<S: Service>(inc: &Incarnation<S>) -> bool {
    let ctx = inc.ctx();
    let deadline = Instant::now() + inc.cell.def.health_timeout;
    let span = tracing::Span::none();
    let outcome = guarded(inc.svc.ready(ctx), Some(deadline), Some(inc.token()), span).await;
    matches!(outcome, Outcome::Done(true))
}

/// Runs the service's health check within the health timeout; no answer is unhealthy.
async fn check_health<S: Service>(inc: &Incarnation<S>) -> Health {
    let ctx = inc.ctx();
    let deadline = Instant::now() + inc.cell.def.health_timeout;
    let span = tracing::Span::none();
    match guarded(inc.svc.health(ctx), Some(deadline), Some(inc.token()), span).await {
        Outcome::Done(health) => health,
        Outcome::TimedOut => Health::unhealthy("health check timed out"),
        Outcome::Cancelled => Health::unhealthy("stopping"),
        Outcome::Panicked(m) => Health::unhealthy(format!("health check panicked: {m}")),
    }
}

fn on_subscribe<S: Service>(state: &HostState<S>, sub: Subscribe) {
    let cell = &state.inc.cell;
    let chain = Chain::new(
        cell.shared.runtime.events.clone(),
        Target::Service(cell.clone()),
    );
    let _ = sub.reply.send((sub.build)(chain).subscribe_now());
}

fn on_tick<S: Service>(state: &mut HostState<S>) {
    let cell = &state.inc.cell;
    let Some(schedule) = &cell.def.schedule else {
        return;
    };
    if schedule.missed != MissedTick::Delay {
        cell.shared
            .set_next_run(Some(Instant::now() + schedule.period));
    }
    cell.shared.mark_schedule(|mark, now| mark.tick = Some(now));
    if cell.shared.paused.load(Ordering::Relaxed) {
        cell.shared.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(service = %cell.shared.name, "tick skipped: the service is paused");
        if schedule.missed == MissedTick::Delay {
            // No run will end to schedule the next tick: keep the clock going.
            cell.shared
                .set_next_run(Some(Instant::now() + schedule.period));
            state.ticker = Some(tick_after(state.inc.host.clone(), schedule.period));
        }
    } else if state.ticks.running {
        cell.shared.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(service = %cell.shared.name, "tick skipped: the last run is still going");
        if schedule.missed == MissedTick::RunOnce {
            state.ticks.follow_up = true;
        }
    } else {
        start_tick(state);
    }
}

fn trigger<S: Service>(state: &mut HostState<S>, reply: Option<TickReply>) {
    if state.ticks.running {
        state.ticks.follow_up = true;
        state.ticks.next_triggered += 1;
        state.ticks.next_waiters.extend(reply);
    } else {
        state.ticks.triggered += 1;
        state.ticks.waiters.extend(reply);
        start_tick(state);
    }
}

fn start_tick<S: Service>(state: &mut HostState<S>) {
    state.ticks.running = true;
    state.ticks.clocked = super::job::clock(&state.inc);
    let inc = state.inc.clone();
    inc.cell.shared.tick_running.store(true, Ordering::Release);
    inc.cell
        .shared
        .mark_schedule(|mark, now| mark.started = Some(now));
    tokio::spawn(async move {
        let shared = &inc.cell.shared;
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let ctx = inc.ctx();
        let span = tracing::info_span!("tick", service = %shared.name);
        let outcome = guarded(inc.svc.tick(ctx), None, Some(inc.token()), span).await;
        let (error, panicked, outcome_kind) = match outcome {
            Outcome::Done(Ok(())) => (None, None, RunOutcome::Ok),
            Outcome::Done(Err(e)) => (Some(e.to_string()), None, RunOutcome::Failed),
            Outcome::TimedOut | Outcome::Cancelled => {
                (Some("cancelled".to_owned()), None, RunOutcome::Cancelled)
            }
            Outcome::Panicked(m) => (
                Some(format!("panicked: {m}")),
                Some(m),
                RunOutcome::Panicked,
            ),
        };
        shared.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &error {
            shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(service = %shared.name, error = %e, "periodic run failed");
        }
        let duration = t0.elapsed();
        // A run stopped under it (cancelled at a shutdown) did not end: the next process
        // sees it cut short.
        if outcome_kind != RunOutcome::Cancelled {
            shared.mark_schedule(|mark, now| mark.ended = Some(now));
        }
        shared.history.push(RunRecord {
            kind: RunKind::Tick,
            name: Cow::Borrowed("tick"),
            started_at,
            duration: Some(duration),
            outcome: outcome_kind,
            error: error.as_deref().map(Into::into),
            correlation_id: None,
            job: None,
        });
        *shared.last_run.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastRun {
            started_at,
            duration,
            error: error.clone(),
        });
        shared.tick_running.store(false, Ordering::SeqCst);
        shared.wake_if_draining();
        let _ = inc
            .host
            .cast(ServiceMessage::internal(InternalKind::TickDone {
                error,
                panicked,
            }));
    });
}

fn on_tick_done<S: Service>(
    myself: ActorRef<ServiceMessage<S>>,
    state: &mut HostState<S>,
    error: Option<String>,
    panicked: Option<String>,
) -> Result<(), ActorProcessingErr> {
    state.ticks.running = false;
    let cell = state.inc.cell.clone();
    let result = match (&panicked, &error) {
        (Some(m), _) => Err(Error::ServiceFailed {
            service: cell.name().to_owned(),
            reason: format!("tick panicked: {m}"),
        }),
        (None, Some(e)) => Err(Error::ActionFailed {
            service: cell.name().to_owned(),
            action: Command::TRIGGER.to_owned(),
            message: e.clone(),
            source: None,
        }),
        (None, None) => Ok(()),
    };
    // Each trigger this run answers is a call of `trigger`, counted as calls are.
    for _ in 0..std::mem::take(&mut state.ticks.triggered) {
        super::job::book(
            &state.inc,
            Command::TRIGGER,
            state.ticks.clocked,
            result.is_err(),
        );
    }
    for waiter in std::mem::take(&mut state.ticks.waiters) {
        waiter.send(result.clone().map_err(Box::new));
    }
    if let Some(m) = panicked {
        return fail(state, format!("tick panicked: {m}"));
    }
    if state.stopped_in_order {
        return Ok(());
    }
    if state.ticks.follow_up {
        state.ticks.follow_up = false;
        state.ticks.waiters = std::mem::take(&mut state.ticks.next_waiters);
        state.ticks.triggered = std::mem::take(&mut state.ticks.next_triggered);
        start_tick(state);
    } else if let Some(schedule) = &cell.def.schedule {
        if schedule.missed == MissedTick::Delay {
            cell.shared
                .set_next_run(Some(Instant::now() + schedule.period));
            state.ticker = Some(tick_after(myself, schedule.period));
        }
    }
    Ok(())
}

fn tick_every<S: Service>(
    host: ActorRef<ServiceMessage<S>>,
    first: std::time::Duration,
    period: std::time::Duration,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(Instant::now() + first, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            if host
                .cast(ServiceMessage::internal(InternalKind::Tick))
                .is_err()
            {
                return;
            }
        }
    }))
}

fn tick_after<S: Service>(
    host: ActorRef<ServiceMessage<S>>,
    delay: std::time::Duration,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = host.cast(ServiceMessage::internal(InternalKind::Tick));
    }))
}

fn spawn_background<S: Service>(inc: Arc<Incarnation<S>>) -> AbortOnDrop {
    // Boxed so that the task's cell, which the handle keeps alive, stays small once the work is
    // done: most services have no background work and finish at once.
    AbortOnDrop(tokio::spawn(Box::pin(async move {
        let shared = inc.cell.shared.clone();
        let ctx = inc.ctx();
        // The default `run` marks the service as having no background work when it is called.
        let fut = inc.svc.run(ctx);
        if shared.background.load(Ordering::Acquire) == BACKGROUND_NONE {
            return;
        }
        shared
            .background
            .store(BACKGROUND_RUNNING, Ordering::Release);
        let span = tracing::info_span!("run", service = %shared.name);
        // Not raced against the stop signal: `run` sees it through its context and returns by
        // itself; a stop aborts it only after a grace period.
        let outcome = guarded(fut, None, None, span).await;
        shared.background.store(BACKGROUND_DONE, Ordering::Release);
        let failure = match outcome {
            Outcome::Done(Ok(())) | Outcome::Cancelled | Outcome::TimedOut => return,
            Outcome::Done(Err(e)) => format!("run failed: {e}"),
            Outcome::Panicked(m) => format!("run panicked: {m}"),
        };
        let _ = inc
            .host
            .cast(ServiceMessage::internal(InternalKind::Failed(failure)));
    })))
}

/// Fails the incarnation: every call it holds is answered, and the actor fails so that the
/// supervisor hears of it.
fn fail<S: Service>(state: &mut HostState<S>, reason: String) -> Result<(), ActorProcessingErr> {
    let inc = &state.inc;
    let shared = &inc.cell.shared;
    tracing::error!(service = %shared.name, %reason, "service failed");
    shared.record_failure(&reason);
    shared.set_state(ServiceState::Failed);
    shared.set_next_run(None);
    let err = Error::ServiceFailed {
        service: inc.cell.name().to_owned(),
        reason: reason.clone(),
    };
    refuse_queued(state, &err);
    state.inc.cancel(err);
    state.ticker = None;
    Err(reason.into())
}

fn refuse_queued<S: Service>(state: &mut HostState<S>, err: &Error) {
    for call in state.inbox.close() {
        call.refuse(err.clone());
    }
    for job in state.inc.sched.close(err.clone()) {
        let mut job = job;
        job.as_mut().reject(err.clone());
    }
    for waiter in state.ticks.next_waiters.drain(..) {
        waiter.fail(err.clone());
    }
    state.ticks.next_triggered = 0;
    state.ticks.follow_up = false;
}

/// Stops taking work, lets in-flight work finish until `deadline`, then calls the stop hook.
async fn stop_in_order<S: Service>(state: &mut HostState<S>, deadline: Instant, reason: Error) {
    state.stopped_in_order = true;
    let inc = state.inc.clone();
    let shared = &inc.cell.shared;
    shared.set_state(ServiceState::Stopping);
    shared.set_next_run(None);
    state.ticker = None;
    refuse_queued(state, &reason);
    shared.set_draining(true);
    loop {
        let idle = shared.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if shared.is_idle() {
            break;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            tracing::warn!(service = %shared.name, "in-flight work cancelled: stop deadline passed");
            break;
        }
    }
    shared.set_draining(false);
    inc.cancel(reason);
    if let Some(mut background) = state.background.take() {
        let grace = Instant::now() + inc.cell.def.stop_timeout;
        let _ = tokio::time::timeout_at(grace, &mut background.0).await;
    }
    let ctx = inc.ctx();
    let stop_deadline = Instant::now() + inc.cell.def.stop_timeout;
    let span = tracing::info_span!("stop", service = %shared.name);
    match guarded(inc.svc.stop(ctx), Some(stop_deadline), None, span).await {
        Outcome::Done(()) | Outcome::Cancelled => {}
        Outcome::TimedOut => tracing::warn!(service = %shared.name, "stop hook timed out"),
        Outcome::Panicked(m) => {
            tracing::error!(service = %shared.name, panic = %m, "stop hook panicked")
        }
    }
    shared.set_state(ServiceState::Stopped);
}
