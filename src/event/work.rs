//! The bus's queue of work, with its doorbell: many pushers, one consumer woken through its
//! mailbox at most once per burst.
//!
//! A pusher pushes, then rings; only the ring that finds the bell silent sends the wake-up. The
//! consumer takes what is queued, silences the bell, and looks once more: work pushed after the
//! queue ran dry is either seen then, or was pushed by someone whose ring found the bell silent
//! and whose wake-up is on its way. No work is left in the queue with nobody coming for it.

use crate::sync::{AtomicBool, Ordering, Queue};

pub(crate) struct WorkQueue<T> {
    work: Queue<T>,
    bell: AtomicBool,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            work: Queue::new(),
            bell: AtomicBool::new(false),
        }
    }

    /// Pushes `item`; `true` if this pusher must wake the consumer.
    pub(crate) fn push(&self, item: T) -> bool {
        self.work.push(item);
        !self.bell.swap(true, Ordering::SeqCst)
    }

    /// One turn of the consumer: takes up to `limit` items, in the order they were pushed.
    /// `true` if it stopped at the limit with work left: the bell stays rung, and the consumer
    /// must wake itself again.
    pub(crate) fn turn(&self, limit: usize, mut take: impl FnMut(T)) -> bool {
        let mut taken = 0;
        loop {
            while let Some(item) = self.work.pop() {
                take(item);
                taken += 1;
                if taken == limit {
                    return true;
                }
            }
            // A swap rather than a store: the same instruction on x86 (a SeqCst store is an
            // `xchg`), and loom models a store racing the pushers' swaps wrongly (its issue
            // #254: the store may fall between the read and the write of a swap).
            self.bell.swap(false, Ordering::SeqCst);
            if self.work.is_empty() || self.bell.swap(true, Ordering::SeqCst) {
                // Empty, or somebody rang after the queue ran dry: their wake-up is coming.
                return false;
            }
        }
    }

    /// Drops whatever is queued.
    pub(crate) fn clear(&self) {
        while self.work.pop().is_some() {}
    }
}

#[cfg(all(test, sora_loom))]
mod loom;
