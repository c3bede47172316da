//! The service cell: one per registered service, shared by its handles, its registry entry and
//! its supervisor slot. It points at the current incarnation's actor.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::time::Instant;

use super::reply_future::ReplyFuture;
use super::{
    Delivery, Door, EnvelopeKind, HostActor, HostArgs, Internal, Query, ReplyTo, ServiceMessage,
    ServiceShared, inbox, slim,
};
use crate::Error;
use crate::action::{Action, CallOptions, Handler, JobRun};
use crate::codec::Format;
use crate::service::retry::Retry;
use crate::service::{Command, Definition, Health, Service, Startup};
use crate::status::{ScheduleInfo, ServiceInfo, ServiceKind, ServiceState, ServiceStatus};
use crate::supervisor::Restart;
use crate::system::RuntimeShared;

pub(crate) struct ServiceCell<S: Service> {
    pub(crate) def: Definition<S>,
    pub(crate) shared: Arc<ServiceShared>,
    pub(crate) factory: Box<dyn Fn() -> S + Send + Sync>,
    /// How calls reach the current incarnation; empty while there is none.
    door: ArcSwapOption<Door<S>>,
}

impl<S: Service> ServiceCell<S> {
    /// The cell of a service that runs (`enabled`) or is only registered.
    pub(crate) fn new(
        def: Definition<S>,
        factory: Box<dyn Fn() -> S + Send + Sync>,
        enabled: bool,
        remote: bool,
        runtime: Arc<RuntimeShared>,
    ) -> Self {
        let settings = def.settings.as_ref().and_then(|s| s.value.clone());
        let mut shared =
            ServiceShared::new(&def.name, def.events.clone(), settings, enabled, runtime);
        shared.remote = remote;
        shared.keeps_state = def.keeps_state;
        ServiceCell {
            shared: Arc::new(shared),
            def,
            factory,
            door: ArcSwapOption::empty(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.def.name
    }

    pub(crate) fn actor_ref(&self) -> Option<ActorRef<ServiceMessage<S>>> {
        self.door.load().as_ref().map(|door| door.actor.clone())
    }

    /// Delivers an action or a command to the current incarnation (see `host/inbox.rs`).
    #[inline(always)]
    pub(crate) fn deliver(&self, call: EnvelopeKind<S>, delivery: Delivery) -> Result<(), Error> {
        match self.door.load().as_ref() {
            Some(door) => door
                .deliver(call, delivery)
                .map_err(|()| self.shared.unavailable()),
            None => Err(self.shared.unavailable()),
        }
    }

    /// A typed call: straight into the host's mailbox, the reply back on a oneshot.
    ///
    /// Takes the caller's reference to the cell and keeps it in the reply future.
    pub(crate) fn call<A>(self: Arc<Self>, action: A, options: CallOptions) -> ReplyFuture<A::Reply>
    where
        S: Handler<A>,
        A: Action,
    {
        let timeout = options.timeout;
        #[cfg(feature = "cluster")]
        let (action, options) = match self.call_remote(action, options) {
            Ok(sent) => return sent,
            Err(local) => local,
        };
        // A durable action's call is a job (its attempts come through `attempt`).
        if self.def.durable {
            let (action, options) = match self.call_durable(action, options) {
                Ok(job) => return job,
                Err(call) => call,
            };
            return self.deliver_call(action, options, timeout);
        }
        self.deliver_call(action, options, timeout)
    }

    #[inline(always)]
    fn deliver_call<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
        timeout: Option<Duration>,
    ) -> ReplyFuture<A::Reply>
    where
        S: Handler<A>,
        A: Action,
    {
        let (tx, rx) = slim();
        let call = EnvelopeKind::action(action, options, ReplyTo::Handle(tx));
        let sent = self.deliver(call, Delivery::Prompt);
        ReplyFuture::new(self, A::NAME.into(), sent.map(|()| rx), timeout)
    }

    /// An attempt of durable job `job`, delivered now; its reply comes as a call's does.
    pub(crate) fn attempt<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
        job: Arc<JobRun>,
    ) -> ReplyFuture<A::Reply>
    where
        S: Handler<A>,
        A: Action,
    {
        let timeout = options.timeout;
        let (tx, rx) = slim();
        let call = EnvelopeKind::attempt(action, options, job, ReplyTo::Handle(tx));
        let sent = self.deliver(call, Delivery::Prompt);
        ReplyFuture::new(self, A::NAME.into(), sent.map(|()| rx), timeout)
    }

    /// Enqueues a typed call of a durable action as a job, and waits for the job's reply;
    /// gives the call back if the action is not durable.
    #[cold]
    fn call_durable<A>(
        self: &Arc<Self>,
        action: A,
        options: CallOptions,
    ) -> Result<ReplyFuture<A::Reply>, (A, CallOptions)>
    where
        S: Handler<A>,
        A: Action,
    {
        let Some(entry) = self
            .def
            .actions
            .iter()
            .find(|a| a.name == A::NAME && a.retry.is_some())
        else {
            return Err((action, options));
        };
        let (from_reply, service) = (entry.from_reply, self.name().to_owned());
        let encode_error = |message: String| Error::Encode {
            service: service.clone(),
            action: A::NAME.to_owned(),
            message,
        };
        let params = (entry.to_params)(&action).map_err(encode_error);
        let jobs = self.shared.runtime.jobs.get().cloned();
        let cell: Arc<dyn ErasedService> = self.clone();
        let correlation = super::current_correlation();
        let reply = async move {
            let jobs = jobs.ok_or(Error::ShuttingDown)?;
            let mut options = crate::jobs::JobOptions {
                call: options,
                ..Default::default()
            };
            // A durable call made from a handler carries its correlation id, as any call does.
            if options.call.correlation_id.is_none() {
                options.call.correlation_id = correlation;
            }
            let id = jobs.enqueue(&cell, A::NAME, params?, options).await?.id();
            let reply = jobs.wait(id).await?;
            let reply = from_reply(&reply).map_err(|e| Error::Encode {
                service: cell.name().to_owned(),
                action: A::NAME.to_owned(),
                message: format!("the job's reply does not decode: {e}"),
            })?;
            reply
                .downcast::<A::Reply>()
                .map(|r| *r)
                .map_err(|_| Error::Encode {
                    service: cell.name().to_owned(),
                    action: A::NAME.to_owned(),
                    message: "the job's reply is not of the action's type".into(),
                })
        };
        // The job is followed on a task of its own, and its reply comes back on a call's
        // channel: the reply future of an in-memory call stays as small as it was. Each attempt
        // has the call's timeout; the caller waits for the job.
        let (tx, rx) = slim();
        // The wait lasts as long as the job, whether or not its caller still waits.
        tokio::spawn(async move {
            ReplyTo::Handle(tx).send(reply.await.map_err(Box::new));
        });
        Ok(ReplyFuture::new(
            self.shared.clone(),
            A::NAME.into(),
            Ok(rx),
            None,
        ))
    }

    /// Where calls go when the service does not run here: to a node that serves it.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote(&self) -> Option<Arc<dyn crate::remote::Remote>> {
        crate::remote::route(&self.shared)
    }

    /// Sends a typed call to another node when the service runs there and not here; gives the
    /// call back otherwise. Only declared actions can cross.
    #[cfg(feature = "cluster")]
    fn call_remote<A>(
        &self,
        action: A,
        options: CallOptions,
    ) -> Result<ReplyFuture<A::Reply>, (A, CallOptions)>
    where
        S: Handler<A>,
        A: Action,
    {
        let Some(remote) = self.remote() else {
            return Err((action, options));
        };
        let Some(entry) = self.def.actions.iter().find(|a| a.name == A::NAME) else {
            let err = Error::UnknownAction {
                service: self.name().to_owned(),
                action: A::NAME.to_owned(),
            };
            return Ok(ReplyFuture::new(
                self.shared.clone(),
                A::NAME.into(),
                Err(err),
                None,
            ));
        };
        let (wire, timeout) = (entry.wire, options.timeout);
        // Sent now, as a local call is delivered now.
        let reply = remote.act_typed(A::NAME, wire, Box::new(action), options);
        let service = self.name().to_owned();
        let reply = Box::pin(async move {
            reply.await.and_then(|reply| {
                reply
                    .downcast::<A::Reply>()
                    .map(|r| *r)
                    .map_err(|_| Error::Encode {
                        service,
                        action: A::NAME.to_owned(),
                        message: "the reply is not of the action's type".into(),
                    })
            })
        });
        Ok(ReplyFuture::remote(
            self.shared.clone(),
            A::NAME.into(),
            reply,
            timeout,
        ))
    }

    pub(crate) fn command(&self, command: Command, options: CallOptions) -> ReplyFuture<()> {
        let timeout = options.timeout;
        let label = command.label();
        // Refused before the call's clock starts: a timeout never hides a bad name.
        let sent = self.admit(command).map_err(|e| *e).and_then(|command| {
            let (tx, rx) = slim();
            let call = EnvelopeKind::command(command, options, Some(ReplyTo::Handle(tx)));
            self.deliver(call, Delivery::Prompt).map(|()| rx)
        });
        ReplyFuture::new(self.shared.clone(), label, sent, timeout)
    }

    /// A command as the service will take it ([`Command::named`]), or why it will not. Nothing
    /// is allocated unless it is refused: a `tell` pays only for the name's comparison.
    #[inline]
    fn admit(&self, command: Command) -> Result<Command, Box<Error>> {
        if !self.shared.enabled {
            return Err(Box::new(self.shared.unavailable()));
        }
        let command = match command {
            Command::Custom { name, args } if Command::is_built_in(&name) => {
                let named = Command::named(name.clone(), args);
                named.map_err(|e| {
                    Box::new(Error::BadParameters {
                        service: self.name().to_owned(),
                        action: name,
                        field: e.field,
                        message: e.message,
                    })
                })?
            }
            command => command,
        };
        if !self.def.accepts(&command) {
            return Err(Box::new(Error::UnknownCommand {
                service: self.name().to_owned(),
                command: command.name().to_owned(),
            }));
        }
        Ok(command)
    }

    pub(crate) fn info(&self) -> ServiceInfo {
        let def = &self.def;
        let mut kinds = Vec::new();
        if self.shared.has_background() {
            kinds.push(ServiceKind::LongRunning);
        }
        if def.schedule.is_some() {
            kinds.push(ServiceKind::Periodic);
        }
        if !def.commands.is_empty() || !def.actions.is_empty() {
            kinds.push(ServiceKind::Pokable);
        }
        if def.startup.is_some() {
            kinds.push(ServiceKind::Startup);
        }
        let mut commands = def.commands.clone();
        if def.schedule.is_some() && !commands.iter().any(|c| c == Command::TRIGGER) {
            commands.insert(0, Command::TRIGGER.to_owned());
        }
        ServiceInfo {
            name: def.name.clone(),
            type_name: std::any::type_name::<S>().to_owned(),
            kinds,
            schedule: def.schedule.as_ref().map(ScheduleInfo::from),
            startup: def.startup.clone(),
            actions: def.actions.iter().map(|a| a.name.to_owned()).collect(),
            durable: def
                .actions
                .iter()
                .filter(|a| a.retry.is_some())
                .map(|a| a.name.to_owned())
                .collect(),
            commands,
            events: def.events.iter().map(|d| d.name.to_string()).collect(),
            critical: def.critical,
            concurrency: def.concurrency,
            queue_limit: def.queue_limit,
            restart: def.restart,
            enabled: self.shared.enabled,
            run_in: def.run_in.clone(),
            priority: def.priority,
        }
    }

    pub(crate) async fn health(&self) -> Health {
        // Supervision knows first: a service that is down is unhealthy whatever it would say.
        let what = match self.shared.stored_state() {
            ServiceState::Failed => "failed",
            ServiceState::Restarting => "restarting",
            ServiceState::Stopped | ServiceState::Stopping => return Health::unhealthy("stopped"),
            // Off by choice, which is no fault.
            ServiceState::Disabled => return Health::Healthy,
            _ => "",
        };
        if !what.is_empty() {
            let reason = self.shared.last_failure().unwrap_or_else(|| what.into());
            return Health::unhealthy(format!("{what}: {reason}"));
        }
        let Some(actor) = self.actor_ref() else {
            return Health::unhealthy(self.shared.unavailable().to_string());
        };
        let limit = self.def.health_timeout + Duration::from_secs(1);
        match actor
            .call(
                |reply| ServiceMessage::Query(Query::Health(reply)),
                Some(limit),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(health)) => health,
            Ok(ractor::rpc::CallResult::Timeout) => Health::unhealthy("health check timed out"),
            _ => Health::unhealthy(self.shared.unavailable().to_string()),
        }
    }

    pub(crate) async fn ready(&self) -> bool {
        if !self.shared.enabled {
            return true;
        }
        let Some(actor) = self.actor_ref() else {
            return false;
        };
        let limit = self.def.health_timeout + Duration::from_secs(1);
        matches!(
            actor
                .call(
                    |reply| ServiceMessage::Query(Query::Ready(reply)),
                    Some(limit)
                )
                .await,
            Ok(ractor::rpc::CallResult::Success(true))
        )
    }
}

/// What the runtime needs of a service without knowing its type.
pub(crate) trait ErasedService: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn service_type(&self) -> TypeId;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn shared(&self) -> &Arc<ServiceShared>;
    fn startup(&self) -> Option<&Startup>;
    fn restart(&self) -> Restart;
    fn critical(&self) -> bool;
    fn stop_timeout(&self) -> Duration;
    fn info(&self) -> ServiceInfo;
    fn detach(&self);
    fn spawn(
        self: Arc<Self>,
        supervisor: ActorCell,
    ) -> BoxFuture<'static, Result<ActorCell, String>>;
    fn drain(&self, deadline: Instant, reason: Error) -> BoxFuture<'static, ()>;
    fn act_encoded(
        self: Arc<Self>,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>>;
    fn command(
        self: Arc<Self>,
        command: Command,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<(), Error>>;
    fn tell(&self, command: Command) -> Result<(), Error>;
    /// The retry policy of `action`, if it is durable.
    fn durable(&self, action: &str) -> Option<Retry>;
    /// Whether any of its actions is durable.
    fn has_durable(&self) -> bool;
    /// Whether it keeps state in the store.
    fn keeps_state(&self) -> bool;
    /// How many of its jobs may be handed to its host at once without one being refused.
    fn job_room(&self) -> usize;
    /// Whether `params` (JSON) decode into `action`: checked before a job is committed.
    fn check_params(&self, action: &str, params: &[u8]) -> Result<(), Error>;
    /// Runs an attempt of durable job `job` of `action`, here, with JSON `params`.
    fn run_attempt(
        self: Arc<Self>,
        action: &str,
        params: Vec<u8>,
        options: CallOptions,
        job: Arc<JobRun>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>>;
    fn set_paused(&self, paused: bool) -> Result<(), Error>;
    fn ready(self: Arc<Self>) -> BoxFuture<'static, bool>;
    /// The schema hash of a declared action, to compare with a remote caller's.
    #[cfg(feature = "cluster")]
    fn action_schema(&self, action: &str) -> Option<u64>;
    /// The schema hashes of every declared action and event, for other nodes to compare.
    #[cfg(feature = "cluster")]
    fn schemas(&self) -> crate::codec::typed::ServiceSchemas;
    /// The status here, or of the node that serves the service when it does not run here.
    fn status_routed(&self) -> BoxFuture<'static, Result<ServiceStatus, Error>>;
    /// The health here, or of the node that serves the service when it does not run here.
    fn health_routed(self: Arc<Self>) -> BoxFuture<'static, Result<Health, Error>>;
}

impl<S: Service> ErasedService for ServiceCell<S> {
    fn name(&self) -> &str {
        ServiceCell::name(self)
    }

    fn service_type(&self) -> TypeId {
        TypeId::of::<S>()
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn shared(&self) -> &Arc<ServiceShared> {
        &self.shared
    }

    fn startup(&self) -> Option<&Startup> {
        self.def.startup.as_ref()
    }

    fn restart(&self) -> Restart {
        self.def.restart
    }

    fn critical(&self) -> bool {
        self.def.critical
    }

    fn stop_timeout(&self) -> Duration {
        self.def.stop_timeout
    }

    fn info(&self) -> ServiceInfo {
        ServiceCell::info(self)
    }

    fn detach(&self) {
        self.door.store(None);
    }

    fn spawn(
        self: Arc<Self>,
        supervisor: ActorCell,
    ) -> BoxFuture<'static, Result<ActorCell, String>> {
        Box::pin(async move {
            let inbox = inbox();
            let args = HostArgs {
                cell: self.clone(),
                inbox: inbox.clone(),
            };
            match HostActor::<S>::spawn_linked(None, HostActor::new(), args, supervisor).await {
                Ok((actor, _)) => {
                    let cell = actor.get_cell();
                    self.door.store(Some(Arc::new(Door::new(actor, inbox))));
                    Ok(cell)
                }
                Err(SpawnErr::StartupFailed(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn drain(&self, deadline: Instant, reason: Error) -> BoxFuture<'static, ()> {
        let actor = self.door.swap(None).map(|door| door.actor.clone());
        let grace = self.def.stop_timeout * 2 + Duration::from_secs(1);
        Box::pin(async move {
            let Some(actor) = actor else { return };
            let limit = deadline.saturating_duration_since(Instant::now()) + grace;
            let drained = actor
                .call(
                    |reply| {
                        let drain = crate::host::Drain {
                            deadline,
                            reason,
                            reply,
                        };
                        ServiceMessage::Internal(Internal(crate::host::InternalKind::Drain(
                            Box::new(drain),
                        )))
                    },
                    Some(limit),
                )
                .await;
            if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
                actor.kill();
            }
            let _ = actor.wait(Some(grace)).await;
        })
    }

    fn act_encoded(
        self: Arc<Self>,
        action: &str,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return remote.act_encoded(action, format, params, options);
        }
        match self.def.actions.iter().find(|a| a.name == action) {
            Some(entry) => (entry.invoker(format))(self, params, options),
            None => {
                let err = Error::UnknownAction {
                    service: self.name().to_owned(),
                    action: action.to_owned(),
                };
                Box::pin(async move { Err(err) })
            }
        }
    }

    fn command(
        self: Arc<Self>,
        command: Command,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<(), Error>> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return remote.command(command, options);
        }
        // Delivered now, as typed calls are (see `action::invoke`).
        Box::pin(ServiceCell::command(&self, command, options))
    }

    fn tell(&self, command: Command) -> Result<(), Error> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return remote.tell(command);
        }
        let command = self.admit(command).map_err(|e| *e)?;
        let call = EnvelopeKind::command(command, CallOptions::default(), None);
        self.deliver(call, Delivery::Batched)
    }

    fn durable(&self, action: &str) -> Option<Retry> {
        self.def
            .actions
            .iter()
            .find(|a| a.name == action)
            .and_then(|a| a.retry)
    }

    fn has_durable(&self) -> bool {
        self.def.durable
    }

    fn keeps_state(&self) -> bool {
        self.def.keeps_state
    }

    fn job_room(&self) -> usize {
        const UNBOUNDED: usize = 1024;
        self.def.queue_limit.map_or(UNBOUNDED, |limit| {
            (limit + self.def.concurrency).min(UNBOUNDED)
        })
    }

    fn check_params(&self, action: &str, params: &[u8]) -> Result<(), Error> {
        let Some(entry) = self.def.actions.iter().find(|a| a.name == action) else {
            return Err(Error::UnknownAction {
                service: self.name().to_owned(),
                action: action.to_owned(),
            });
        };
        (entry.check)(params).map_err(|e| Error::BadParameters {
            service: self.name().to_owned(),
            action: action.to_owned(),
            field: e.field,
            message: e.message,
        })
    }

    fn run_attempt(
        self: Arc<Self>,
        action: &str,
        params: Vec<u8>,
        options: CallOptions,
        job: Arc<JobRun>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        match self.def.actions.iter().find(|a| a.name == action) {
            Some(entry) => (entry.attempt)(self, params, options, job),
            None => {
                let err = Error::UnknownAction {
                    service: self.name().to_owned(),
                    action: action.to_owned(),
                };
                Box::pin(async move { Err(err) })
            }
        }
    }

    fn set_paused(&self, paused: bool) -> Result<(), Error> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return remote.set_paused(paused);
        }
        if !self.shared.enabled {
            return Err(self.shared.unavailable());
        }
        if self.def.schedule.is_none() {
            return Err(Error::UnknownCommand {
                service: self.name().to_owned(),
                command: if paused { "pause" } else { "resume" }.to_owned(),
            });
        }
        let was = self
            .shared
            .paused
            .swap(paused, std::sync::atomic::Ordering::Relaxed);
        if was != paused {
            tracing::info!(service = self.name(), paused, "schedule paused or resumed");
        }
        Ok(())
    }

    fn ready(self: Arc<Self>) -> BoxFuture<'static, bool> {
        Box::pin(async move { ServiceCell::ready(&self).await })
    }

    #[cfg(feature = "cluster")]
    fn action_schema(&self, action: &str) -> Option<u64> {
        self.def
            .actions
            .iter()
            .find(|a| a.name == action)
            .map(|a| a.wire.schema)
    }

    #[cfg(feature = "cluster")]
    fn schemas(&self) -> crate::codec::typed::ServiceSchemas {
        crate::codec::typed::ServiceSchemas {
            service: self.shared.name.to_string(),
            actions: self
                .def
                .actions
                .iter()
                .map(|a| (a.name.to_owned(), a.wire.schema))
                .collect(),
            events: self
                .shared
                .events
                .iter()
                .map(|d| (d.name.to_string(), d.schema))
                .collect(),
        }
    }

    fn status_routed(&self) -> BoxFuture<'static, Result<ServiceStatus, Error>> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return Box::pin(async move { remote.status().await });
        }
        let status = self.shared.status();
        Box::pin(async move { Ok(status) })
    }

    fn health_routed(self: Arc<Self>) -> BoxFuture<'static, Result<Health, Error>> {
        #[cfg(feature = "cluster")]
        if let Some(remote) = self.remote() {
            return Box::pin(async move { remote.health().await });
        }
        Box::pin(async move { Ok(ServiceCell::health(&self).await) })
    }
}

impl<S: Service> crate::action::HasCell for S {
    type Cell = ServiceCell<S>;
}

impl<S: Service> crate::action::Cell<S> for ServiceCell<S> {
    fn name(&self) -> &str {
        ServiceCell::name(self)
    }

    fn call<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
    ) -> impl Future<Output = Result<A::Reply, Error>> + Send + 'static
    where
        S: Handler<A>,
        A: Action,
    {
        ServiceCell::call(self, action, options)
    }

    fn attempt<A>(
        self: Arc<Self>,
        action: A,
        options: CallOptions,
        job: Arc<JobRun>,
    ) -> impl Future<Output = Result<A::Reply, Error>> + Send + 'static
    where
        S: Handler<A>,
        A: Action,
    {
        ServiceCell::attempt(self, action, options, job)
    }
}
