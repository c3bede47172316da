//! A service's state: values by key, kept in the store, so that they survive a restart of the
//! service and of the process.
//!
//! A service declares it ([`Definition::state`](crate::Definition::state)) and reaches it from
//! its context ([`Context::state`]); an operator reads any service's from the runtime
//! ([`RuntimeHandle::state`](crate::RuntimeHandle::state)), over HTTP and from the CLI. Values
//! are JSON: they outlive the build that wrote them, take an added `#[serde(default)]` field,
//! and read as text. Each write is one durable commit, shared with whatever else waits to be
//! committed; a read reads what was last committed, where it is called.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::host::ServiceShared;
use crate::jobs::Dispatcher;
use crate::service::Context;
use crate::store::{Expect, STATE_VALUE_LIMIT, StateChange, StateValue, StateWrite, Store};
use crate::system::RuntimeShared;

/// How many values one commit of [`State::clear`] removes at most: a large state is cleared
/// over several commits, so that the jobs' changes that share them do not wait for all of it.
const CLEAR_BATCH: usize = 10_000;

/// How deep JSON may nest and still be read: `serde_json`'s reader stops past it.
const READ_DEPTH: usize = 128;

/// How deep `json` (as `serde_json` writes it) nests its arrays and objects.
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A service's state: typed values by key, kept in the runtime's store.
///
/// Got from the service's context ([`Context::state`]) or, for any name, from the runtime
/// ([`RuntimeHandle::state`](crate::RuntimeHandle::state)). Cloning it is cheap.
///
/// Keys are 1 to [`STATE_KEY_LIMIT`](crate::store::STATE_KEY_LIMIT) bytes, and not `.` or `..` (a URL cannot carry them); a
/// value's JSON at most [`STATE_VALUE_LIMIT`].
/// Writes of one key are ordered by the store: [`update`](Self::update) reads, changes and
/// writes back, and does it again if another write came between, so that two handlers that
/// count into one key at once lose no count, in this process or, with a shared store, across
/// processes.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use sora::{Context, Definition, Service};
///
/// #[derive(serde::Serialize, serde::Deserialize, Default)]
/// struct Synced {
///     runs: u64,
///     last: Option<SystemTime>,
/// }
///
/// struct DataSync;
/// impl Service for DataSync {
///     fn define(def: &mut Definition<Self>) {
///         def.state();
///     }
///     async fn start(&self, ctx: &Context) -> Result<(), sora::BoxError> {
///         let state = ctx.state();
///         if state.get::<SystemTime>("installed")?.is_none() {
///             state.set("installed", &SystemTime::now()).await?;
///         }
///         state
///             .update("synced", |s: Option<Synced>| {
///                 let s = s.unwrap_or_default();
///                 Synced { runs: s.runs + 1, last: Some(SystemTime::now()) }
///             })
///             .await?;
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sora::Error> {
/// let runtime = sora::Runtime::builder()
///     .store(sora::store::RedbStore::in_memory()?)
///     .service(|| DataSync)
///     .start()
///     .await?;
/// let synced: Synced = runtime.state("DataSync").get("synced")?.unwrap();
/// assert_eq!(synced.runs, 1);
/// # runtime.shutdown().await }
/// ```
#[derive(Clone)]
pub struct State {
    service: Arc<str>,
    runtime: Arc<RuntimeShared>,
    /// Whether it may be written: a service's own only when it declared it.
    declared: bool,
}

/// One value of a service's state, as read for an operator: its JSON, the version of the
/// write that made it, and when that was.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// The write that made it (see [`StateValue::version`]).
    pub version: u64,
    /// When it was written.
    pub written: SystemTime,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("service", &self.service)
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The service's state: values by key that survive a restart of the service and of the
    /// process (see [`State`]).
    ///
    /// Its calls fail with [`Error::NoState`] unless the service declared it with
    /// [`Definition::state`](crate::Definition::state).
    pub fn state(&self) -> State {
        let shared = self.served().as_any().downcast_ref::<ServiceShared>();
        let shared = shared.expect("a context serves a service of a host");
        State {
            service: shared.name.clone(),
            runtime: shared.runtime.clone(),
            declared: shared.keeps_state,
        }
    }
}

impl State {
    /// The state kept under `service`'s name, for an operator: it reads, writes and clears
    /// what is kept under the name, whether or not a service of that name runs here (a
    /// renamed or removed service's state stays under its old name).
    pub(crate) fn of(runtime: Arc<RuntimeShared>, service: &str) -> Self {
        State {
            service: Arc::from(service),
            runtime,
            declared: true,
        }
    }

    /// The service whose state this is.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The value under `key`, if there is one.
    ///
    /// # Errors
    ///
    /// [`Error::BadState`] if the stored value does not decode into `T`, [`Error::NoState`]
    /// if the service did not declare state, [`Error::Store`] if the store cannot be read.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.read(key)? {
            Some(value) => self.decode(key, &value.json).map(Some),
            None => Ok(None),
        }
    }

    /// The value under `key` with its version and time, as JSON.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn entry(&self, key: &str) -> Result<Option<StateEntry>, Error> {
        Ok(self.read(key)?.map(|value| entry_of(key.to_owned(), value)))
    }

    /// Up to `limit` values in the order of their keys, from the first key after `after`
    /// (from the first of all without it): pass the last key of one page to get the next.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn entries(&self, after: Option<&str>, limit: usize) -> Result<Vec<StateEntry>, Error> {
        let Some(store) = self.readable()? else {
            return Ok(Vec::new());
        };
        let entries = store.state_entries(&self.service, after, limit)?;
        Ok(entries.into_iter().map(|(k, v)| entry_of(k, v)).collect())
    }

    /// Sets `key` to `value`, and returns once it is committed.
    ///
    /// # Errors
    ///
    /// [`Error::BadState`] if the key or the value's JSON is past its limit, or `value` does
    /// not encode to JSON; [`Error::NoState`] if the service did not declare state;
    /// [`Error::Store`] if the commit fails. Nothing is written then.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let json = self.encode(key, value)?;
        self.write(StateChange::set(&*self.service, key, json))
            .await
            .map(drop)
    }

    /// Removes `key`; answers whether it had a value.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn remove(&self, key: &str) -> Result<bool, Error> {
        match self.write(StateChange::remove(&*self.service, key)).await? {
            StateWrite::Done { before, .. } => Ok(before.is_some()),
            StateWrite::Conflict { .. } => unreachable!("a removal that expects anything"),
        }
    }

    /// Replaces the value under `key` (`None` if there is none) by what `change` makes of it,
    /// and returns the new value once it is committed.
    ///
    /// If another write of `key` is committed between the read and this write, `change` runs
    /// again on the newer value: it may run more than once, and should only compute. Among
    /// updates that race, one wins each round, so all of them finish; a key that many writers
    /// share, each update one commit, is better split into keys of their own.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get) and [`set`](Self::set).
    pub async fn update<T, F>(&self, key: &str, mut change: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        loop {
            let (old, expect) = match self.read(key)? {
                Some(value) => (
                    Some(self.decode(key, &value.json)?),
                    Expect::Version(value.version),
                ),
                None => (None, Expect::Absent),
            };
            let new = change(old);
            let json = self.encode(key, &new)?;
            let write = StateChange::set(&*self.service, key, json).expect(expect);
            if let StateWrite::Done { .. } = self.write(write).await? {
                return Ok(new);
            }
        }
    }

    /// Removes every value, a batch per commit; answers how many there were.
    ///
    /// # Errors
    ///
    /// [`Error::NoState`] if the service did not declare state, [`Error::Store`] if the
    /// commit fails.
    pub async fn clear(&self) -> Result<usize, Error> {
        let (store, _) = self.writable()?;
        let mut cleared = 0;
        loop {
            let gone = store.clear_state(&self.service, CLEAR_BATCH).await?;
            cleared += gone;
            if gone < CLEAR_BATCH {
                return Ok(cleared);
            }
        }
    }

    fn read(&self, key: &str) -> Result<Option<StateValue>, Error> {
        let store = self.readable()?;
        self.check(key)?;
        match store {
            Some(store) => store.state(&self.service, key),
            None => Ok(None),
        }
    }

    /// Whether `key` is a state key (see [`STATE_KEY_LIMIT`](crate::store::STATE_KEY_LIMIT); `.` and `..` are not).
    fn check(&self, key: &str) -> Result<(), Error> {
        match crate::store::state::bad_key(key) {
            Some(why) => Err(self.bad(key, why)),
            None => Ok(()),
        }
    }

    /// The store to read from; `None` when the runtime has none, and so no state.
    fn readable(&self) -> Result<Option<Arc<dyn Store>>, Error> {
        if !self.declared {
            return Err(self.undeclared());
        }
        match self.runtime.jobs.get() {
            Some(dispatcher) => dispatcher.store().map(Some),
            None => Ok(None),
        }
    }

    fn writable(&self) -> Result<(Arc<dyn Store>, &Arc<Dispatcher>), Error> {
        if !self.declared {
            return Err(self.undeclared());
        }
        // A service that declared state has a store; only an operator's view may find none.
        let dispatcher = self.runtime.jobs.get().ok_or_else(|| Error::Store {
            path: "none".into(),
            message: "this runtime keeps no store: no service here declares durable actions \
                      or state, and none is configured"
                .into(),
        })?;
        Ok((dispatcher.store()?, dispatcher))
    }

    async fn write(&self, change: StateChange) -> Result<StateWrite, Error> {
        let (store, dispatcher) = self.writable()?;
        self.check(&change.key)?;
        store.write_state(change, dispatcher.now()).await
    }

    fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Vec<u8>, Error> {
        let json = serde_json::to_vec(value).map_err(|e| self.bad(key, e.to_string()))?;
        // What is written can be read back: JSON nested past the reader's depth could not be.
        if nesting(&json) > READ_DEPTH {
            return Err(self.bad(
                key,
                format!("the value would not read back: it nests past {READ_DEPTH} levels"),
            ));
        }
        if json.len() > STATE_VALUE_LIMIT {
            return Err(self.bad(
                key,
                format!(
                    "the value is {} bytes of JSON, past the limit of {STATE_VALUE_LIMIT}",
                    json.len()
                ),
            ));
        }
        Ok(json)
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, json: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(json).map_err(|e| {
            self.bad(
                key,
                format!(
                    "the stored value does not read as `{}`: {e}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    fn undeclared(&self) -> Error {
        Error::NoState {
            service: self.service.to_string(),
        }
    }

    fn bad(&self, key: &str, message: String) -> Error {
        Error::BadState {
            service: self.service.to_string(),
            key: crate::store::state::shortened(key, 64),
            message,
        }
    }
}

/// An entry for an operator: a value that is not JSON (a store of one's own wrote it)
/// shows as its text, so that one value does not hide the page it is on.
fn entry_of(key: String, value: StateValue) -> StateEntry {
    let json = serde_json::from_slice(&value.json).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&value.json).into_owned())
    });
    StateEntry {
        key,
        value: json,
        version: value.version,
        written: value.written,
    }
}

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(b"1"), 0);
        assert_eq!(nesting(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting(br#"["[[[[", "\"[[", {}]"#), 2);
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(nesting(deep.as_bytes()), 129);
    }
}
