//! Service state in the redb store: one table keyed by (service, key), each value a versioned
//! record that holds the JSON the service wrote, the write's version and its time. Versions come
//! from one counter of the file's, so that no two writes of a file ever carry the same one: a
//! write that expects a version fails once any other write came between, even one that removed
//! the key and wrote it again.

use std::ops::Bound;
use std::time::SystemTime;

use redb::{ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use super::record::{envelope, ms, open_envelope, time};
use super::{Expect, STATE_KEY_LIMIT, STATE_VALUE_LIMIT, StateChange, StateValue, StateWrite};

/// Each service's state: (service, key) to the value's record.
pub(super) const STATE: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("state");

/// The meta key of the last version given to a write of state.
pub(super) const LAST_VERSION: &str = "state_version";

/// A value as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredValue {
    json: Vec<u8>,
    version: u64,
    written_ms: u64,
}

impl StoredValue {
    fn value(self) -> StateValue {
        StateValue {
            json: self.json,
            version: self.version,
            written: time(self.written_ms),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<StoredValue, String> {
    open_envelope(bytes)
}

/// Why `key` is no state key, if it is not: 1 to [`STATE_KEY_LIMIT`] bytes, and not `.` or
/// `..`, which a URL's path would read as "here" and "up" (and a client would send without
/// the key at all).
pub(crate) fn bad_key(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > STATE_KEY_LIMIT {
        return Some(format!(
            "a state key is 1 to {STATE_KEY_LIMIT} bytes, and this one is {}",
            key.len()
        ));
    }
    if key == "." || key == ".." {
        return Some(format!(
            "`{key}` is no state key: a URL's path cannot carry it"
        ));
    }
    None
}

/// Why a change is refused before anything is written, if it is.
pub(super) fn refusal(change: &StateChange) -> Option<String> {
    if let Some(why) = bad_key(&change.key) {
        return Some(why);
    }
    match &change.value {
        Some(json) if json.len() > STATE_VALUE_LIMIT => Some(format!(
            "the value of state key `{}` is {} bytes, past the limit of {STATE_VALUE_LIMIT}",
            shortened(&change.key, 32),
            json.len()
        )),
        _ => None,
    }
}

/// A key for an error: its first `chars` characters, and `…` if there are more.
pub(crate) fn shortened(key: &str, chars: usize) -> String {
    let mut shown: String = key.chars().take(chars).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    shown
}

/// Applies one change within the write transaction: a conflict when the key's version is not
/// what the change expects, else the value written (or removed) under the next version.
pub(super) fn write(
    table: &mut Table<'_, (&'static str, &'static str), &'static [u8]>,
    last_version: &mut u64,
    change: &StateChange,
    now: SystemTime,
) -> Result<Result<StateWrite, String>, redb::Error> {
    let at = (change.service.as_str(), change.key.as_str());
    // A record that cannot be read counts as no value, as a read finds it: a write that
    // expects none (an update from what it read) replaces it.
    let before = table
        .get(at)?
        .and_then(|bytes| decode(bytes.value()).ok().map(|v| v.version));
    let expected = match change.expect {
        Expect::Any => true,
        Expect::Absent => before.is_none(),
        Expect::Version(version) => before == Some(version),
    };
    if !expected {
        return Ok(Ok(StateWrite::Conflict { found: before }));
    }
    let version = match &change.value {
        Some(json) => {
            *last_version += 1;
            let record = StoredValue {
                json: json.clone(),
                version: *last_version,
                written_ms: ms(now),
            };
            let bytes = match envelope(&record) {
                Ok(bytes) => bytes,
                Err(e) => return Ok(Err(e)),
            };
            table.insert(at, bytes.as_slice())?;
            Some(*last_version)
        }
        None => {
            table.remove(at)?;
            None
        }
    };
    Ok(Ok(StateWrite::Done { before, version }))
}

/// Removes up to `max` of `service`'s values, in the order of their keys; answers how many.
pub(super) fn clear(
    table: &mut Table<'_, (&'static str, &'static str), &'static [u8]>,
    service: &str,
    max: usize,
) -> Result<usize, redb::Error> {
    let mut keys = Vec::new();
    for entry in table.range::<(&str, &str)>((service, "")..)? {
        let (key, _) = entry?;
        let (owner, key) = key.value();
        if owner != service || keys.len() >= max {
            break;
        }
        keys.push(key.to_owned());
    }
    for key in &keys {
        table.remove((service, key.as_str()))?;
    }
    Ok(keys.len())
}

/// The highest version any value of the table carries: where the counter goes on from if its
/// own record is damaged, so that no version is given twice.
pub(super) fn highest_version(
    table: &Table<'_, (&'static str, &'static str), &'static [u8]>,
) -> Result<u64, redb::Error> {
    let mut highest = 0;
    for entry in table.iter()? {
        let (_, bytes) = entry?;
        if let Ok(value) = decode(bytes.value()) {
            highest = highest.max(value.version);
        }
    }
    Ok(highest)
}

/// `service`'s value under `key`; a record that cannot be read is said and read as none.
pub(super) fn get(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    path: &str,
    service: &str,
    key: &str,
) -> Result<Option<StateValue>, redb::Error> {
    let Some(bytes) = table.get((service, key))? else {
        return Ok(None);
    };
    match decode(bytes.value()) {
        Ok(value) => Ok(Some(value.value())),
        Err(error) => {
            damaged(path, service, key, &error);
            Ok(None)
        }
    }
}

/// Up to `limit` of `service`'s values in the order of their keys, from the first key after
/// `after`. A record that cannot be read is skipped, and said.
pub(super) fn entries(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    path: &str,
    service: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, StateValue)>, redb::Error> {
    let start = match after {
        Some(key) => Bound::Excluded((service, key)),
        None => Bound::Included((service, "")),
    };
    let mut found = Vec::new();
    for entry in table.range::<(&str, &str)>((start, Bound::Unbounded))? {
        if found.len() >= limit {
            break;
        }
        let (at, bytes) = entry?;
        let (owner, key) = at.value();
        if owner != service {
            break;
        }
        match decode(bytes.value()) {
            Ok(value) => found.push((key.to_owned(), value.value())),
            Err(error) => damaged(path, service, key, &error),
        }
    }
    Ok(found)
}

fn damaged(path: &str, service: &str, key: &str, error: &str) {
    tracing::error!(
        store = path,
        service,
        key,
        error,
        "a state value's record cannot be read; it is skipped"
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use redb::backends::InMemoryBackend;
    use redb::{Database, ReadableDatabase};

    use super::*;

    fn db() -> Database {
        Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap()
    }

    fn change(service: &str, key: &str, value: Option<&str>, expect: Expect) -> StateChange {
        StateChange {
            service: service.into(),
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            expect,
        }
    }

    /// Applies `changes` in one transaction, with the version counter at `*last`.
    fn apply(db: &Database, last: &mut u64, changes: &[StateChange]) -> Vec<StateWrite> {
        let tx = db.begin_write().unwrap();
        let done = {
            let mut table = tx.open_table(STATE).unwrap();
            let now = UNIX_EPOCH + Duration::from_secs(7);
            changes
                .iter()
                .map(|c| write(&mut table, last, c, now).unwrap().unwrap())
                .collect()
        };
        tx.commit().unwrap();
        done
    }

    fn read(db: &Database, service: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(STATE).unwrap();
        entries(&table, "memory", service, after, limit)
            .unwrap()
            .into_iter()
            .map(|(key, value)| format!("{key}={}", String::from_utf8(value.json).unwrap()))
            .collect()
    }

    #[test]
    fn values_are_kept_per_service_in_key_order_and_paged() {
        let db = db();
        let mut last = 0;
        apply(
            &db,
            &mut last,
            &[
                change("sync", "b", Some("2"), Expect::Any),
                change("sync", "a", Some("1"), Expect::Any),
                change("sync", "c", Some("3"), Expect::Any),
                change("sync2", "a", Some("x"), Expect::Any),
                change("syn", "z", Some("y"), Expect::Any),
            ],
        );
        assert_eq!(read(&db, "sync", None, 10), ["a=1", "b=2", "c=3"]);
        assert_eq!(read(&db, "sync", None, 2), ["a=1", "b=2"]);
        assert_eq!(read(&db, "sync", Some("b"), 10), ["c=3"]);
        assert_eq!(read(&db, "sync2", None, 10), ["a=x"]);
        assert_eq!(read(&db, "syn", None, 10), ["z=y"]);
        assert!(read(&db, "nobody", None, 10).is_empty());
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(STATE).unwrap();
            assert_eq!(clear(&mut table, "sync", 2).unwrap(), 2, "at most the max");
            assert_eq!(clear(&mut table, "sync", 2).unwrap(), 1);
        }
        tx.commit().unwrap();
        assert!(read(&db, "sync", None, 10).is_empty());
        assert_eq!(read(&db, "sync2", None, 10), ["a=x"], "its neighbour stays");
    }

    #[test]
    fn a_write_that_expects_a_version_fails_once_another_came_between() {
        let db = db();
        let mut last = 0;
        let [first] = apply(
            &db,
            &mut last,
            &[change("s", "k", Some("1"), Expect::Absent)],
        )[..] else {
            panic!()
        };
        assert_eq!(
            first,
            StateWrite::Done {
                before: None,
                version: Some(1)
            }
        );
        let done = apply(
            &db,
            &mut last,
            &[
                // Absent, but it is there.
                change("s", "k", Some("x"), Expect::Absent),
                change("s", "k", Some("2"), Expect::Version(1)),
                // Version 1 was replaced by the change before.
                change("s", "k", Some("y"), Expect::Version(1)),
                // Removed, then written again: a new version, never 1 or 2 again.
                change("s", "k", None, Expect::Version(2)),
                change("s", "k", Some("3"), Expect::Absent),
                change("s", "k", Some("z"), Expect::Version(2)),
            ],
        );
        assert_eq!(
            done,
            [
                StateWrite::Conflict { found: Some(1) },
                StateWrite::Done {
                    before: Some(1),
                    version: Some(2)
                },
                StateWrite::Conflict { found: Some(2) },
                StateWrite::Done {
                    before: Some(2),
                    version: None
                },
                StateWrite::Done {
                    before: None,
                    version: Some(3)
                },
                StateWrite::Conflict { found: Some(3) },
            ]
        );
        assert_eq!(read(&db, "s", None, 10), ["k=3"]);
    }

    #[test]
    fn keys_and_values_past_their_limits_are_refused() {
        let long = "k".repeat(STATE_KEY_LIMIT + 1);
        let big = "9".repeat(STATE_VALUE_LIMIT + 1);
        assert!(refusal(&change("s", &long, Some("1"), Expect::Any)).is_some());
        assert!(refusal(&change("s", "", Some("1"), Expect::Any)).is_some());
        assert!(refusal(&change("s", "k", Some(&big), Expect::Any)).is_some());
        assert!(refusal(&change("s", "k", None, Expect::Any)).is_none());
        for dots in [".", ".."] {
            assert!(refusal(&change("s", dots, Some("1"), Expect::Any)).is_some());
        }
        assert!(bad_key("...").is_none());
        let at_limit = "k".repeat(STATE_KEY_LIMIT);
        assert!(refusal(&change("s", &at_limit, Some("1"), Expect::Any)).is_none());
    }

    #[test]
    fn a_damaged_record_reads_as_none_and_a_write_that_expects_none_replaces_it() {
        let db = db();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(STATE).unwrap();
            table.insert(("s", "bad"), [9u8, 1].as_slice()).unwrap();
            table.insert(("s", "empty"), [].as_slice()).unwrap();
        }
        tx.commit().unwrap();
        assert!(read(&db, "s", None, 10).is_empty());
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(STATE).unwrap();
        assert_eq!(get(&table, "memory", "s", "bad").unwrap(), None);
        drop((table, tx));
        let mut last = 0;
        let done = apply(
            &db,
            &mut last,
            &[
                change("s", "bad", Some("1"), Expect::Absent),
                change("s", "empty", Some("2"), Expect::Any),
            ],
        );
        assert_eq!(
            done[0],
            StateWrite::Done {
                before: None,
                version: Some(1)
            },
            "as the read found it: none"
        );
        assert_eq!(read(&db, "s", None, 10), ["bad=1", "empty=2"]);
    }
}
