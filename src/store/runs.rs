//! The run history in the redb store: one table keyed by (service, sequence), each value a
//! versioned record, each service's runs pruned to their count and age as they are appended.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use super::record::{envelope, open_envelope};
use crate::service::ScheduleMark;
use crate::status::{Run, RunKind, RunOutcome};

/// Each service's runs: (service, sequence, from 1 and never reused) to the run's record.
pub(super) const RUNS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("runs");

/// Where each periodic service's schedule stood: service to the mark's record.
pub(super) const SCHEDULES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("schedules");

/// A schedule's mark as the file keeps it: each time in seconds and nanoseconds since the
/// epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredMark {
    tick: Option<(u64, u32)>,
    started: Option<(u64, u32)>,
    ended: Option<(u64, u32)>,
}

/// Keeps `mark` as `service`'s, over the one before.
pub(super) fn save_mark(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    service: &str,
    mark: ScheduleMark,
) -> Result<(), redb::Error> {
    let stored = StoredMark {
        tick: mark.tick.map(since_epoch),
        started: mark.started.map(since_epoch),
        ended: mark.ended.map(since_epoch),
    };
    match envelope(&stored) {
        Ok(bytes) => {
            table.insert(service, bytes.as_slice())?;
        }
        Err(error) => tracing::error!(service, error, "a schedule's mark cannot be encoded"),
    }
    Ok(())
}

/// `service`'s mark; one that cannot be read is said, and read as none.
pub(super) fn read_mark(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &str,
    service: &str,
) -> Result<Option<ScheduleMark>, redb::Error> {
    let Some(bytes) = table.get(service)? else {
        return Ok(None);
    };
    match open_envelope::<StoredMark>(bytes.value()) {
        Ok(stored) => {
            let time = |t: Option<(u64, u32)>| t.map(|(s, n)| UNIX_EPOCH + Duration::new(s, n));
            Ok(Some(ScheduleMark::new(
                time(stored.tick),
                time(stored.started),
                time(stored.ended),
            )))
        }
        Err(error) => {
            tracing::error!(
                store = path,
                service,
                error,
                "a schedule's mark cannot be read; the schedule starts afresh"
            );
            Ok(None)
        }
    }
}

/// The longest error or name kept for one run, in bytes: the ring's records are as long as the
/// handler made them, the file's are bounded.
const TEXT_LIMIT: usize = 4096;

/// A run as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredRun {
    kind: RunKind,
    name: String,
    /// Seconds and nanoseconds since the epoch: a run comes back at the time it went in.
    started: (u64, u32),
    duration: Option<Duration>,
    outcome: RunOutcome,
    error: Option<String>,
    correlation_id: Option<String>,
    job: Option<String>,
    attempt: Option<u32>,
}

impl StoredRun {
    pub(super) fn of(run: Run) -> Self {
        StoredRun {
            kind: run.kind,
            name: bounded(run.name),
            started: since_epoch(run.started_at),
            duration: run.duration,
            outcome: run.outcome,
            error: run.error.map(bounded),
            correlation_id: run.correlation_id.map(bounded),
            job: run.job.map(bounded),
            attempt: run.attempt,
        }
    }

    fn run(self) -> Run {
        Run {
            kind: self.kind,
            name: self.name,
            started_at: UNIX_EPOCH + Duration::new(self.started.0, self.started.1),
            duration: self.duration,
            outcome: self.outcome,
            error: self.error,
            correlation_id: self.correlation_id,
            job: self.job,
            attempt: self.attempt,
        }
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>, String> {
        envelope(self)
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, String> {
        open_envelope(bytes)
    }
}

fn since_epoch(at: SystemTime) -> (u64, u32) {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

fn bounded(mut text: String) -> String {
    if text.len() > TEXT_LIMIT {
        let mut end = TEXT_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Appends `runs` (oldest first) to `service`'s, then removes the oldest of them past `keep`
/// and those that started before `before`.
pub(super) fn append(
    table: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    service: &str,
    runs: Vec<Run>,
    keep: usize,
    before: SystemTime,
) -> Result<(), redb::Error> {
    let last = table
        .range((service, 0)..=(service, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(key, _)| key.value().1);
    let mut next = last;
    for run in runs {
        // A run that cannot be encoded is left out; the commit, which carries other changes,
        // goes on.
        match StoredRun::of(run).encode() {
            Ok(bytes) => {
                next += 1;
                table.insert((service, next), bytes.as_slice())?;
            }
            Err(error) => {
                tracing::error!(service, error, "a run cannot be encoded; it is not kept")
            }
        }
    }
    // The newest `keep` are kept: those up to `next - keep` go, and before them any too old.
    let by_count = next.saturating_sub(keep as u64);
    let before = since_epoch(before);
    let mut gone = Vec::new();
    for entry in table.range((service, 1)..=(service, next))? {
        let (key, bytes) = entry?;
        let seq = key.value().1;
        let old = StoredRun::decode(bytes.value()).map_or(true, |r| r.started < before);
        if seq > by_count && !old {
            break;
        }
        gone.push(seq);
    }
    for seq in gone {
        table.remove((service, seq))?;
    }
    Ok(())
}

/// Up to `limit` of `service`'s runs that started at `since` or later, newest first. A record
/// that cannot be read is skipped, and said.
pub(super) fn newest(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    path: &str,
    service: &str,
    limit: usize,
    since: SystemTime,
) -> Result<Vec<Run>, redb::Error> {
    let since = since_epoch(since);
    let mut runs = Vec::new();
    for entry in table.range((service, 0)..=(service, u64::MAX))?.rev() {
        if runs.len() >= limit {
            break;
        }
        let (key, bytes) = entry?;
        match StoredRun::decode(bytes.value()) {
            Ok(run) if run.started < since => break,
            Ok(run) => runs.push(run.run()),
            Err(error) => tracing::error!(
                store = path,
                service,
                run = key.value().1,
                error,
                "a run's record cannot be read; it is skipped"
            ),
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;
    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::store::{RedbStore, ServiceRuns, Store};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, 123_456_789)
    }

    fn run(secs: u64, name: &str) -> Run {
        Run {
            kind: RunKind::Command,
            name: name.into(),
            started_at: at(secs),
            duration: Some(Duration::from_nanos(1_500_001)),
            outcome: RunOutcome::Ok,
            error: None,
            correlation_id: Some("c-1".into()),
            job: None,
            attempt: None,
        }
    }

    fn names(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.name.as_str()).collect()
    }

    fn db() -> Database {
        Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap()
    }

    fn append_all(db: &Database, service: &str, runs: Vec<Run>, keep: usize, before: u64) {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(RUNS).unwrap();
            append(&mut table, service, runs, keep, at(before)).unwrap();
        }
        tx.commit().unwrap();
    }

    fn read(db: &Database, service: &str, limit: usize, since: u64) -> Vec<Run> {
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(RUNS).unwrap();
        newest(&table, "memory", service, limit, at(since)).unwrap()
    }

    #[test]
    fn runs_come_back_newest_first_exactly_as_they_went_in_and_per_service() {
        let db = db();
        let runs = vec![run(10, "a"), run(11, "b"), run(12, "c")];
        append_all(&db, "books", runs.clone(), 100, 0);
        append_all(&db, "other", vec![run(13, "x")], 100, 0);
        let back = read(&db, "books", 10, 0);
        assert_eq!(back, runs.into_iter().rev().collect::<Vec<_>>());
        assert_eq!(names(&read(&db, "books", 2, 0)), ["c", "b"]);
        assert_eq!(names(&read(&db, "books", 10, 11)), ["c", "b"], "since");
        assert_eq!(names(&read(&db, "other", 10, 0)), ["x"]);
        assert!(read(&db, "nobody", 10, 0).is_empty());
    }

    #[test]
    fn each_service_keeps_its_newest_by_count_and_none_past_the_age() {
        let db = db();
        append_all(
            &db,
            "books",
            (0..5).map(|i| run(10 + i, "r")).collect(),
            3,
            0,
        );
        append_all(&db, "other", vec![run(1, "x")], 3, 0);
        let kept: Vec<SystemTime> = read(&db, "books", 10, 0)
            .iter()
            .map(|r| r.started_at)
            .collect();
        assert_eq!(kept, [at(14), at(13), at(12)]);
        // The sequence goes on past what was removed: a new run is the newest.
        append_all(&db, "books", vec![run(20, "new")], 3, 0);
        assert_eq!(names(&read(&db, "books", 1, 0)), ["new"]);
        // Those that started before the cut go as the service's next runs are appended.
        append_all(&db, "books", vec![run(21, "newer")], 3, 15);
        assert_eq!(names(&read(&db, "books", 10, 0)), ["newer", "new"]);
        assert_eq!(
            names(&read(&db, "other", 10, 0)),
            ["x"],
            "another service's are its own"
        );
    }

    #[test]
    fn a_damaged_record_is_skipped_when_read_and_removed_when_pruned() {
        let db = db();
        append_all(&db, "books", vec![run(10, "a")], 100, 0);
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(RUNS).unwrap();
            table.insert(("books", 2), [9u8, 1, 2].as_slice()).unwrap();
            table.insert(("books", 3), [].as_slice()).unwrap();
        }
        tx.commit().unwrap();
        append_all(&db, "books", vec![run(11, "b")], 100, 0);
        assert_eq!(names(&read(&db, "books", 10, 0)), ["b", "a"]);
        // The count keeps the newest two records, so the damaged ones behind them go.
        append_all(&db, "books", vec![run(12, "c")], 2, 0);
        assert_eq!(names(&read(&db, "books", 10, 0)), ["c", "b"]);
        let tx = db.begin_read().unwrap();
        assert_eq!(tx.open_table(RUNS).unwrap().len().unwrap(), 2);
    }

    #[test]
    fn long_texts_are_kept_in_part() {
        let mut long = run(10, &"n".repeat(10_000));
        long.error = Some("é".repeat(5_000));
        let stored = StoredRun::decode(&StoredRun::of(long).encode().unwrap()).unwrap();
        let back = stored.run();
        assert!(back.name.len() <= TEXT_LIMIT + '…'.len_utf8());
        assert!(back.error.unwrap().ends_with('…'));
    }

    #[tokio::test]
    async fn the_store_records_runs_in_its_writes_and_reads_them_back() {
        let store = RedbStore::in_memory().unwrap();
        let batch = vec![
            ServiceRuns::new("books", vec![run(10, "a"), run(11, "b")]),
            ServiceRuns::new("other", vec![run(12, "x")]),
        ];
        store.record_runs(batch, 100, UNIX_EPOCH).await.unwrap();
        assert_eq!(
            names(&store.runs("books", 10, UNIX_EPOCH).unwrap()),
            ["b", "a"]
        );
        assert_eq!(names(&store.runs("other", 10, UNIX_EPOCH).unwrap()), ["x"]);
    }
}
