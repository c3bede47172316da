//! How a durable action's failed attempts are retried: how many attempts, and how long each
//! retry waits. The job dispatcher (`crate::jobs`) acts on it; it is the model's, so that a
//! definition can declare it without knowing the dispatcher.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::restart::{Backoff, backoff_delay};

/// A durable action's retry policy: at most [`max_attempts`](Self::max_attempts) attempts, the
/// n-th retry waiting [`backoff`](Self::backoff)`.delay(n)`.
///
/// The default is 5 attempts, waiting about 1 s, 4 s, 16 s and 64 s between them (each moved by
/// up to 20% either way, so that jobs that failed together do not come back together), never
/// more than 10 minutes before that jitter. A handler that knows its error will not pass by waiting returns a
/// [`Permanent`](crate::action::Permanent) error, and the job is dead at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sora::{Backoff, Retry};
///
/// let retry = Retry::attempts(3).backoff(Backoff {
///     initial: Duration::from_secs(2),
///     factor: 3.0,
///     jitter: 0.0,
///     ..Retry::default().backoff
/// });
/// assert_eq!(retry.max_attempts, 3);
/// assert_eq!(retry.delay(1), Duration::from_secs(2));
/// assert_eq!(retry.delay(2), Duration::from_secs(6));
/// assert_eq!(Retry::none().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// How many attempts a job gets, the first included (at least 1).
    pub max_attempts: u32,
    /// How long the n-th retry waits after the n-th failed attempt
    /// ([`reset_after`](Backoff::reset_after) plays no part).
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(600),
                factor: 4.0,
                jitter: 0.2,
                reset_after: Duration::ZERO,
            },
        }
    }
}

impl Retry {
    /// The default backoff, with `max_attempts` attempts (at least 1).
    pub fn attempts(max_attempts: u32) -> Self {
        Retry {
            max_attempts: max_attempts.max(1),
            ..Retry::default()
        }
    }

    /// One attempt and no retry: the job is still kept, run at least once and recorded.
    pub fn none() -> Self {
        Retry::attempts(1)
    }

    /// With this backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long to wait after the `failed`-th failed attempt (1-based) before the next.
    pub fn delay(&self, failed: u32) -> Duration {
        backoff_delay(&self.backoff, failed, fastrand::f64())
    }
}

/// Emitted by a service when one of its durable jobs is dead: its last attempt failed, or its
/// error was permanent. (A job found dead at a start, its process having stopped under it too
/// often, is in the dead letters without an event.) The job waits in the dead
/// letters (see [`Jobs::dead`](crate::Jobs::dead)) to be retried or discarded.
///
/// Every service with a durable action emits it; subscribe as to any event.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use sora::{Action, BoxError, Context, Definition, Handler, JobDead, Retry, Service};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Doomed;
/// impl Action for Doomed {
///     const NAME: &'static str = "doomed";
///     type Reply = ();
/// }
/// #[derive(Default)]
/// struct Worker;
/// impl Service for Worker {
///     fn define(def: &mut Definition<Self>) {
///         def.durable::<Doomed>(Retry::none());
///     }
/// }
/// impl Handler<Doomed> for Worker {
///     async fn handle(&self, _: Doomed, _: &Context) -> Result<(), BoxError> {
///         Err("no luck".into())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sora::Error> {
/// let runtime = sora::Runtime::builder()
///     .store(sora::store::RedbStore::in_memory()?)
///     .service(Worker::default)
///     .start()
///     .await?;
/// let mut dead = runtime.on::<JobDead>().stream().await?;
/// let ticket = runtime.service::<Worker>()?.enqueue(Doomed).await?;
/// let event = dead.next().await.expect("an event");
/// assert_eq!(event.id, ticket.id().to_string());
/// assert_eq!((event.action.as_str(), event.attempts), ("doomed", 1));
/// assert!(event.error.contains("no luck"));
/// # runtime.shutdown().await }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDead {
    /// The job's id.
    pub id: String,
    /// The action it called.
    pub action: String,
    /// Its idempotency key, if it had one.
    pub key: Option<String>,
    /// The attempts it made.
    pub attempts: u32,
    /// Its last attempt's error.
    pub error: String,
}

impl crate::event::record::Event for JobDead {
    const NAME: &'static str = "job-dead";
}
