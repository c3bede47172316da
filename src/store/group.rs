//! Group commit: the changes of any number of callers, committed in batches, one commit at a
//! time.
//!
//! A caller hands its change over and waits for the answer the change carries. When no commit
//! is under way, the caller whose change finds none starts a committer on the blocking pool of
//! its runtime, or on a thread of its own outside one. The committer takes what waits (up to a
//! batch), commits it, and looks again, until nothing waits. Changes that arrive while it
//! commits wait for the next batch: under load one commit takes many, and a change alone is
//! committed at once.
//!
//! Why the blocking pool and not a thread the store keeps: a commit there is work the runtime
//! knows of. On a paused clock (`start_paused`), tokio moves time on only when every task
//! waits on a timer; a commit on a thread of its own looks, from the runtime, like nothing to
//! do, and the clock would jump to the next timer (a delayed job's time) while the disk works.
//! A commit on the blocking pool holds the clock until it is done, so a test on paused time
//! sees the same order of events on every run.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::Semaphore;

/// Commits the changes of many callers in batches (see the module's docs).
///
/// Its drop commits what still waits, on the dropping thread unless a committer is running
/// (then it waits for that one), and returns once no commit is under way: what a commit writes
/// to can be closed after it.
pub(super) struct GroupCommit<R> {
    shared: Arc<Shared<R>>,
}

struct Shared<R> {
    waiting: Mutex<Waiting<R>>,
    /// Signalled when a committer stops running.
    stopped: Condvar,
    /// Room in the queue: a caller takes one before its change waits, and it is given back
    /// when the change is taken into a batch (or given up).
    room: Semaphore,
    /// The most changes one commit takes.
    batch: usize,
    commit: Box<dyn Fn(Vec<R>) + Send + Sync>,
}

struct Waiting<R> {
    changes: VecDeque<R>,
    committer: Phase,
    /// The last handle is gone: its drop commits what is left, and no committer starts.
    closed: bool,
}

/// Where the one committer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// None: the next change to wait starts one.
    Idle,
    /// Started, on the blocking pool or a thread, and not yet running: the drop may take its
    /// place, so that it never waits for a task that a full pool has not run.
    Queued,
    /// Taking batches.
    Running,
}

impl<R: Send + 'static> GroupCommit<R> {
    /// A group commit that takes at most `batch` changes in one commit, lets at most `queue`
    /// wait, and commits a batch with `commit`. `commit` answers every change it is given.
    pub(super) fn new(
        batch: usize,
        queue: usize,
        commit: impl Fn(Vec<R>) + Send + Sync + 'static,
    ) -> Self {
        GroupCommit {
            shared: Arc::new(Shared {
                waiting: Mutex::new(Waiting {
                    changes: VecDeque::new(),
                    committer: Phase::Idle,
                    closed: false,
                }),
                stopped: Condvar::new(),
                room: Semaphore::new(queue.max(1)),
                batch: batch.max(1),
                commit: Box::new(commit),
            }),
        }
    }

    /// Hands `change` over to be committed; waits only while the queue is full. The change's
    /// own answer says when it is committed.
    pub(super) async fn hand(&self, change: R) {
        // Never closed: the semaphore lives as long as `self`.
        if let Ok(room) = self.shared.room.acquire().await {
            room.forget();
        }
        let start = {
            let mut waiting = lock(&self.shared.waiting);
            waiting.changes.push_back(change);
            let idle = waiting.committer == Phase::Idle;
            if idle {
                waiting.committer = Phase::Queued;
            }
            idle
        };
        if start {
            let committer = Committer::new(self.shared.clone(), Handing::First);
            match tokio::runtime::Handle::try_current() {
                // A runtime that is shutting down drops the task unrun: the drop hands on.
                Ok(runtime) => drop(runtime.spawn_blocking(move || committer.run())),
                Err(_) => committer.on_a_thread(),
            }
        }
    }
}

impl<R> Drop for GroupCommit<R> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut waiting = lock(&shared.waiting);
        waiting.closed = true;
        while waiting.committer == Phase::Running {
            waiting = shared
                .stopped
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // A queued committer finds the store closed when it runs, and leaves: what waits is
        // committed here.
        waiting = shared.drain(waiting);
        waiting.committer = Phase::Idle;
    }
}

impl<R> Shared<R> {
    /// Commits batch after batch, the lock let go while each commits, until nothing waits;
    /// answers the lock, held.
    fn drain<'a>(&'a self, mut waiting: MutexGuard<'a, Waiting<R>>) -> MutexGuard<'a, Waiting<R>> {
        while let Some(batch) = self.take(&mut waiting) {
            drop(waiting);
            (self.commit)(batch);
            waiting = lock(&self.waiting);
        }
        waiting
    }

    /// The next batch, its room given back; `None` when nothing waits.
    fn take(&self, waiting: &mut Waiting<R>) -> Option<Vec<R>> {
        if waiting.changes.is_empty() {
            return None;
        }
        let n = waiting.changes.len().min(self.batch);
        self.room.add_permits(n);
        Some(waiting.changes.drain(..n).collect())
    }
}

/// Whether a committer takes over from one that could not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handing {
    First,
    /// The one before it was never run: if this one is not run either, what waits is given up.
    AfterUnrun,
}

/// The one committer: takes batches until nothing waits.
struct Committer<R: Send + 'static> {
    shared: Arc<Shared<R>>,
    handing: Handing,
    /// Whether it has run: one dropped before (its task was never run) hands on once.
    ran: bool,
    /// Whether it ran to the end; one that ran and did not (a commit panicked) hands on.
    done: bool,
}

impl<R: Send + 'static> Committer<R> {
    fn new(shared: Arc<Shared<R>>, handing: Handing) -> Self {
        Committer {
            shared,
            handing,
            ran: false,
            done: false,
        }
    }

    /// Runs on a thread of its own; a thread that cannot be had drops it unrun.
    fn on_a_thread(self) {
        let _ = std::thread::Builder::new()
            .name("sora-store".into())
            .spawn(move || self.run());
    }

    fn run(mut self) {
        self.ran = true;
        let shared = self.shared.clone();
        let mut waiting = lock(&shared.waiting);
        if waiting.closed || waiting.committer != Phase::Queued {
            // The last handle's drop took its place.
            self.done = true;
            return;
        }
        waiting.committer = Phase::Running;
        let mut waiting = shared.drain(waiting);
        waiting.committer = Phase::Idle;
        shared.stopped.notify_all();
        self.done = true;
    }
}

impl<R: Send + 'static> Drop for Committer<R> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shared = &self.shared;
        let mut waiting = lock(&shared.waiting);
        if waiting.closed {
            // The drop of the last handle commits what is left once this one has stopped.
            if waiting.committer == Phase::Running {
                waiting.committer = Phase::Idle;
                shared.stopped.notify_all();
            }
            return;
        }
        let next = match (self.ran, self.handing) {
            // A commit panicked: its batch is lost (each change's answer is dropped, and its
            // caller hears that the writer has stopped), and another committer takes the rest.
            (true, _) => Handing::First,
            // Never run, as a runtime that shuts down drops its tasks: on a thread, then.
            (false, Handing::First) => Handing::AfterUnrun,
            // Twice no committer could be run: give up what waits, and say so to its callers.
            (false, Handing::AfterUnrun) => {
                let lost: Vec<R> = waiting.changes.drain(..).collect();
                shared.room.add_permits(lost.len());
                waiting.committer = Phase::Idle;
                shared.stopped.notify_all();
                drop(waiting);
                tracing::error!(
                    changes = lost.len(),
                    "no thread could be had to commit the store's changes; they are not committed"
                );
                return;
            }
        };
        waiting.committer = Phase::Queued;
        shared.stopped.notify_all();
        drop(waiting);
        Committer::new(shared.clone(), next).on_a_thread();
    }
}

/// A lock that a panic elsewhere does not poison: what it guards is whole after every step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    type Change = (u32, oneshot::Sender<usize>);

    /// A group commit whose commit answers each change with the size of its batch.
    fn sized(batch: usize, queue: usize, commits: Arc<AtomicUsize>) -> GroupCommit<Change> {
        GroupCommit::new(batch, queue, move |changes: Vec<Change>| {
            commits.fetch_add(1, Ordering::SeqCst);
            let n = changes.len();
            for (_, reply) in changes {
                let _ = reply.send(n);
            }
        })
    }

    #[tokio::test]
    async fn a_change_alone_is_committed_alone() {
        let commits = Arc::new(AtomicUsize::new(0));
        let group = sized(8, 64, commits.clone());
        for i in 0..3 {
            let (tx, rx) = oneshot::channel();
            group.hand((i, tx)).await;
            assert_eq!(rx.await.unwrap(), 1);
        }
        assert_eq!(commits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_lose_nothing_and_no_batch_is_past_its_size() {
        let commits = Arc::new(AtomicUsize::new(0));
        let group = Arc::new(sized(16, 32, commits.clone()));
        let callers: Vec<_> = (0..256)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move {
                    let (tx, rx) = oneshot::channel();
                    group.hand((i, tx)).await;
                    rx.await.unwrap()
                })
            })
            .collect();
        for caller in callers {
            let n = caller.await.unwrap();
            assert!((1..=16).contains(&n), "a batch of {n}");
        }
    }

    #[test]
    fn outside_a_runtime_a_thread_commits() {
        let commits = Arc::new(AtomicUsize::new(0));
        let group = sized(8, 8, commits.clone());
        let (tx, rx) = oneshot::channel();
        futures::executor::block_on(group.hand((1, tx)));
        assert_eq!(futures::executor::block_on(rx).unwrap(), 1);
        drop(group);
        assert_eq!(commits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_last_handle_waits_for_the_commit_under_way() {
        let (started, on_start) = std::sync::mpsc::channel();
        let (finish, on_finish) = std::sync::mpsc::channel::<()>();
        // As the store's commit holds its file only while it commits.
        let held = Arc::new(AtomicUsize::new(0));
        let ours = Arc::downgrade(&held);
        let on_finish = Mutex::new(on_finish);
        let group = GroupCommit::new(1, 1, move |changes: Vec<u32>| {
            let hold = ours.upgrade().unwrap();
            started.send(changes.len()).unwrap();
            lock(&on_finish).recv().unwrap();
            hold.store(1, Ordering::SeqCst);
        });
        futures::executor::block_on(group.hand(1));
        assert_eq!(on_start.recv().unwrap(), 1);
        let theirs = held.clone();
        let dropping = std::thread::spawn(move || {
            drop(group);
            // A drop that did not wait returns before the commit is let finish.
            theirs.load(Ordering::SeqCst)
        });
        finish.send(()).unwrap();
        assert_eq!(
            dropping.join().unwrap(),
            1,
            "the drop waited for the commit"
        );
        // What the commit held is let go once the drop has returned.
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[test]
    fn a_commit_that_panics_loses_its_batch_only() {
        let group = GroupCommit::new(1, 8, move |changes: Vec<Change>| {
            for (i, reply) in changes {
                assert!(i >= 2, "the first two commits fail");
                let _ = reply.send(1);
            }
        });
        let replies: Vec<_> = (0..4)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                futures::executor::block_on(group.hand((i, tx)));
                rx
            })
            .collect();
        let answers: Vec<_> = replies
            .into_iter()
            .map(|rx| futures::executor::block_on(rx).ok())
            .collect();
        assert_eq!(answers, [None, None, Some(1), Some(1)]);
    }

    /// Runs `scenario` on a thread of its own and fails if it has not returned in 30 s.
    fn within_30_s(scenario: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            scenario();
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the scenario returned");
    }

    #[test]
    fn the_last_handle_dropped_on_a_full_blocking_pool_commits_what_waits_itself() {
        within_30_s(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(1)
                .build()
                .unwrap();
            let commits = Arc::new(AtomicUsize::new(0));
            let group = sized(8, 8, commits.clone());
            let handle = runtime.handle().clone();
            // The pool's one thread drops the last handle, so the committer that its change
            // started waits behind it for a thread that never comes free.
            let answer = runtime.block_on(async move {
                tokio::task::spawn_blocking(move || {
                    let (tx, rx) = oneshot::channel();
                    handle.block_on(group.hand((1, tx)));
                    drop(group);
                    futures::executor::block_on(rx)
                })
                .await
                .unwrap()
            });
            assert_eq!(answer.unwrap(), 1);
            assert_eq!(commits.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_committer_that_a_stopping_runtime_never_runs_hands_on_to_a_thread() {
        within_30_s(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(1)
                .build()
                .unwrap();
            let commits = Arc::new(AtomicUsize::new(0));
            let group = sized(8, 8, commits.clone());
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (tx, rx) = oneshot::channel();
            runtime.block_on(async {
                // The pool's one thread is taken, so the committer is queued behind it.
                drop(tokio::task::spawn_blocking(move || held.recv()));
                group.hand((1, tx)).await;
            });
            runtime.shutdown_background();
            // Its thread free again, the stopping pool drops the queued committer unrun.
            release.send(()).unwrap();
            assert_eq!(futures::executor::block_on(rx).unwrap(), 1);
            drop(group);
            assert_eq!(commits.load(Ordering::SeqCst), 1);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_waits_for_a_commit() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let group = GroupCommit::new(1, 8, move |changes: Vec<oneshot::Sender<()>>| {
            // The commit waits for a thread outside the runtime, as a disk would.
            lock(&rx).recv().unwrap();
            for reply in changes {
                let _ = reply.send(());
            }
        });
        let before = tokio::time::Instant::now();
        let timer = tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(3600)));
        let (reply, committed) = oneshot::channel();
        group.hand(reply).await;
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(()).unwrap();
        });
        committed.await.unwrap();
        releaser.join().unwrap();
        assert_eq!(
            tokio::time::Instant::now(),
            before,
            "the clock stood still while the commit ran"
        );
        timer.abort();
    }
}
