//! The per-incarnation run queue: a concurrency limit and a priority heap.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use super::job::Job;
use crate::Error;
use crate::service::Service;

pub(crate) struct Queued<S: Service> {
    priority: i32,
    seq: u64,
    pub(crate) job: Box<dyn Job<S>>,
}

impl<S: Service> PartialEq for Queued<S> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl<S: Service> Eq for Queued<S> {}
impl<S: Service> PartialOrd for Queued<S> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<S: Service> Ord for Queued<S> {
    /// Higher priority first; among equals, the earlier arrival first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// What a new job should do.
pub(crate) enum Admit<S: Service> {
    /// A slot was free: run it now.
    Run(Box<dyn Job<S>>),
    /// Queued behind others.
    Queued,
    /// The queue is closed (the incarnation is stopping or failed).
    Closed(Box<dyn Job<S>>, Error),
}

pub(crate) struct Scheduler<S: Service> {
    heap: BinaryHeap<Queued<S>>,
    running: usize,
    limit: usize,
    seq: u64,
    closed: Option<Error>,
}

impl<S: Service> Scheduler<S> {
    pub(crate) fn new(limit: usize) -> Self {
        Scheduler {
            heap: BinaryHeap::new(),
            running: 0,
            limit,
            seq: 0,
            closed: None,
        }
    }

    pub(crate) fn admit(&mut self, job: Box<dyn Job<S>>) -> Admit<S> {
        if let Some(err) = &self.closed {
            return Admit::Closed(job, err.clone());
        }
        if self.running < self.limit && self.heap.is_empty() {
            self.running += 1;
            return Admit::Run(job);
        }
        self.seq += 1;
        self.heap.push(Queued {
            priority: job.priority(),
            seq: self.seq,
            job,
        });
        Admit::Queued
    }

    /// Called by a task whose job finished: the next job for it, or `None` and the slot is freed.
    pub(crate) fn next(&mut self) -> Option<Box<dyn Job<S>>> {
        if self.closed.is_none() {
            if let Some(q) = self.heap.pop() {
                return Some(q.job);
            }
        }
        self.running = self.running.saturating_sub(1);
        None
    }

    /// Releases a slot without taking more work (the job's task is ending).
    pub(crate) fn release(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Closes the queue and hands back every queued job, to be refused with `err`.
    pub(crate) fn close(&mut self, err: Error) -> Vec<Box<dyn Job<S>>> {
        self.closed.get_or_insert(err);
        std::mem::take(&mut self.heap)
            .into_sorted_vec()
            .into_iter()
            .rev()
            .map(|q| q.job)
            .collect()
    }
}
