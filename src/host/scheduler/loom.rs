//! The run queue's gate under every interleaving loom finds: jobs admitted while others finish,
//! and the queue closed while jobs are admitted.

use ::loom::sync::Mutex;
use ::loom::sync::atomic::AtomicUsize;
use ::loom::thread;

use super::*;

struct Job;

impl Prioritized for Job {
    fn priority(&self) -> i32 {
        0
    }
}

fn scheduler(limit: usize) -> std::sync::Arc<Scheduler<Job>> {
    std::sync::Arc::new(Scheduler::new(
        limit,
        None,
        std::sync::Arc::new(Gate::default()),
    ))
}

/// Runs a job that holds a slot, then every job handed on to that slot, as a host does.
fn run_out(s: &Scheduler<Job>, ran: &AtomicUsize) {
    ran.fetch_add(1, Ordering::SeqCst);
    while s.finish().is_some() {
        ran.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a job that arrives does: a free slot at once, else the queue.
fn arrive(s: &Scheduler<Job>, ran: &AtomicUsize) {
    if s.try_enter() {
        run_out(s, ran);
    } else if let Admit::Run(_) = s.admit(Job) {
        run_out(s, ran);
    }
}

#[test]
fn loom_every_admitted_job_runs_and_every_slot_comes_back() {
    let mut model = ::loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let s = scheduler(1);
        let ran = std::sync::Arc::new(AtomicUsize::new(0));
        let others: Vec<_> = (0..2)
            .map(|_| {
                let (s, ran) = (s.clone(), ran.clone());
                thread::spawn(move || arrive(&s, &ran))
            })
            .collect();
        arrive(&s, &ran);
        for other in others {
            other.join().unwrap();
        }
        // A job that waited was handed the slot of one that finished; none was stranded.
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        assert_eq!(s.gate.running(), 0);
        assert_eq!(s.gate.queued(), 0);
        assert!(s.try_enter(), "the fast path is open again");
    });
}

#[test]
fn loom_a_job_admitted_as_the_queue_closes_is_refused_or_handed_back() {
    let mut model = ::loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let s = scheduler(1);
        assert!(s.try_enter());
        let outcome = std::sync::Arc::new(Mutex::new(None));
        let admitting = {
            let (s, outcome) = (s.clone(), outcome.clone());
            thread::spawn(move || {
                let admitted = match s.admit(Job) {
                    Admit::Queued => "queued",
                    Admit::Closed(..) => "refused",
                    Admit::Run(_) => "ran",
                    Admit::Full(..) => "full",
                };
                *outcome.lock().unwrap() = Some(admitted);
            })
        };
        let handed_back = s.close(Error::ShuttingDown).len();
        admitting.join().unwrap();
        let admitted = outcome.lock().unwrap().expect("an outcome");
        // Queued before the close: handed back by it. After: refused. Never lost.
        match admitted {
            "queued" => assert_eq!(handed_back, 1),
            "refused" => assert_eq!(handed_back, 0),
            other => panic!("the slot was held, yet the job {other}"),
        }
        assert!(s.finish().is_none(), "a closed queue hands nothing on");
        assert_eq!(s.gate.running(), 0);
    });
}
