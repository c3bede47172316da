//! The bus's queue of work under every interleaving loom finds: pushers racing the consumer as
//! it silences the bell.

use std::collections::VecDeque;

use ::loom::sync::atomic::AtomicUsize;
use ::loom::sync::{Arc, Mutex};
use ::loom::thread;

use super::*;

fn check(pushers: usize, each: usize, limit: usize) {
    let mut model = ::loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(move || {
        let queue = Arc::new(WorkQueue::<(usize, usize)>::new());
        // The consumer's mailbox: how many wake-ups wait in it.
        let wakes = Arc::new(Mutex::new(VecDeque::new()));
        let done = Arc::new(AtomicUsize::new(0));
        for pusher in 0..pushers {
            let (queue, wakes, done) = (queue.clone(), wakes.clone(), done.clone());
            thread::spawn(move || {
                for n in 0..each {
                    if queue.push((pusher, n)) {
                        wakes.lock().unwrap().push_back(());
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let mut taken = Vec::new();
        loop {
            // Read before the mailbox: once every pusher is done, all they sent is in it.
            let finished = done.load(Ordering::SeqCst) == pushers;
            let wake = wakes.lock().unwrap().pop_front();
            match wake {
                Some(()) => {
                    if queue.turn(limit, |item| taken.push(item)) {
                        wakes.lock().unwrap().push_back(());
                    }
                }
                None if finished => break,
                None => thread::yield_now(),
            }
        }
        for pusher in 0..pushers {
            let theirs: Vec<usize> = taken
                .iter()
                .filter(|(p, _)| *p == pusher)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(
                theirs,
                (0..each).collect::<Vec<_>>(),
                "pusher {pusher}: {taken:?}"
            );
        }
        assert!(!queue.turn(usize::MAX, |item| panic!("{item:?} was left behind")));
    });
}

#[test]
fn loom_no_work_is_left_with_nobody_coming_for_it() {
    check(2, 2, 1024);
}

#[test]
fn loom_a_turn_cut_short_at_its_limit_comes_back_for_the_rest() {
    check(2, 2, 1);
}
