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
pub(super) struct GroupCommit<R> {
    shared: Arc<Shared<R>>,
    gate: Arc<Gate>,
}

struct Shared<R> {
    waiting: Mutex<Waiting<R>>,
    /// Room in the queue: a caller takes one before its change waits, the committer gives it
    /// back when it takes the change into a batch.
    room: Semaphore,
    /// The most changes one commit takes.
    batch: usize,
    commit: Box<dyn Fn(Vec<R>) + Send + Sync>,
}

struct Waiting<R> {
    changes: VecDeque<R>,
    /// Whether a committer is running or about to; the caller that sets it starts one.
    leading: bool,
}

/// Counts the committers alive, so that the last handle can wait for them: what a commit
/// holds (the file) is released once the handle's drop returns.
#[derive(Default)]
struct Gate {
    live: Mutex<usize>,
    none: Condvar,
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
                    leading: false,
                }),
                room: Semaphore::new(queue),
                batch: batch.max(1),
                commit: Box::new(commit),
            }),
            gate: Arc::default(),
        }
    }

    /// Hands `change` over to be committed; waits only while the queue is full. The change's
    /// own answer says when it is committed.
    pub(super) async fn hand(&self, change: R) {
        // Never closed: the semaphore lives as long as `self`.
        if let Ok(room) = self.shared.room.acquire().await {
            room.forget();
        }
        let lead = {
            let mut waiting = lock(&self.shared.waiting);
            waiting.changes.push_back(change);
            !std::mem::replace(&mut waiting.leading, true)
        };
        if lead {
            Committer::start(self.shared.clone(), self.gate.clone(), false);
        }
    }
}

impl<R> Drop for GroupCommit<R> {
    fn drop(&mut self) {
        // A committer that runs holds what the commit writes to; wait until it has let go.
        let mut live = lock(&self.gate.live);
        while *live > 0 {
            live = self
                .gate
                .none
                .wait(live)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The one committer: takes batches until nothing waits.
struct Committer<R: Send + 'static> {
    /// Taken on drop, so that the gate opens only once this no longer holds the commit.
    shared: Option<Arc<Shared<R>>>,
    gate: Arc<Gate>,
    /// Whether it ran to the end; one that did not (it never started, or a commit panicked)
    /// hands its place on.
    done: bool,
    /// Whether it took over from one that did not run to the end.
    second: bool,
}

impl<R: Send + 'static> Committer<R> {
    fn start(shared: Arc<Shared<R>>, gate: Arc<Gate>, second: bool) {
        *lock(&gate.live) += 1;
        let committer = Committer {
            shared: Some(shared),
            gate,
            done: false,
            second,
        };
        match tokio::runtime::Handle::try_current() {
            // A runtime that is shutting down drops the task unrun: the drop hands on.
            Ok(runtime) => drop(runtime.spawn_blocking(move || committer.run())),
            // A thread that cannot be had drops the committer unrun, the same.
            Err(_) => drop(
                std::thread::Builder::new()
                    .name("sora-store".into())
                    .spawn(move || committer.run()),
            ),
        }
    }

    fn run(mut self) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        loop {
            let batch: Vec<R> = {
                let mut waiting = lock(&shared.waiting);
                if waiting.changes.is_empty() {
                    waiting.leading = false;
                    break;
                }
                let n = waiting.changes.len().min(shared.batch);
                waiting.changes.drain(..n).collect()
            };
            shared.room.add_permits(batch.len());
            (shared.commit)(batch);
        }
        self.done = true;
    }
}

impl<R: Send + 'static> Drop for Committer<R> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            if !self.done {
                if self.second {
                    // Twice no committer could run: give up on what waits. Each change's
                    // answer is dropped, and its caller hears that the writer has stopped.
                    let mut waiting = lock(&shared.waiting);
                    waiting.changes.clear();
                    waiting.leading = false;
                } else {
                    Committer::start(shared, self.gate.clone(), true);
                }
            }
        }
        let mut live = lock(&self.gate.live);
        *live -= 1;
        if *live == 0 {
            self.gate.none.notify_all();
        }
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
    async fn many_callers_share_commits_and_none_is_lost() {
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
        assert!(commits.load(Ordering::SeqCst) <= 256);
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
        let held = Arc::new(());
        let ours = held.clone();
        let on_finish = Mutex::new(on_finish);
        let group = GroupCommit::new(1, 1, move |changes: Vec<u32>| {
            let _hold = ours.clone();
            started.send(changes.len()).unwrap();
            lock(&on_finish).recv().unwrap();
        });
        futures::executor::block_on(group.hand(1));
        assert_eq!(on_start.recv().unwrap(), 1);
        let dropping = std::thread::spawn(move || drop(group));
        finish.send(()).unwrap();
        dropping.join().unwrap();
        // The commit, and what it held, are gone once the drop returned.
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[test]
    fn a_commit_that_panics_loses_its_batch_only() {
        let group = GroupCommit::new(1, 8, move |changes: Vec<Change>| {
            for (i, reply) in changes {
                assert_ne!(i, 0, "the first commit fails");
                let _ = reply.send(1);
            }
        });
        let (first, lost) = oneshot::channel();
        let (second, kept) = oneshot::channel();
        futures::executor::block_on(async {
            group.hand((0, first)).await;
            group.hand((1, second)).await;
        });
        assert!(futures::executor::block_on(lost).is_err());
        assert_eq!(futures::executor::block_on(kept).unwrap(), 1);
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
