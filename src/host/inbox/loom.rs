//! The inbox's protocol under every interleaving loom finds: callers that send straight to the
//! mailbox or through the inbox, against a host that takes turns over it.

use std::collections::VecDeque;

use ::loom::sync::atomic::AtomicUsize;
use ::loom::sync::{Arc, Mutex};
use ::loom::thread;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Call {
    caller: usize,
    n: usize,
}

enum Message {
    /// A call that rang the bell.
    Rung(Call),
    Wake,
}

/// The host actor's mailbox: first in, first out.
#[derive(Default)]
struct Mailbox(Mutex<VecDeque<Message>>);

impl Mailbox {
    fn push(&self, message: Message) {
        self.0.lock().unwrap().push_back(message);
    }

    fn pop(&self) -> Option<Message> {
        self.0.lock().unwrap().pop_front()
    }
}

/// What `Door::deliver` does, with this mailbox for the actor.
fn deliver(inbox: &Inbox<Call>, mailbox: &Mailbox, call: Call, delivery: Delivery) {
    match inbox.offer(call, delivery) {
        Offered::Send(call) => mailbox.push(Message::Rung(call)),
        Offered::Queued { ring: true } => mailbox.push(Message::Wake),
        Offered::Queued { ring: false } => {}
        Offered::Closed => panic!("the inbox is not closed"),
    }
}

/// The host: handles its mailbox in order, a turn over the inbox after each message that rang
/// the bell, until every caller is done and the mailbox is empty. What it took, in the order it
/// took it.
fn host(
    inbox: &Inbox<Call>,
    mailbox: &Mailbox,
    done: &AtomicUsize,
    callers: usize,
    limit: usize,
) -> Vec<Call> {
    let mut taken = Vec::new();
    loop {
        // Read before the mailbox: once every caller is done, all they sent is in it.
        let finished = done.load(Ordering::SeqCst) == callers;
        let message = mailbox.pop();
        if let Some(Message::Rung(call)) = &message {
            taken.push(*call);
        }
        match message {
            // The bell's message: a turn answers it.
            Some(Message::Rung(_) | Message::Wake) => {
                let mut turn = Turn::with_limit(limit);
                while let Some(call) = inbox.next_call(&mut turn) {
                    taken.push(call);
                }
                if turn.more {
                    mailbox.push(Message::Wake);
                }
            }
            None if finished => return taken,
            None => thread::yield_now(),
        }
    }
}

/// Runs `plans` (one list of deliveries per caller) against a host whose turns take `limit`
/// calls, and checks that every call was taken once, each caller's in the order it made them.
fn check(plans: Vec<Vec<Delivery>>, limit: usize) {
    let mut model = ::loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(move || {
        let inbox = Arc::new(Inbox::<Call>::new());
        let mailbox = Arc::new(Mailbox::default());
        let done = Arc::new(AtomicUsize::new(0));
        let callers = plans.len();
        for (caller, plan) in plans.clone().into_iter().enumerate() {
            let (inbox, mailbox, done) = (inbox.clone(), mailbox.clone(), done.clone());
            thread::spawn(move || {
                for (n, delivery) in plan.into_iter().enumerate() {
                    deliver(&inbox, &mailbox, Call { caller, n }, delivery);
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let taken = host(&inbox, &mailbox, &done, callers, limit);
        for (caller, plan) in plans.iter().enumerate() {
            let theirs: Vec<usize> = taken
                .iter()
                .filter(|c| c.caller == caller)
                .map(|c| c.n)
                .collect();
            let sent: Vec<usize> = (0..plan.len()).collect();
            assert_eq!(
                theirs, sent,
                "caller {caller}: lost, doubled or reordered: {taken:?}"
            );
        }
        assert!(
            inbox.next_call(&mut Turn::default()).is_none(),
            "a call was left behind"
        );
    });
}

#[test]
fn loom_prompt_and_batched_calls_arrive_once_and_in_order() {
    use Delivery::{Batched, Prompt};
    check(vec![vec![Batched, Prompt], vec![Prompt, Batched]], TURN);
}

#[test]
fn loom_longer_mixes_keep_each_callers_order() {
    use Delivery::{Batched, Prompt};
    check(
        vec![vec![Prompt, Batched, Prompt], vec![Batched, Prompt]],
        TURN,
    );
}

#[test]
fn loom_prompt_calls_of_many_callers_keep_each_callers_order() {
    use Delivery::{Batched, Prompt};
    check(vec![vec![Prompt, Batched], vec![Prompt, Prompt]], TURN);
}

#[test]
fn loom_a_turn_cut_short_at_its_limit_leaves_nothing_behind() {
    use Delivery::{Batched, Prompt};
    check(vec![vec![Batched, Batched, Prompt], vec![Prompt]], 1);
}
