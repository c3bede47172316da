//! Durable jobs survive SIGKILL: a child process takes 1,000 jobs and is killed at random
//! moments, twenty times, and started again each time; then the store and the handlers' own
//! records are compared with what the child acknowledged.
//!
//! The child is this test binary, started again to run only `crash_child`, which does nothing
//! in a normal run. It reads job numbers on stdin, enqueues each (its kind follows from its
//! number), and prints `ACK seq id` once the enqueue has answered: that line is the acknowledgement. Its handlers
//! append `job attempt start_ms` to a journal before they work, and a keyed job's handler
//! records its effect by creating a file named after its key, which succeeds once.

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sora::store::{JobFilter, JobId, JobState, RedbStore, Store};
use sora::{Action, Backoff, BoxError, Context, Definition, Handler, Retry, Runtime, Service};

const JOBS: usize = 1000;
const KILLS: usize = 20;
/// A bound on every wait for the child; reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(120);
/// The child's store, journal and effects are in this directory.
const CHILD_DIR: &str = "SORA_CRASH_CHILD_DIR";
/// What begins each line the child says to the test, among the harness's own.
const MARK: &str = "SORA-CRASH ";

/// What a job does, by its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Kind {
    /// Succeeds on its first attempt.
    Plain,
    /// Enqueued with the key `k{seq}`, re-sent after every restart until acknowledged; its
    /// effect is recorded once.
    Keyed,
    /// Fails its first two attempts, then succeeds (four allowed).
    Flaky,
    /// Fails every attempt (three allowed): a dead letter.
    Doomed,
    /// Not before 300 ms after its commit.
    Delayed,
}

const DELAY: Duration = Duration::from_millis(300);
const BACKOFF: Duration = Duration::from_millis(100);

fn kind(seq: usize) -> Kind {
    match seq % 20 {
        0..=8 => Kind::Plain,
        9..=12 => Kind::Keyed,
        13..=15 => Kind::Flaky,
        16 => Kind::Doomed,
        _ => Kind::Delayed,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Work {
    seq: usize,
    kind: Kind,
}

impl Action for Work {
    const NAME: &'static str = "work";
    type Reply = usize;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Fragile {
    seq: usize,
    kind: Kind,
}

impl Action for Fragile {
    const NAME: &'static str = "fragile";
    type Reply = usize;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Hopeless {
    seq: usize,
}

impl Action for Hopeless {
    const NAME: &'static str = "hopeless";
    type Reply = ();
}

fn retry(attempts: u32) -> Retry {
    Retry::attempts(attempts).backoff(Backoff {
        initial: BACKOFF,
        factor: 2.0,
        jitter: 0.0,
        ..Retry::default().backoff
    })
}

struct Worker {
    dir: PathBuf,
    journal: Arc<std::sync::Mutex<std::fs::File>>,
}

impl Worker {
    fn note(&self, ctx: &Context) {
        let job = ctx.job().expect("a job");
        let line = format!("{} {} {}\n", job.id, job.attempt, ms(SystemTime::now()));
        // One write of one line, in append mode: whole even if the process dies right after.
        self.journal
            .lock()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    }
}

impl Service for Worker {
    fn define(def: &mut Definition<Self>) {
        def.name("worker")
            .concurrency(8)
            .durable::<Work>(retry(1))
            .durable::<Fragile>(retry(4))
            .durable::<Hopeless>(retry(3));
    }
}

impl Handler<Work> for Worker {
    async fn handle(&self, work: Work, ctx: &Context) -> Result<usize, BoxError> {
        self.note(ctx);
        // Work that takes a moment, so that kills find some of it under way.
        tokio::time::sleep(Duration::from_millis(2)).await;
        if work.kind == Kind::Keyed {
            let key = ctx.job().and_then(|j| j.key.clone()).expect("a key");
            let effect = self.dir.join("effects").join(key);
            // Recorded idempotently: a second run of the same job finds it done.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&effect)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(work.seq)
    }
}

impl Handler<Fragile> for Worker {
    async fn handle(&self, work: Fragile, ctx: &Context) -> Result<usize, BoxError> {
        self.note(ctx);
        let attempt = ctx.job().expect("a job").attempt;
        if attempt <= 2 {
            return Err(format!("attempt {attempt} of {} fails", work.seq).into());
        }
        Ok(work.seq)
    }
}

impl Handler<Hopeless> for Worker {
    async fn handle(&self, job: Hopeless, ctx: &Context) -> Result<(), BoxError> {
        self.note(ctx);
        Err(format!("{} never works", job.seq).into())
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The child: serves the worker on the store in `$SORA_CRASH_CHILD_DIR`, enqueues what it
/// reads, acknowledges what it enqueued. On `drain`, it waits until no job is unfinished and
/// says `DRAINED`; when stdin closes, it shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("journal"))
        .unwrap();
    let journal = Arc::new(std::sync::Mutex::new(journal));
    let runtime = Runtime::builder()
        .store_path(dir.join("jobs.redb"))
        .service({
            let dir = dir.clone();
            move || Worker {
                dir: dir.clone(),
                journal: journal.clone(),
            }
        })
        .start()
        .await
        .unwrap();
    let worker = runtime.service::<Worker>().unwrap();
    let jobs = runtime.jobs().unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = move |line: String| {
        let mut out = out.lock().unwrap();
        // On a line of its own: the test harness may have begun one without ending it.
        writeln!(out, "\n{MARK}{line}").unwrap();
        out.flush().unwrap();
    };
    say("READY".into());
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if line == "drain" {
            loop {
                let unfinished = jobs
                    .list(&JobFilter::default())
                    .unwrap()
                    .iter()
                    .filter(|j| !matches!(j.state, JobState::Completed | JobState::Dead))
                    .count();
                if unfinished == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            say("DRAINED".into());
            continue;
        }
        let seq: usize = line.parse().expect("a sequence number");
        let (worker, say) = (worker.clone(), say.clone());
        tokio::spawn(async move {
            let kind = kind(seq);
            let id = match kind {
                Kind::Plain => worker.enqueue(Work { seq, kind }).await.map(|t| t.id()),
                Kind::Keyed => worker
                    .enqueue(Work { seq, kind })
                    .key(format!("k{seq}"))
                    .await
                    .map(|t| t.id()),
                Kind::Delayed => worker
                    .enqueue(Work { seq, kind })
                    .delay(DELAY)
                    .await
                    .map(|t| t.id()),
                Kind::Flaky => worker.enqueue(Fragile { seq, kind }).await.map(|t| t.id()),
                Kind::Doomed => worker.enqueue(Hopeless { seq }).await.map(|t| t.id()),
            };
            match id {
                Ok(id) => say(format!("ACK {seq} {id}")),
                Err(e) => say(format!("NACK {seq} {e}")),
            }
        });
    }
    runtime.shutdown().await.unwrap();
}

/// A running child and what it said.
struct ChildProcess {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildProcess {
    fn start(dir: &Path) -> Self {
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(said) = line.strip_prefix(MARK) else {
                    continue;
                };
                if tx.send(said.to_owned()).is_err() {
                    break;
                }
            }
        });
        let mut process = ChildProcess {
            child,
            stdin,
            lines,
        };
        process.expect("READY");
        process
    }

    /// The next line the child says, within the patience.
    fn next(&mut self, until: Instant) -> Option<String> {
        let left = until.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok()
    }

    fn expect(&mut self, what: &str) {
        let until = Instant::now() + PATIENCE;
        loop {
            match self.next(until) {
                Some(line) if line == what => return,
                Some(line) if line.starts_with("ACK ") || line.starts_with("NACK ") => {
                    panic!("`{line}` before `{what}`")
                }
                Some(_) => {}
                None => panic!("the child did not say `{what}`"),
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    fn kill(mut self) {
        // SIGKILL: no handler runs, nothing is flushed.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Reads one acknowledgement line into `acked`.
fn record(line: &str, acked: &mut BTreeMap<usize, JobId>) {
    let mut words = line.split(' ');
    match words.next() {
        Some("ACK") => {
            let seq: usize = words.next().unwrap().parse().unwrap();
            let id: JobId = words.next().unwrap().parse().unwrap();
            if let Some(before) = acked.insert(seq, id) {
                // Only a keyed job is acknowledged twice, and always with its first id.
                assert_eq!(kind(seq), Kind::Keyed, "seq {seq} acknowledged twice");
                assert_eq!(before, id, "key k{seq} named two jobs");
            }
        }
        Some("NACK") => panic!("the child refused a job: {line}"),
        _ => {}
    }
}

#[test]
fn durable_jobs_survive_sigkill_at_random_moments() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "sora-crash-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(dir.join("effects")).unwrap();
    let mut acked: BTreeMap<usize, JobId> = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(fastrand::u64(..));
    eprintln!("crash test in {}", dir.display());

    for round in 0..KILLS {
        let mut child = ChildProcess::start(&dir);
        // Everything not yet acknowledged, keyed jobs included (their key makes a repeat one
        // job); then a kill at a random moment while the jobs are committed and run.
        let pending: Vec<usize> = (0..JOBS).filter(|seq| !acked.contains_key(seq)).collect();
        let share = if round + 1 == KILLS {
            pending.len()
        } else {
            pending.len().div_ceil(KILLS - round).max(1) * 2
        };
        for seq in pending.iter().take(share) {
            child.send(&seq.to_string());
        }
        // Half the kills come while the jobs just sent are committed and run, half later,
        // among retries and delays.
        let after = if round % 2 == 0 {
            rng.u64(0..60)
        } else {
            rng.u64(60..400)
        };
        let until = Instant::now() + Duration::from_millis(after);
        while let Some(line) = child.next(until) {
            record(&line, &mut acked);
        }
        child.kill();
    }

    // The last run: the rest, then until every job has finished.
    let mut child = ChildProcess::start(&dir);
    let pending: Vec<usize> = (0..JOBS).filter(|seq| !acked.contains_key(seq)).collect();
    for seq in &pending {
        child.send(&seq.to_string());
    }
    let until = Instant::now() + PATIENCE;
    while (0..JOBS).any(|seq| !acked.contains_key(&seq)) {
        let line = child.next(until).expect("an acknowledgement for every job");
        record(&line, &mut acked);
    }
    child.send("drain");
    child.expect("DRAINED");
    drop(child.stdin);
    assert!(
        child.child.wait().unwrap().success(),
        "the last child stops cleanly"
    );

    check(&dir, &acked);
    std::fs::remove_dir_all(&dir).ok();
}

/// Compares the store and the handlers' records with the acknowledgements.
fn check(dir: &Path, acked: &BTreeMap<usize, JobId>) {
    assert_eq!(acked.len(), JOBS);
    let store = RedbStore::open(dir.join("jobs.redb")).unwrap();
    let jobs = store.jobs(&JobFilter::default()).unwrap();
    let by_id: HashMap<JobId, _> = jobs.iter().map(|j| (j.id, j)).collect();
    // Each handler's start, by job and attempt.
    let mut starts: HashMap<JobId, Vec<(u32, u64)>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("journal"))
        .unwrap()
        .lines()
    {
        let words: Vec<&str> = line.split(' ').collect();
        let [id, attempt, at] = words[..] else {
            panic!("a torn journal line: {line:?}");
        };
        starts
            .entry(id.parse().unwrap())
            .or_default()
            .push((attempt.parse().unwrap(), at.parse().unwrap()));
    }
    let effects: BTreeSet<String> = std::fs::read_dir(dir.join("effects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();

    for (&seq, id) in acked {
        // No job is reported accepted that was not: every acknowledged id is in the store.
        let job = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged job {id} (seq {seq}) is not in the store"));
        let ran = starts.get(id).map_or(&[][..], Vec::as_slice);
        match kind(seq) {
            Kind::Doomed => {
                assert_eq!(job.state, JobState::Dead, "seq {seq}: {job:?}");
                let attempts: Vec<u32> = job.errors.iter().map(|e| e.attempt).collect();
                assert_eq!(
                    attempts,
                    [1, 2, 3],
                    "seq {seq}: every attempt failed, in order"
                );
            }
            kind => {
                assert_eq!(
                    job.state,
                    JobState::Completed,
                    "seq {seq} ({kind:?}): {job:?}"
                );
                assert!(!ran.is_empty(), "seq {seq} completed without running");
            }
        }
        if kind(seq) == Kind::Keyed {
            assert!(effects.contains(&format!("k{seq}")), "seq {seq}: no effect");
            let same_key = jobs
                .iter()
                .filter(|j| j.key.as_deref() == Some(&format!("k{seq}")))
                .count();
            assert_eq!(same_key, 1, "key k{seq} is one job");
        }
        // Retries kept their times: attempt n+1 started no sooner than the backoff after
        // attempt n failed, whichever process ran it.
        for error in &job.errors {
            let due = ms(error.at) + (BACKOFF.as_millis() as u64) * (1 << (error.attempt - 1));
            for &(attempt, at) in ran {
                if attempt == error.attempt + 1 {
                    assert!(
                        at + 5 >= due,
                        "seq {seq}: attempt {attempt} at {at}, due {due}"
                    );
                }
            }
        }
        // Delays kept theirs.
        if kind(seq) == Kind::Delayed {
            let due = ms(job.created) + DELAY.as_millis() as u64;
            for &(_, at) in ran {
                assert!(at + 5 >= due, "seq {seq}: ran at {at}, due {due}");
            }
        }
    }
    // Dead letters are exactly the jobs that exhausted their attempts.
    for job in &jobs {
        if job.state == JobState::Dead {
            assert_eq!(
                job.action, "hopeless",
                "a dead job that should live: {job:?}"
            );
            assert_eq!(job.errors.len(), 3, "{job:?}");
        }
    }
    let interrupted = jobs.iter().filter(|j| j.interruptions > 0).count();
    let ended: usize = jobs
        .iter()
        .map(|j| j.errors.len() + usize::from(j.state == JobState::Completed))
        .sum();
    let reruns = starts
        .values()
        .map(Vec::len)
        .sum::<usize>()
        .saturating_sub(ended);
    let unacked = jobs.len() - acked.values().collect::<BTreeSet<_>>().len();
    eprintln!(
        "{} jobs kept; {interrupted} interrupted by a kill; {reruns} attempts run again after a kill; {unacked} committed but never acknowledged",
        jobs.len()
    );
    let effects_made = effects.len();
    let keyed = (0..JOBS).filter(|&s| kind(s) == Kind::Keyed).count();
    assert_eq!(effects_made, keyed, "one effect per key, and no other");
}
