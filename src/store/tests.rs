use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;

fn now() -> SystemTime {
    SystemTime::now()
}

fn claim() -> Claim {
    Claim::new("node-a", now())
}

/// A file of its own for a test, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "sora-store-{name}-{}-{}.redb",
            std::process::id(),
            fastrand::u64(..)
        ));
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_job_goes_from_queued_to_running_to_completed() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("mailer", "send", b"hello".to_vec());
    let id = job.id;
    assert_eq!(
        store.enqueue(job, None, now()).await.unwrap(),
        Enqueued::Created(id)
    );
    let stored = store.job(id).unwrap().unwrap();
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(stored.params, b"hello");

    let claimed = store.claim("mailer", claim(), 10, now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].state, JobState::Running { attempt: 1 });
    assert_eq!(claimed[0].claim.as_ref().unwrap().owner, "node-a");
    // Claimed once: not again.
    assert!(
        store
            .claim("mailer", claim(), 10, now())
            .await
            .unwrap()
            .is_empty()
    );

    store
        .finish(id, Outcome::Completed(b"done".to_vec()), now())
        .await
        .unwrap();
    let done = store.job(id).unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.reply.as_deref(), Some(&b"done"[..]));
    assert!(done.finished.is_some() && done.claim.is_none());
}

#[tokio::test]
async fn claims_take_the_highest_priority_then_the_oldest_of_one_service() {
    let store = RedbStore::in_memory().unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut ids = Vec::new();
    for (i, priority) in [0, 5, 0, -3, 5].into_iter().enumerate() {
        let mut job = NewJob::new("a", "x", vec![]).priority(priority);
        job.id = JobId::new(at + Duration::from_millis(i as u64));
        ids.push(job.id);
        store.enqueue(job, None, now()).await.unwrap();
    }
    store
        .enqueue(NewJob::new("b", "x", vec![]), None, now())
        .await
        .unwrap();
    let order: Vec<JobId> = store
        .claim("a", claim(), 10, now())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(order, [ids[1], ids[4], ids[0], ids[2], ids[3]]);
    let b = store.claim("b", claim(), 1, now()).await.unwrap();
    assert_eq!(b.len(), 1, "another service's queue is its own");
}

#[tokio::test]
async fn a_delayed_job_waits_for_its_time() {
    let store = RedbStore::in_memory().unwrap();
    let start = now();
    let job = NewJob::new("a", "x", vec![]).run_at(start + Duration::from_secs(60));
    let id = job.id;
    store.enqueue(job, None, now()).await.unwrap();
    let state = store.job(id).unwrap().unwrap().state;
    assert!(matches!(state, JobState::Scheduled { .. }), "{state:?}");
    let early = start + Duration::from_secs(59);
    assert!(
        store
            .claim("a", claim(), 10, early)
            .await
            .unwrap()
            .is_empty()
    );
    let due = start + Duration::from_secs(61);
    let claimed = store
        .claim("a", Claim::new("n", due), 10, due)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

#[tokio::test]
async fn a_failed_attempt_retries_at_its_time_and_the_last_one_is_dead() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![7]).max_attempts(2);
    let id = job.id;
    let t0 = now();
    store
        .enqueue(job, Some(Claim::new("n", t0)), now())
        .await
        .unwrap();
    let retry_at = t0 + Duration::from_secs(30);
    let retry = Outcome::Retry {
        at: retry_at,
        error: "smtp down".into(),
    };
    store.finish(id, retry, t0).await.unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Retrying {
            at: record_time(retry_at),
            attempts: 1
        }
    );
    assert_eq!(job.errors[0].error, "smtp down");
    assert!(store.claim("a", claim(), 10, t0).await.unwrap().is_empty());

    let t1 = retry_at + Duration::from_secs(1);
    let again = store.claim("a", Claim::new("n", t1), 10, t1).await.unwrap();
    assert_eq!(again[0].state, JobState::Running { attempt: 2 });
    let dead = Outcome::Dead {
        error: "still down".into(),
    };
    store.finish(id, dead, t1).await.unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    let errors: Vec<_> = job
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(errors, [(1, "smtp down"), (2, "still down")]);
    let filter = JobFilter {
        state: Some("dead".into()),
        ..JobFilter::default()
    };
    assert_eq!(store.jobs(&filter).unwrap().len(), 1);
}

/// Times are kept to the millisecond.
fn record_time(t: SystemTime) -> SystemTime {
    record::time(record::ms(t))
}

#[tokio::test]
async fn a_key_enqueues_once() {
    let store = RedbStore::in_memory().unwrap();
    let first = NewJob::new("a", "charge", vec![1]).key("order-7");
    let id = first.id;
    assert_eq!(
        store.enqueue(first, None, now()).await.unwrap(),
        Enqueued::Created(id)
    );
    let again = NewJob::new("a", "charge", vec![2]).key("order-7");
    assert_eq!(
        store.enqueue(again, None, now()).await.unwrap(),
        Enqueued::Existing(id)
    );
    // The same key on another action is another job.
    let other = NewJob::new("a", "refund", vec![3]).key("order-7");
    assert!(matches!(
        store.enqueue(other, None, now()).await.unwrap(),
        Enqueued::Created(_)
    ));
    // So is the same id sent twice, without a key: it is the same job.
    let twice = NewJob::new("a", "x", vec![]);
    let copy = twice.clone();
    store.enqueue(twice, None, now()).await.unwrap();
    assert_eq!(
        store.enqueue(copy.clone(), None, now()).await.unwrap(),
        Enqueued::Existing(copy.id)
    );
    assert_eq!(store.jobs(&JobFilter::default()).unwrap().len(), 3);
}

#[tokio::test]
async fn keyed_jobs_enqueued_at_once_commit_one() {
    let store = RedbStore::in_memory().unwrap();
    let sends = (0..50).map(|i| {
        let store = store.clone();
        async move {
            let job = NewJob::new("a", "charge", vec![i]).key("same");
            store.enqueue(job, None, now()).await.unwrap()
        }
    });
    let answers = futures::future::join_all(sends).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|a| matches!(a, Enqueued::Created(_)))
        .collect();
    assert_eq!(created.len(), 1);
    assert!(answers.iter().all(|a| a.id() == created[0].id()));
}

#[tokio::test]
async fn bad_changes_are_refused_and_lose_nothing_else() {
    let store = RedbStore::in_memory().unwrap();
    let unknown = JobId::new(now());
    let err = store
        .finish(unknown, Outcome::Completed(vec![]), now())
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Store { message, .. } if message.contains("no unfinished")));
    assert_eq!(err.code(), "store");

    let queued = NewJob::new("a", "x", vec![]);
    let id = queued.id;
    store.enqueue(queued, None, now()).await.unwrap();
    let err = store
        .finish(id, Outcome::Completed(vec![]), now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");

    let huge = NewJob::new("a", "x", vec![0; crate::codec::DECODE_LIMIT + 1]);
    let err = store.enqueue(huge, None, now()).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert_eq!(store.job(id).unwrap().unwrap().state, JobState::Queued);
}

#[tokio::test]
async fn a_long_error_is_kept_in_part() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![]);
    let id = job.id;
    store.enqueue(job, Some(claim()), now()).await.unwrap();
    let error = "é".repeat(10_000);
    store
        .finish(id, Outcome::Dead { error }, now())
        .await
        .unwrap();
    let kept = &store.job(id).unwrap().unwrap().errors[0].error;
    assert!(kept.len() <= 4096 + '…'.len_utf8() && kept.ends_with('…'));
}

#[tokio::test]
async fn a_file_keeps_its_jobs_and_recovers_the_claimed_ones() {
    let file = TempFile::new("recover");
    let (queued, claimed, done) = {
        let store = RedbStore::open(&file.0).unwrap();
        let queued = NewJob::new("a", "x", vec![1]);
        let claimed = NewJob::new("a", "x", vec![2]).max_attempts(3);
        let done = NewJob::new("a", "x", vec![3]);
        let ids = (queued.id, claimed.id, done.id);
        store.enqueue(queued, None, now()).await.unwrap();
        store.enqueue(claimed, Some(claim()), now()).await.unwrap();
        store.enqueue(done, Some(claim()), now()).await.unwrap();
        store
            .finish(ids.2, Outcome::Completed(vec![9]), now())
            .await
            .unwrap();
        ids
        // Dropped with a job still claimed, as a process that was killed leaves it.
    };
    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(store.job(done).unwrap().unwrap().state, JobState::Completed);
    let recovered = store.job(claimed).unwrap().unwrap();
    assert_eq!(recovered.state, JobState::Queued, "ready again at once");
    assert_eq!(recovered.interruptions, 1);
    assert!(recovered.claim.is_none());
    let again = store.claim("a", claim(), 10, now()).await.unwrap();
    let ids: Vec<_> = again.iter().map(|j| j.id).collect();
    assert!(ids.contains(&queued) && ids.contains(&claimed), "{ids:?}");
    let attempt = again.iter().find(|j| j.id == claimed).unwrap().state;
    assert_eq!(
        attempt,
        JobState::Running { attempt: 1 },
        "the interrupted attempt is given back"
    );
}

#[tokio::test]
async fn a_job_interrupted_too_often_is_dead() {
    let file = TempFile::new("poison");
    let id = {
        let store = RedbStore::open(&file.0).unwrap();
        let job = NewJob::new("a", "x", vec![]).max_attempts(100);
        let id = job.id;
        store.enqueue(job, Some(claim()), now()).await.unwrap();
        id
    };
    for _ in 1..MAX_INTERRUPTIONS {
        let store = RedbStore::open(&file.0).unwrap();
        let claimed = store.claim("a", claim(), 1, now()).await.unwrap();
        assert_eq!(claimed[0].id, id);
    }
    let store = RedbStore::open(&file.0).unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.interruptions, MAX_INTERRUPTIONS);
    assert!(
        job.errors.last().unwrap().error.contains("stopped"),
        "{:?}",
        job.errors
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused_by_name() {
    let file = TempFile::new("garbage");
    std::fs::write(&file.0, b"not a database at all, just some bytes").unwrap();
    let err = RedbStore::open(&file.0).unwrap_err();
    let shown = file.0.display().to_string();
    assert!(
        matches!(&err, Error::Store { path, .. } if *path == shown),
        "{err}"
    );
    // The file is left as it was.
    assert_eq!(
        std::fs::read(&file.0).unwrap(),
        b"not a database at all, just some bytes"
    );
}

#[tokio::test]
async fn a_file_of_another_format_is_refused_naming_both_versions() {
    let file = TempFile::new("format");
    drop(RedbStore::open(&file.0).unwrap());
    {
        let db = ::redb::Database::create(&file.0).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(redb::META).unwrap();
            meta.insert("format", 99u32.to_le_bytes().as_slice())
                .unwrap();
            meta.insert("created_by", b"9.9.9".as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = RedbStore::open(&file.0).unwrap_err().to_string();
    assert!(err.contains("9.9.9") && err.contains("format 99"), "{err}");
    assert!(
        err.contains(&format!("format {}", redb::STORE_FORMAT)),
        "{err}"
    );
}

#[tokio::test]
async fn another_redb_file_is_not_taken_for_a_store() {
    let file = TempFile::new("foreign");
    {
        let db = ::redb::Database::create(&file.0).unwrap();
        let tx = db.begin_write().unwrap();
        let users: ::redb::TableDefinition<'_, u64, u64> = ::redb::TableDefinition::new("users");
        tx.open_table(users).unwrap().insert(1, 2).unwrap();
        tx.commit().unwrap();
    }
    let err = RedbStore::open(&file.0).unwrap_err().to_string();
    assert!(err.contains("not a Sora store"), "{err}");
}

#[tokio::test]
async fn a_file_open_elsewhere_is_refused() {
    let file = TempFile::new("twice");
    let _first = RedbStore::open(&file.0).unwrap();
    let err = RedbStore::open(&file.0).unwrap_err();
    assert_eq!(err.code(), "store");
}

#[tokio::test]
async fn a_damaged_record_fails_its_reader_not_the_store() {
    let file = TempFile::new("damaged");
    let (bad, good) = {
        let store = RedbStore::open(&file.0).unwrap();
        let (bad, good) = (NewJob::new("a", "x", vec![]), NewJob::new("b", "x", vec![]));
        let ids = (bad.id, good.id);
        store.enqueue(bad, None, now()).await.unwrap();
        store.enqueue(good, None, now()).await.unwrap();
        ids
    };
    {
        let db = ::redb::Database::create(&file.0).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::JOBS)
            .unwrap()
            .insert(
                bad.0,
                [1u8, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].as_slice(),
            )
            .unwrap();
        tx.commit().unwrap();
    }
    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(store.job(bad).unwrap_err().code(), "store");
    let listed: Vec<_> = store
        .jobs(&JobFilter::default())
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [good], "the lists skip what cannot be read");
    assert!(
        store
            .claim("a", claim(), 1, now())
            .await
            .unwrap()
            .is_empty()
    );
    let err = store
        .finish(bad, Outcome::Completed(vec![]), now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be read"), "{err}");
    assert_eq!(store.job(good).unwrap().unwrap().state, JobState::Queued);
    assert_eq!(
        store.claim("b", claim(), 1, now()).await.unwrap()[0].id,
        good
    );
}

#[tokio::test]
async fn garbage_and_truncated_files_never_panic() {
    let real = TempFile::new("real");
    {
        let store = RedbStore::open(&real.0).unwrap();
        for i in 0..200u8 {
            let job = NewJob::new("a", "x", vec![i; 64]);
            store.enqueue(job, None, now()).await.unwrap();
        }
    }
    let whole = std::fs::read(&real.0).unwrap();
    let mut files: Vec<Vec<u8>> = vec![vec![0xff; 4096], fastrand_bytes(100_000)];
    for cut in [1, 64, 512, 4096, whole.len() / 2, whole.len() - 1] {
        files.push(whole[..cut.min(whole.len())].to_vec());
    }
    let mut flipped = whole.clone();
    for i in (0..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5a;
    }
    files.push(flipped);
    for bytes in &files {
        let file = TempFile::new("broken");
        std::fs::write(&file.0, bytes).unwrap();
        // Refused with an error, or opened (redb repairs what it can): never a panic, and an
        // opened store answers.
        if let Ok(store) = RedbStore::open(&file.0) {
            let _ = store.jobs(&JobFilter::default());
            let _ = store.claim("a", claim(), 10, now()).await;
        }
    }
}

fn fastrand_bytes(n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n).map(|_| rng.u8(..)).collect()
}

#[tokio::test]
async fn a_dead_job_retried_starts_a_new_series_and_keeps_its_errors() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![]).key("k").max_attempts(1);
    let id = job.id;
    store.enqueue(job, Some(claim()), now()).await.unwrap();
    let dead = Outcome::Dead {
        error: "boom".into(),
    };
    store.finish(id, dead, now()).await.unwrap();
    assert!(store.retry(JobId::new(now())).await.is_err(), "no such job");

    store.retry(id).await.unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.finished, None);
    assert_eq!(job.errors.len(), 1, "the first series' errors are kept");
    let err = store.retry(id).await.unwrap_err();
    assert!(err.to_string().contains("not dead"), "{err}");
    let dead = JobFilter {
        state: Some("dead".into()),
        ..JobFilter::default()
    };
    assert!(store.jobs(&dead).unwrap().is_empty());

    let claimed = store.claim("a", claim(), 10, now()).await.unwrap();
    assert_eq!(claimed[0].state, JobState::Running { attempt: 1 });
    // Its key still names it.
    let again = NewJob::new("a", "x", vec![]).key("k");
    assert_eq!(
        store.enqueue(again, None, now()).await.unwrap(),
        Enqueued::Existing(id)
    );
}

#[tokio::test]
async fn a_discarded_job_is_gone_with_its_key_and_a_running_one_is_kept() {
    let store = RedbStore::in_memory().unwrap();
    let t0 = now();
    let queued = NewJob::new("a", "x", vec![]).key("k");
    let later = NewJob::new("a", "x", vec![]).run_at(t0 + Duration::from_secs(60));
    let running = NewJob::new("a", "x", vec![]);
    let (q, l, r) = (queued.id, later.id, running.id);
    store.enqueue(queued, None, t0).await.unwrap();
    store.enqueue(later, None, t0).await.unwrap();
    store.enqueue(running, Some(claim()), t0).await.unwrap();

    assert!(store.discard(q).await.unwrap());
    assert!(store.discard(l).await.unwrap());
    assert!(!store.discard(q).await.unwrap(), "already gone");
    let err = store.discard(r).await.unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    assert_eq!(store.job(q).unwrap(), None);
    assert_eq!(
        store.next_due().unwrap(),
        None,
        "the delayed job's slot went with it"
    );
    let after = t0 + Duration::from_secs(120);
    assert!(
        store
            .claim("a", claim(), 10, after)
            .await
            .unwrap()
            .is_empty()
    );
    // The key is free again.
    let again = NewJob::new("a", "x", vec![]).key("k");
    let id = again.id;
    assert_eq!(
        store.enqueue(again, None, t0).await.unwrap(),
        Enqueued::Created(id)
    );
}

#[tokio::test]
async fn a_released_job_is_ready_again_with_its_attempt_given_back() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![]).max_attempts(1);
    let id = job.id;
    store.enqueue(job, Some(claim()), now()).await.unwrap();
    store.finish(id, Outcome::Released, now()).await.unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert!(job.errors.is_empty());
    let claimed = store.claim("a", claim(), 10, now()).await.unwrap();
    assert_eq!(claimed[0].state, JobState::Running { attempt: 1 });
}

#[tokio::test]
async fn the_next_due_time_is_the_earliest_delay_or_retry() {
    let store = RedbStore::in_memory().unwrap();
    let t0 = now();
    assert_eq!(store.next_due().unwrap(), None);
    let late = NewJob::new("a", "x", vec![]).run_at(t0 + Duration::from_secs(90));
    store.enqueue(late, None, t0).await.unwrap();
    let soon = NewJob::new("b", "x", vec![]);
    let id = soon.id;
    store.enqueue(soon, Some(claim()), t0).await.unwrap();
    let at = t0 + Duration::from_secs(30);
    let retry = Outcome::Retry {
        at,
        error: "later".into(),
    };
    store.finish(id, retry, t0).await.unwrap();
    assert_eq!(store.next_due().unwrap(), Some(record_time(at)));
}

#[tokio::test]
async fn a_reply_too_large_to_read_back_kills_the_job_and_keeps_it_readable() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![]);
    let id = job.id;
    store.enqueue(job, Some(claim()), now()).await.unwrap();
    let huge = vec![b'x'; crate::codec::DECODE_LIMIT];
    store
        .finish(id, Outcome::Completed(huge), now())
        .await
        .unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.reply, None);
    assert!(job.errors[0].error.contains("limit"), "{:?}", job.errors);
}

#[tokio::test]
async fn a_job_keeps_its_first_and_latest_errors_only() {
    let store = RedbStore::in_memory().unwrap();
    let job = NewJob::new("a", "x", vec![]).max_attempts(1000);
    let id = job.id;
    let mut t = now();
    store
        .enqueue(job, Some(Claim::new("n", t)), t)
        .await
        .unwrap();
    for n in 1..=100 {
        let retry = Outcome::Retry {
            at: t,
            error: format!("failure {n}"),
        };
        store.finish(id, retry, t).await.unwrap();
        t += Duration::from_millis(1);
        let claimed = store.claim("a", Claim::new("n", t), 1, t).await.unwrap();
        assert_eq!(claimed.len(), 1);
    }
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(job.errors.len(), 64);
    assert_eq!(job.errors[0].error, "failure 1");
    assert_eq!(job.errors[63].error, "failure 100");
}

#[tokio::test]
async fn a_postponed_job_waits_for_its_time_with_its_attempt_given_back() {
    let store = RedbStore::in_memory().unwrap();
    let t0 = now();
    let job = NewJob::new("a", "x", vec![]).max_attempts(1);
    let id = job.id;
    store
        .enqueue(job, Some(Claim::new("n", t0)), t0)
        .await
        .unwrap();
    let at = t0 + Duration::from_secs(1);
    store
        .finish(id, Outcome::Postponed { at }, t0)
        .await
        .unwrap();
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Scheduled {
            at: record_time(at)
        }
    );
    assert!(store.claim("a", claim(), 10, t0).await.unwrap().is_empty());
    let later = at + Duration::from_millis(1);
    let claimed = store
        .claim("a", Claim::new("n", later), 10, later)
        .await
        .unwrap();
    assert_eq!(claimed[0].state, JobState::Running { attempt: 1 });
}

#[tokio::test]
async fn finished_jobs_past_their_retention_are_pruned_with_their_keys() {
    let store = RedbStore::in_memory().unwrap();
    let t0 = now();
    let finish = |job: NewJob, outcome: Outcome, at: SystemTime| {
        let store = &store;
        async move {
            let id = job.id;
            store
                .enqueue(job, Some(Claim::new("n", at)), at)
                .await
                .unwrap();
            store.finish(id, outcome, at).await.unwrap();
            id
        }
    };
    let old_done = finish(
        NewJob::new("a", "x", vec![]).key("k"),
        Outcome::Completed(vec![]),
        t0,
    )
    .await;
    let old_dead = finish(
        NewJob::new("a", "x", vec![]),
        Outcome::Dead { error: "e".into() },
        t0,
    )
    .await;
    let later = t0 + Duration::from_secs(3600);
    let new_done = finish(
        NewJob::new("a", "x", vec![]),
        Outcome::Completed(vec![]),
        later,
    )
    .await;
    let retried = finish(
        NewJob::new("a", "x", vec![]),
        Outcome::Dead { error: "e".into() },
        t0,
    )
    .await;
    store.retry(retried).await.unwrap();

    // Completed before `later`, dead before `t0`: only the old completed job goes.
    let pruned = store.prune(later, t0, 100).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(store.job(old_done).unwrap(), None);
    assert!(store.job(old_dead).unwrap().is_some());
    assert!(store.job(new_done).unwrap().is_some());
    assert!(
        store.job(retried).unwrap().is_some(),
        "a retried job is not finished"
    );
    // Its key names no job now.
    let again = NewJob::new("a", "x", vec![]).key("k");
    let id = again.id;
    assert_eq!(
        store.enqueue(again, None, later).await.unwrap(),
        Enqueued::Created(id)
    );
    // The dead go by their own time, and at most `max` at once.
    assert_eq!(store.prune(later, later, 0).await.unwrap(), 0);
    assert_eq!(store.prune(later, later, 10).await.unwrap(), 1);
    assert_eq!(store.job(old_dead).unwrap(), None);
    let dead = JobFilter {
        state: Some("dead".into()),
        ..JobFilter::default()
    };
    assert!(store.jobs(&dead).unwrap().is_empty());
    assert_eq!(
        store.prune(later, later, 10).await.unwrap(),
        0,
        "nothing left that is due"
    );
}

/// A job of `service` made `ms` milliseconds after the epoch's second 1,000,000, so that ids
/// sort as the test makes them.
fn job_at(service: &str, ms: u64) -> NewJob {
    let mut job = NewJob::new(service, "send", b"{}".to_vec());
    job.id = JobId::new(SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000 + ms));
    job
}

#[tokio::test]
async fn pages_merge_unfinished_and_finished_jobs_in_id_order_both_ways() {
    let store = RedbStore::in_memory().unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let job = job_at(if i % 2 == 0 { "a" } else { "b" }, i);
        ids.push(job.id);
        store.enqueue(job, None, now()).await.unwrap();
    }
    // Some of them dead, so that a page must merge the two tables.
    for service in ["a", "b"] {
        store.claim(service, claim(), 10, now()).await.unwrap();
    }
    for id in [ids[1], ids[2], ids[5]] {
        let dead = Outcome::Dead {
            error: "gone".into(),
        };
        store.finish(id, dead, now()).await.unwrap();
    }
    let walk = |newest_first: bool, limit: usize| {
        let store = store.clone();
        async move {
            let mut filter = JobFilter {
                limit: Some(limit),
                newest_first,
                ..JobFilter::default()
            };
            let mut seen = Vec::new();
            loop {
                let page = store.page(&filter).unwrap();
                assert!(page.jobs.len() <= limit);
                seen.extend(page.jobs.iter().map(|j| j.id));
                match page.next {
                    Some(next) => filter.after = Some(next),
                    None => return seen,
                }
            }
        }
    };
    assert_eq!(walk(false, 4).await, ids);
    assert_eq!(walk(false, 1).await, ids);
    let mut backwards = ids.clone();
    backwards.reverse();
    assert_eq!(walk(true, 4).await, backwards);
    // One service's dead letters, through their index, either way round.
    let dead_of_b = |newest_first| JobFilter {
        service: Some("b".into()),
        state: Some("dead".into()),
        newest_first,
        ..JobFilter::default()
    };
    let listed: Vec<JobId> = store
        .jobs(&dead_of_b(false))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [ids[1], ids[5]]);
    let listed: Vec<JobId> = store
        .jobs(&dead_of_b(true))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [ids[5], ids[1]]);
    let mut after = dead_of_b(false);
    after.after = Some(ids[1]);
    let listed: Vec<JobId> = store.jobs(&after).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(listed, [ids[5]]);
}

#[tokio::test]
async fn a_page_reads_no_more_than_its_scan_limit_and_says_where_to_go_on() {
    let store = RedbStore::in_memory().unwrap();
    let many = SCAN_LIMIT + 50;
    let jobs = (0..many as u64).map(|i| {
        job_at(
            if i == many as u64 - 1 {
                "rare"
            } else {
                "common"
            },
            i,
        )
    });
    futures::future::try_join_all(jobs.map(|job| store.enqueue(job, None, now())))
        .await
        .unwrap();
    let mut filter = JobFilter {
        service: Some("rare".into()),
        ..JobFilter::default()
    };
    let first = store.page(&filter).unwrap();
    assert!(first.jobs.is_empty(), "the rare one is past the scan");
    filter.after = Some(first.next.expect("a cursor to go on from"));
    let second = store.page(&filter).unwrap();
    assert_eq!(second.jobs.len(), 1);
    assert_eq!(second.jobs[0].service, "rare");
    assert_eq!(second.next, None);
    // `jobs` pages on until it has what was asked.
    filter.after = None;
    let all = store.jobs(&filter).unwrap();
    assert_eq!(all.len(), 1, "found past the first page's scan");
    let none = JobFilter {
        limit: Some(0),
        ..JobFilter::default()
    };
    assert_eq!(store.page(&none).unwrap(), JobPage::default());
}

/// Enqueues, claims and finishes one job of `service` at `at` with `outcome`.
async fn finished_at(store: &RedbStore, service: &str, at: SystemTime, outcome: Outcome) -> JobId {
    let job = NewJob::new(service, "send", b"{}".to_vec());
    let id = job.id;
    store.enqueue(job, None, at).await.unwrap();
    store
        .claim(service, Claim::new("n", at), 1, at)
        .await
        .unwrap();
    store.finish(id, outcome, at).await.unwrap();
    id
}

fn dead() -> Outcome {
    Outcome::Dead {
        error: "gone".into(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn each_kind_of_finished_job_comes_due_for_pruning_after_its_own_retention() {
    let store = RedbStore::in_memory().unwrap();
    let t0 = SystemTime::UNIX_EPOCH + 1000 * DAY;
    // Only an old dead letter: nothing is due before its own retention, however short the
    // completed jobs' (a prune a minute, reading dead letters to keep them, was the old way).
    let old_dead = finished_at(&store, "s", t0, dead()).await;
    assert_eq!(
        store.prunable_at(HOUR, 30 * DAY).unwrap(),
        Some(t0 + 30 * DAY)
    );
    let done = finished_at(&store, "s", t0 + DAY, Outcome::Completed(b"1".to_vec())).await;
    assert_eq!(
        store.prunable_at(HOUR, 30 * DAY).unwrap(),
        Some(t0 + DAY + HOUR),
        "the completed job's end comes first"
    );
    // A prune past the completed one's retention and before the dead one's takes only it.
    let now = t0 + 2 * DAY;
    let pruned = store.prune(now - HOUR, now - 30 * DAY, 100).await.unwrap();
    assert_eq!(pruned, 1);
    assert!(store.job(done).unwrap().is_none());
    assert!(store.job(old_dead).unwrap().is_some());
    assert_eq!(
        store.prunable_at(HOUR, 30 * DAY).unwrap(),
        Some(t0 + 30 * DAY)
    );
    // At most `max`, then the rest at the next.
    for i in 0..3 {
        finished_at(&store, "s", t0 + Duration::from_secs(i), dead()).await;
    }
    let later = t0 + 40 * DAY;
    assert_eq!(store.prune(later, later - 30 * DAY, 2).await.unwrap(), 2);
    assert_eq!(store.prune(later, later - 30 * DAY, 2).await.unwrap(), 2);
    assert_eq!(store.prune(later, later - 30 * DAY, 2).await.unwrap(), 0);
    assert_eq!(store.prunable_at(HOUR, 30 * DAY).unwrap(), None);
    let dead_left = JobFilter {
        state: Some("dead".into()),
        ..JobFilter::default()
    };
    assert!(
        store.jobs(&dead_left).unwrap().is_empty(),
        "the dead index too"
    );
}

#[tokio::test]
async fn a_file_of_format_1_is_read_with_its_dead_letters_in_their_own_index() {
    let file = TempFile::new("format-1");
    let t0 = SystemTime::UNIX_EPOCH + 1000 * DAY;
    let (dead_id, done_id) = {
        let store = RedbStore::open(&file.0).unwrap();
        let dead_id = finished_at(&store, "s", t0, dead()).await;
        let done_id = finished_at(&store, "s", t0, Outcome::Completed(b"1".to_vec())).await;
        (dead_id, done_id)
    };
    // As format 1 left it: every finished job in one time index.
    {
        let db = ::redb::Database::create(&file.0).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(redb::META).unwrap();
            meta.insert("format", 1u32.to_le_bytes().as_slice())
                .unwrap();
            use ::redb::ReadableTable;
            let moved: Vec<(u64, u128)> = tx
                .open_table(redb::DEAD_AT)
                .unwrap()
                .iter()
                .unwrap()
                .map(|e| e.unwrap().0.value())
                .collect();
            assert_eq!(moved.len(), 1);
            tx.delete_table(redb::DEAD_AT).unwrap();
            let mut finished_at = tx.open_table(redb::FINISHED_AT).unwrap();
            for key in moved {
                finished_at.insert(key, ()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(
        store.prunable_at(HOUR, 30 * DAY).unwrap(),
        Some(t0 + HOUR),
        "the completed one"
    );
    let now = t0 + 2 * DAY;
    assert_eq!(
        store.prune(now - HOUR, now - 30 * DAY, 100).await.unwrap(),
        1
    );
    assert!(store.job(done_id).unwrap().is_none());
    assert!(
        store.job(dead_id).unwrap().is_some(),
        "the dead letter is kept its 30 days"
    );
    assert_eq!(
        store.prunable_at(HOUR, 30 * DAY).unwrap(),
        Some(t0 + 30 * DAY)
    );
    drop(store);
    // Migrated once: the file says format 2 now.
    let db = ::redb::Database::create(&file.0).unwrap();
    let tx = ::redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = tx.open_table(redb::META).unwrap();
    let format = meta.get("format").unwrap().unwrap().value().to_vec();
    assert_eq!(format, redb::STORE_FORMAT.to_le_bytes());
}
