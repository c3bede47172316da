//! A lane: one service's jobs in this process, and how many of them may be under way at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::host::ErasedService;

/// A service whose jobs run here.
pub(super) struct Lane {
    service: Arc<dyn ErasedService>,
    /// How many jobs may be claimed and not yet recorded at once: what the service's host can
    /// queue, so that a job handed to it is never refused for room.
    limit: usize,
    /// Jobs claimed (or about to be) and not yet recorded.
    running: AtomicUsize,
    /// How often it was told that jobs may wait for it in the store since the pump last found
    /// none: a mark made while the pump claims outlives the pump's finding.
    backlog: AtomicU64,
}

impl Lane {
    pub(super) fn new(service: Arc<dyn ErasedService>) -> Self {
        Lane {
            limit: service.job_room().max(1),
            service,
            running: AtomicUsize::new(0),
            backlog: AtomicU64::new(1),
        }
    }

    pub(super) fn name(&self) -> &str {
        self.service.name()
    }

    pub(super) fn service(&self) -> &Arc<dyn ErasedService> {
        &self.service
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Takes room for one job, if there is some.
    pub(super) fn take(&self) -> bool {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes all the room there is; answers how much.
    pub(super) fn reserve(&self) -> usize {
        let mut taken = 0;
        let _ = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                taken = self.limit.saturating_sub(n);
                Some(n + taken)
            });
        taken
    }

    /// Counts jobs taken beyond the room reserved.
    pub(super) fn add(&self, jobs: usize) {
        self.running.fetch_add(jobs, Ordering::AcqRel);
    }

    /// Gives back room taken and not used.
    pub(super) fn unreserve(&self, room: usize) {
        self.running.fetch_sub(room, Ordering::AcqRel);
    }

    /// Gives back one job's room.
    pub(super) fn give_back(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn set_backlog(&self) {
        self.backlog.fetch_add(1, Ordering::AcqRel);
    }

    /// The marks so far, read before a claim; nonzero if jobs may wait.
    pub(super) fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Acquire)
    }

    /// A claim that began after `seen` marks found fewer jobs than it had room for: those
    /// marks are answered, and any made since are kept.
    pub(super) fn clear_backlog(&self, seen: u64) {
        self.backlog.fetch_sub(seen, Ordering::AcqRel);
    }
}
