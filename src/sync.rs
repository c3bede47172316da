//! The primitives under Sora's own lock-free protocols (a host's inbox and run queue, the event
//! bus's queue of work, a subscription's queue), from one place: the standard library's and
//! crossbeam's normally, [loom]'s when the crate is built with `--cfg sora_loom`, so that the
//! protocols can be checked against every interleaving loom can produce:
//!
//! ```text
//! RUSTFLAGS="--cfg sora_loom" cargo test --release --lib --no-default-features -- loom
//! ```
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(sora_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(not(sora_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(sora_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(sora_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// An unbounded queue for many producers: crossbeam's lock-free `SegQueue`, which allocates
/// nothing until its first item.
#[cfg(not(sora_loom))]
pub(crate) type Queue<T> = crossbeam_queue::SegQueue<T>;

/// Under loom: a locked deque, a queue whose every step loom sees. `SegQueue` is linearizable,
/// so a model in which each of its operations is one atomic step is a faithful one.
#[cfg(sora_loom)]
#[derive(Debug)]
pub(crate) struct Queue<T>(Mutex<std::collections::VecDeque<T>>);

#[cfg(sora_loom)]
impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue(Mutex::new(std::collections::VecDeque::new()))
    }

    pub(crate) fn push(&self, item: T) {
        self.0.lock().unwrap().push_back(item);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}
