//! The runtime's durable jobs, as a caller reaches them: by id, by filter, dead or alive.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::RuntimeHandle;
use crate::Error;
use crate::jobs::Dispatcher;
use crate::state::State;
use crate::store::{Job, JobFilter, JobId, JobPage};

/// The durable jobs of a runtime: look one up, list them, wait for one's reply, give a dead
/// one a new series of attempts, or discard one.
///
/// Got from [`RuntimeHandle::jobs`]; cheap to clone.
///
/// # Examples
///
/// ```
/// use sora::store::{JobFilter, JobState, RedbStore};
/// use sora::{Action, BoxError, Context, Definition, Handler, Retry, Service};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Resize { width: u32 }
/// impl Action for Resize {
///     const NAME: &'static str = "resize";
///     type Reply = u32;
/// }
///
/// #[derive(Default)]
/// struct Images;
/// impl Service for Images {
///     fn define(def: &mut Definition<Self>) {
///         def.durable::<Resize>(Retry::default());
///     }
/// }
/// impl Handler<Resize> for Images {
///     async fn handle(&self, r: Resize, _: &Context) -> Result<u32, BoxError> {
///         Ok(r.width / 2)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
/// let runtime = sora::Runtime::builder()
///     .store(RedbStore::in_memory()?)
///     .service(Images::default)
///     .start()
///     .await?;
/// let job = runtime.service::<Images>()?.enqueue(Resize { width: 640 }).await?;
/// let jobs = runtime.jobs().expect("a store is open");
/// assert_eq!(jobs.wait_for::<u32>(job.id()).await?, 320);
/// // The reply comes as the handler returns it; the outcome's commit follows at once.
/// let kept = jobs.get(job.id())?;
/// assert!(matches!(kept.state, JobState::Completed | JobState::Running { .. }));
/// assert_eq!(kept.params, br#"{"width":640}"#);
/// assert_eq!(jobs.list(&JobFilter::default())?.len(), 1);
/// # runtime.shutdown().await }
/// ```
#[derive(Clone)]
pub struct Jobs {
    dispatcher: Arc<Dispatcher>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("store", &self.dispatcher.store().ok())
            .finish()
    }
}

impl Jobs {
    pub(crate) fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Jobs { dispatcher }
    }

    /// The job of this id, wherever it is in its life.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] if the store keeps no such job; [`Error::Store`] if it cannot be
    /// read.
    pub fn get(&self, id: JobId) -> Result<Job, Error> {
        self.dispatcher
            .store()?
            .job(id)?
            .ok_or_else(|| Error::UnknownJob { id: id.to_string() })
    }

    /// The jobs of the first page that `filter` asks for, oldest first unless it asks for the
    /// newest (see [`page`](Self::page)).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, Error> {
        self.dispatcher.store()?.jobs(filter)
    }

    /// A page of the jobs that `filter` asks for, and the cursor of the next: pass
    /// [`JobPage::next`] as [`JobFilter::after`] to go on. A page reads at most
    /// [`SCAN_LIMIT`](crate::store::SCAN_LIMIT) jobs, so that a filter that matches few of
    /// many ends its page early, with a cursor, rather than reading the whole store.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sora::{Action, BoxError, Context, Definition, Handler, Retry, Service};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping(u32);
    /// # impl Action for Ping { const NAME: &'static str = "ping"; type Reply = u32; }
    /// # struct Pinger;
    /// # impl Service for Pinger {
    /// #     fn define(def: &mut Definition<Self>) { def.durable::<Ping>(Retry::none()); }
    /// # }
    /// # impl Handler<Ping> for Pinger {
    /// #     async fn handle(&self, p: Ping, _: &Context) -> Result<u32, BoxError> { Ok(p.0) }
    /// # }
    /// use sora::store::JobFilter;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// # let runtime = sora::Runtime::builder()
    /// #     .store(sora::store::RedbStore::in_memory()?)
    /// #     .service(|| Pinger).start().await?;
    /// # let pinger = runtime.service::<Pinger>()?;
    /// # for i in 0..5 { pinger.act(Ping(i)).await?; }
    /// let jobs = runtime.jobs().unwrap();
    /// let mut filter = JobFilter::default();
    /// filter.limit = Some(2);
    /// filter.newest_first = true;
    /// let mut seen = 0;
    /// loop {
    ///     let page = jobs.page(&filter)?;
    ///     seen += page.jobs.len();
    ///     match page.next {
    ///         Some(next) => filter.after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 5);
    /// # runtime.shutdown().await }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn page(&self, filter: &JobFilter) -> Result<JobPage, Error> {
        self.dispatcher.store()?.page(filter)
    }

    /// The dead jobs (of one service, or of all), oldest first: each with its parameters and
    /// every attempt's error.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn dead(&self, service: Option<&str>) -> Result<Vec<Job>, Error> {
        self.list(&JobFilter {
            service: service.map(str::to_owned),
            state: Some("dead".into()),
            ..JobFilter::default()
        })
    }

    /// Waits for job `id` to end, and answers its reply as JSON.
    ///
    /// # Errors
    ///
    /// The error of its last attempt once the job is dead: as that attempt failed
    /// ([`Error::ActionFailed`], [`Error::Timeout`]…) for a waiter of this process present
    /// then, and [`Error::ActionFailed`] with its message when read back from the store;
    /// [`Error::UnknownJob`] if there is no such job, or it is discarded while waited for;
    /// [`Error::ShuttingDown`] if the runtime stops first.
    pub async fn wait(&self, id: JobId) -> Result<serde_json::Value, Error> {
        self.wait_for(id).await
    }

    /// Waits for job `id` to end, and answers its reply as a `R`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and [`Error::Encode`] if the reply is not a `R`.
    pub async fn wait_for<R: DeserializeOwned>(&self, id: JobId) -> Result<R, Error> {
        let reply = self.dispatcher.wait(id).await?;
        serde_json::from_slice(&reply).map_err(|e| {
            let (service, action) = match self.dispatcher.store().and_then(|s| s.job(id)) {
                Ok(Some(job)) => (job.service, job.action),
                _ => (String::new(), String::new()),
            };
            Error::Encode {
                service,
                action,
                message: format!("the reply of job {id} does not decode: {e}"),
            }
        })
    }

    /// Gives dead job `id` a new series of attempts, as many as it was given when it was
    /// enqueued, counted from the first; the errors of the earlier series are kept.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] if there is no such job, [`Error::JobConflict`] if it is not dead.
    pub async fn retry(&self, id: JobId) -> Result<(), Error> {
        self.dispatcher.retry(id).await
    }

    /// Removes job `id` from the store, with its idempotency key, unless it is running;
    /// answers whether there was such a job.
    ///
    /// # Errors
    ///
    /// [`Error::JobConflict`] if the job is running.
    pub async fn discard(&self, id: JobId) -> Result<bool, Error> {
        self.dispatcher.discard(id).await
    }
}

impl RuntimeHandle {
    /// The runtime's durable jobs; `None` when it has no store (no store was given or
    /// configured, and no service declares a durable action).
    pub fn jobs(&self) -> Option<Jobs> {
        self.shared.jobs.get().cloned().map(Jobs::new)
    }

    /// The state kept under the name `service`, for an operator: read, write or clear what is
    /// kept under that name, whether or not a service of that name runs here (the state of a
    /// renamed or removed service stays under its old name until it is cleared).
    ///
    /// A service reaches its own through [`Context::state`](crate::Context::state). Without a
    /// store, there is no state: reads find nothing and writes fail with [`Error::Store`].
    ///
    /// What is written here, a service reads as its own: a value of another type than the
    /// service reads it as makes the service's `get` fail with [`Error::BadState`]. Write to a
    /// running service's keys only what it writes itself.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
    /// let runtime = sora::Runtime::builder()
    ///     .store(sora::store::RedbStore::in_memory()?)
    ///     .start()
    ///     .await?;
    /// let old = runtime.state("old-name");
    /// old.set("cursor", &42).await?;
    /// assert_eq!(old.get::<u64>("cursor")?, Some(42));
    /// assert_eq!(old.clear().await?, 1);
    /// # runtime.shutdown().await }
    /// ```
    pub fn state(&self, service: &str) -> State {
        State::of(self.shared.clone(), service)
    }
}
