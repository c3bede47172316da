//! The per-incarnation run queue: a concurrency limit and a priority heap.
//!
//! The common case, a job that finds a free slot and an empty queue, takes no lock: the number of
//! running jobs and a flag that says "the queue is not empty, or closed" share one atomic word,
//! the [`Gate`]. A job that finds the flag set, or no free slot, takes the lock; so does a job
//! that finishes while the flag is set, to hand its slot to the next one in the queue.
//!
//! The invariant that keeps the two paths consistent: the flag is set, under the lock, before a
//! job is pushed, and cleared, under the lock, when the queue empties. A finishing job that sees
//! the flag clear may give its slot back without the lock, because nothing is waiting for it; one
//! that sees it set takes the lock, where it finds the queue as the pusher left it.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use super::job::JobBox;
use crate::Error;
use crate::service::Service;
use crate::sync::{AtomicUsize, Mutex, MutexGuard, Ordering};

/// Set while the queue holds a job or is closed: admission and hand-over must take the lock.
const SLOW: usize = 1 << (usize::BITS - 1);

/// What status reads of one incarnation's scheduler: the running jobs and the [`SLOW`] flag in
/// one word, and the depth of the queue.
#[derive(Debug)]
pub(crate) struct Gate {
    slots: AtomicUsize,
    /// Written under the queue's lock, read by status without it.
    queued: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            slots: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        }
    }
}

impl Gate {
    /// How many jobs are running.
    pub(crate) fn running(&self) -> usize {
        self.slots.load(Ordering::SeqCst) & !SLOW
    }

    /// How many jobs wait for a slot.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// What waits in a run queue: anything with a priority.
pub(crate) trait Prioritized {
    fn priority(&self) -> i32;
}

impl<S: Service> Prioritized for JobBox<S> {
    #[inline]
    fn priority(&self) -> i32 {
        (**self).priority()
    }
}

struct Queued<J> {
    priority: i32,
    seq: u64,
    job: J,
}

impl<J> PartialEq for Queued<J> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl<J> Eq for Queued<J> {}
impl<J> PartialOrd for Queued<J> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<J> Ord for Queued<J> {
    /// Higher priority first; among equals, the earlier arrival first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// What a job that did not find a free slot at once should do.
pub(crate) enum Admit<J> {
    /// A slot was free after all: run it now.
    Run(J),
    /// Queued behind others.
    Queued,
    /// The queue is at its limit: refused.
    Full(J, usize),
    /// The queue is closed (the incarnation is stopping or failed).
    Closed(J, Error),
}

struct Queue<J> {
    heap: BinaryHeap<Queued<J>>,
    seq: u64,
    closed: Option<Error>,
}

/// The run queue of a service's incarnation.
pub(crate) struct Scheduler<J> {
    gate: std::sync::Arc<Gate>,
    limit: usize,
    /// How many jobs may wait; `usize::MAX` for no limit.
    queue_limit: usize,
    queue: Mutex<Queue<J>>,
}

impl<J: Prioritized> Scheduler<J> {
    pub(crate) fn new(
        limit: usize,
        queue_limit: Option<usize>,
        gate: std::sync::Arc<Gate>,
    ) -> Self {
        Scheduler {
            gate,
            limit: limit.clamp(1, !SLOW),
            queue_limit: queue_limit.unwrap_or(usize::MAX),
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                seq: 0,
                closed: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<J>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot if one is free and nothing is queued, without the lock.
    pub(crate) fn try_enter(&self) -> bool {
        let gate = &self.gate.slots;
        let mut current = gate.load(Ordering::SeqCst);
        while current & SLOW == 0 && current < self.limit {
            match gate.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    /// Admits a job that [`Self::try_enter`] turned away: it runs if a slot has been freed since,
    /// waits in the queue otherwise, and is refused if the queue is at its limit.
    pub(crate) fn admit(&self, job: J) -> Admit<J> {
        let mut queue = self.lock();
        if let Some(err) = &queue.closed {
            return Admit::Closed(job, err.clone());
        }
        let gate = &self.gate.slots;
        let mut current = gate.load(Ordering::SeqCst);
        loop {
            let (next, runs) = if current & SLOW == 0 && current < self.limit {
                (current + 1, true)
            } else if queue.heap.len() >= self.queue_limit {
                // Not queued, so the flag stays as it is: set only by a job that waits.
                return Admit::Full(job, self.queue_limit);
            } else {
                (current | SLOW, false)
            };
            match gate.compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) if runs => return Admit::Run(job),
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        queue.seq += 1;
        let seq = queue.seq;
        queue.heap.push(Queued {
            priority: job.priority(),
            seq,
            job,
        });
        self.gate.queued.store(queue.heap.len(), Ordering::Relaxed);
        Admit::Queued
    }

    /// Called when a job finishes: the next job for its slot, or `None` and the slot is given
    /// back.
    #[inline]
    pub(crate) fn finish(&self) -> Option<J> {
        let gate = &self.gate.slots;
        let mut current = gate.load(Ordering::SeqCst);
        while current & SLOW == 0 {
            match gate.compare_exchange_weak(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return None,
                Err(actual) => current = actual,
            }
        }
        let mut queue = self.lock();
        if queue.closed.is_none() {
            if let Some(next) = queue.heap.pop() {
                if queue.heap.is_empty() {
                    gate.fetch_and(!SLOW, Ordering::SeqCst);
                }
                self.gate.queued.store(queue.heap.len(), Ordering::Relaxed);
                return Some(next.job);
            }
        }
        gate.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// Gives a slot back without taking more work (the job's incarnation is failing).
    pub(crate) fn release(&self) {
        let _queue = self.lock();
        self.gate.slots.fetch_sub(1, Ordering::SeqCst);
    }

    /// Closes the queue and hands back every queued job, to be refused with `err`.
    pub(crate) fn close(&self, err: Error) -> Vec<J> {
        let mut queue = self.lock();
        queue.closed.get_or_insert(err);
        self.gate.slots.fetch_or(SLOW, Ordering::SeqCst);
        self.gate.queued.store(0, Ordering::Relaxed);
        std::mem::take(&mut queue.heap)
            .into_sorted_vec()
            .into_iter()
            .rev()
            .map(|q| q.job)
            .collect()
    }
}

#[cfg(all(test, sora_loom))]
mod loom;

#[cfg(all(test, not(sora_loom)))]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use super::*;
    use crate::host::job::{Incarnation, Job, JobEnd};

    struct Probe;
    impl Service for Probe {}

    struct Tagged(i32);
    impl Job<Probe> for Tagged {
        fn priority(&self) -> i32 {
            self.0
        }
        fn poll_run(
            self: Pin<&mut Self>,
            _: &Arc<Incarnation<Probe>>,
            _: &mut Context<'_>,
        ) -> Poll<JobEnd> {
            Poll::Ready(JobEnd::Done)
        }
        fn reject(self: Pin<&mut Self>, _: Error) {}
    }

    fn scheduler(limit: usize) -> (Scheduler<JobBox<Probe>>, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        (Scheduler::new(limit, None, gate.clone()), gate)
    }

    #[test]
    fn free_slots_are_taken_without_queueing() {
        let (s, gate) = scheduler(2);
        assert!(s.try_enter());
        assert!(s.try_enter());
        assert!(!s.try_enter(), "the limit is two");
        assert_eq!(gate.running(), 2);
        assert!(s.finish().is_none());
        assert!(s.finish().is_none());
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn a_finished_job_hands_its_slot_to_the_highest_priority_in_arrival_order() {
        let (s, gate) = scheduler(1);
        assert!(s.try_enter());
        for p in [0, 5, 5, -1] {
            assert!(matches!(s.admit(Box::pin(Tagged(p))), Admit::Queued));
        }
        assert!(!s.try_enter(), "queued jobs come before newcomers");
        let mut order = Vec::new();
        assert_eq!(gate.queued(), 4);
        while let Some(job) = s.finish() {
            order.push(job.priority());
            assert_eq!(gate.running(), 1, "the slot passes on without being freed");
        }
        assert_eq!(order, [5, 5, 0, -1]);
        assert_eq!(gate.running(), 0);
        assert!(s.try_enter(), "an empty queue lets the fast path back in");
    }

    #[test]
    fn a_job_admitted_after_a_slot_freed_runs_at_once() {
        let (s, _) = scheduler(1);
        assert!(s.try_enter());
        assert!(s.finish().is_none());
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Run(_)));
    }

    #[test]
    fn a_closed_queue_refuses_and_hands_back_what_waited() {
        let (s, gate) = scheduler(1);
        assert!(s.try_enter());
        assert!(matches!(s.admit(Box::pin(Tagged(1))), Admit::Queued));
        assert_eq!(gate.queued(), 1);
        let refused = s.close(Error::ShuttingDown);
        assert_eq!(refused.len(), 1);
        assert_eq!(gate.queued(), 0);
        assert!(!s.try_enter());
        assert!(matches!(
            s.admit(Box::pin(Tagged(0))),
            Admit::Closed(_, Error::ShuttingDown)
        ));
        assert!(s.finish().is_none(), "a closed queue hands nothing on");
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn a_full_queue_refuses_newcomers_whatever_their_priority() {
        let gate = Arc::new(Gate::default());
        let s: Scheduler<JobBox<Probe>> = Scheduler::new(1, Some(2), gate.clone());
        assert!(s.try_enter());
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Queued));
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Queued));
        assert!(matches!(s.admit(Box::pin(Tagged(9))), Admit::Full(_, 2)));
        assert_eq!(gate.queued(), 2);
        // One leaves the queue for the slot: there is room again.
        assert!(s.finish().is_some());
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Queued));
    }

    #[test]
    fn a_zero_limit_refuses_rather_than_queues_and_keeps_the_fast_path() {
        let gate = Arc::new(Gate::default());
        let s: Scheduler<JobBox<Probe>> = Scheduler::new(1, Some(0), gate.clone());
        assert!(s.try_enter());
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Full(_, 0)));
        assert!(s.finish().is_none());
        assert!(s.try_enter(), "nothing ever waited: the fast path is open");
        assert!(s.finish().is_none());
        assert!(matches!(s.admit(Box::pin(Tagged(0))), Admit::Run(_)));
    }

    /// Finishes the job holding a slot and every job handed on to that slot.
    fn run_out(s: &Scheduler<JobBox<Probe>>) {
        while s.finish().is_some() {}
    }

    #[test]
    fn slots_balance_under_concurrent_admission_and_finishing() {
        let (s, gate) = scheduler(3);
        let s = Arc::new(s);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if s.try_enter() {
                            run_out(&s);
                        } else if let Admit::Run(_) = s.admit(Box::pin(Tagged(0))) {
                            run_out(&s);
                        }
                        assert!(s.gate.running() <= 3, "never more than the limit");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every queued job was handed a slot by a finishing one, and every slot was given back.
        assert_eq!(gate.running(), 0);
        assert!(s.try_enter(), "the queue is empty: the fast path is open");
    }
}
