//! Service state: values by key that a service keeps in the store, surviving a restart of the
//! service and of the runtime; updates that lose nothing when handlers race; limits that refuse
//! and write nothing; an operator's view of any name's state.

use std::time::{Duration, SystemTime};

#[path = "support/temp_store.rs"]
mod temp_store;

use sora::config::Config;
use sora::store::{RedbStore, STATE_KEY_LIMIT, STATE_VALUE_LIMIT};
use sora::{Action, BoxError, Context, Definition, Error, Handler, Runtime, Service};
use temp_store::TempStore;

/// Counts one sync in the state.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sync;

impl Action for Sync {
    const NAME: &'static str = "sync";
    type Reply = u64;
}

/// Panics, so that the service is restarted.
#[derive(serde::Serialize, serde::Deserialize)]
struct Crash;

impl Action for Crash {
    const NAME: &'static str = "crash";
    type Reply = ();
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Installed {
    at: SystemTime,
    by: String,
}

/// The seeds' data-sync service: its install date, how often it started, how often it synced.
struct DataSync;

impl Service for DataSync {
    fn define(def: &mut Definition<Self>) {
        def.name("data-sync")
            .concurrency(16)
            .state()
            .action::<Sync>()
            .action::<Crash>();
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        let state = ctx.state();
        if state.get::<Installed>("installed")?.is_none() {
            let installed = Installed {
                at: SystemTime::now(),
                by: "first start".into(),
            };
            state.set("installed", &installed).await?;
        }
        state
            .update("starts", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
        Ok(())
    }
}

impl Handler<Sync> for DataSync {
    async fn handle(&self, _: Sync, ctx: &Context) -> Result<u64, BoxError> {
        Ok(ctx
            .state()
            .update("synced", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?)
    }
}

impl Handler<Crash> for DataSync {
    async fn handle(&self, _: Crash, _: &Context) -> Result<(), BoxError> {
        panic!("crashed on purpose");
    }
}

async fn start(store: impl sora::store::Store) -> Runtime {
    Runtime::builder()
        .store(store)
        .service(|| DataSync)
        .start()
        .await
        .unwrap()
}

async fn start_file(file: &TempStore) -> Runtime {
    Runtime::builder()
        .store_path(&file.0)
        .service(|| DataSync)
        .start()
        .await
        .unwrap()
}

fn starts(runtime: &Runtime) -> Option<u64> {
    runtime.state("data-sync").get("starts").unwrap()
}

#[tokio::test(start_paused = true)]
async fn state_survives_a_restart_of_the_service_and_of_the_runtime() {
    let file = TempStore::new("state-restart");
    let runtime = start_file(&file).await;
    let sync = runtime.service::<DataSync>().unwrap();
    assert_eq!(starts(&runtime), Some(1));
    let installed: Installed = runtime
        .state("data-sync")
        .get("installed")
        .unwrap()
        .unwrap();
    assert_eq!(sync.act(Sync).await.unwrap(), 1);
    assert_eq!(sync.act(Sync).await.unwrap(), 2);

    // A panic restarts the service: a new instance, which finds what the last one kept.
    sync.act(Crash).await.unwrap_err();
    // Its restart waits out the restart backoff, in virtual time: a minute of it at most.
    for waited in 0.. {
        if starts(&runtime) == Some(2) {
            break;
        }
        assert!(waited < 6000, "the service was not restarted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sync.act(Sync).await.unwrap(), 3);
    runtime.shutdown().await.unwrap();

    // A new runtime on the same file: what the last process kept, as it was.
    let runtime = start_file(&file).await;
    let state = runtime.state("data-sync");
    assert_eq!(state.get::<u64>("starts").unwrap(), Some(3));
    assert_eq!(state.get::<u64>("synced").unwrap(), Some(3));
    assert_eq!(
        state.get::<Installed>("installed").unwrap().unwrap(),
        installed,
        "written once, at the first start"
    );
    let keys: Vec<String> = state
        .entries(None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["installed", "starts", "synced"]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_from_handlers_that_race_lose_no_count() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let sync = runtime.service::<DataSync>().unwrap();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let sync = sync.clone();
            tokio::spawn(async move { sync.act(Sync).await.unwrap() })
        })
        .collect();
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    replies.sort_unstable();
    // Each update saw the one before it: every count from 1 to 200, once.
    assert_eq!(replies, (1..=200).collect::<Vec<u64>>());
    let synced: Option<u64> = runtime.state("data-sync").get("synced").unwrap();
    assert_eq!(synced, Some(200));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_that_did_not_declare_state_is_told_how() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Remember;
    impl Action for Remember {
        const NAME: &'static str = "remember";
        type Reply = ();
    }
    struct Forgetful;
    impl Service for Forgetful {
        fn define(def: &mut Definition<Self>) {
            def.action::<Remember>();
        }
    }
    impl Handler<Remember> for Forgetful {
        async fn handle(&self, _: Remember, ctx: &Context) -> Result<(), BoxError> {
            let state = ctx.state();
            let read = state.get::<u64>("n").unwrap_err();
            assert!(matches!(read, Error::NoState { .. }), "{read:?}");
            let write = state.set("n", &1).await.unwrap_err();
            assert_eq!(write.code(), "no_state");
            Err(write.into())
        }
    }
    let runtime = Runtime::builder()
        .store(RedbStore::in_memory().unwrap())
        .service(|| Forgetful)
        .start()
        .await
        .unwrap();
    let err = runtime
        .service::<Forgetful>()
        .unwrap()
        .act(Remember)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("def.state()"), "{err}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_and_values_past_their_limits_and_values_of_another_type_are_refused() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let state = runtime.state("data-sync");
    let long = "k".repeat(STATE_KEY_LIMIT + 1);
    for key in [long.as_str(), ""] {
        let err = state.set(key, &1).await.unwrap_err();
        assert!(matches!(err, Error::BadState { .. }), "{err:?}");
    }
    let big = "x".repeat(STATE_VALUE_LIMIT);
    let err = state.set("big", &big).await.unwrap_err();
    assert!(err.to_string().contains("past the limit"), "{err}");
    let err = state
        .update("big", |_: Option<String>| big.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_state");
    // At the limit is kept.
    let exact = "k".repeat(STATE_KEY_LIMIT);
    state.set(&exact, &"fits").await.unwrap();
    assert_eq!(
        state.get::<String>(&exact).unwrap().as_deref(),
        Some("fits")
    );

    state.set("name", &"ada").await.unwrap();
    let err = state.get::<u64>("name").unwrap_err();
    assert!(
        matches!(&err, Error::BadState { message, .. } if message.contains("u64")),
        "{err:?}"
    );
    let err = state.update("name", |n: Option<u64>| n.unwrap_or(0)).await;
    assert_eq!(err.unwrap_err().code(), "bad_state");
    assert_eq!(
        state.get::<String>("name").unwrap().as_deref(),
        Some("ada"),
        "nothing was written"
    );
    assert_eq!(
        state.get::<u64>("big").unwrap(),
        None,
        "nothing was written"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_operator_pages_through_and_clears_a_renamed_services_state() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let old = runtime.state("sync-v1");
    for (i, key) in ["e", "a", "d", "b", "c"].into_iter().enumerate() {
        old.set(key, &i).await.unwrap();
    }
    let page = |after: Option<&str>| -> Vec<String> {
        old.entries(after, 2)
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    assert_eq!(page(None), ["a", "b"]);
    assert_eq!(page(Some("b")), ["c", "d"]);
    assert_eq!(page(Some("d")), ["e"]);
    assert!(page(Some("e")).is_empty());
    let entry = old.entry("d").unwrap().unwrap();
    assert_eq!(entry.value, serde_json::json!(2));
    assert!(old.remove("d").await.unwrap());
    assert!(!old.remove("d").await.unwrap(), "already gone");
    // Another name's state is its own.
    assert_eq!(starts(&runtime), Some(1));
    assert_eq!(old.clear().await.unwrap(), 4);
    assert!(old.entries(None, 10).unwrap().is_empty());
    assert_eq!(starts(&runtime), Some(1));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_write_has_a_version_of_its_own() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let state = runtime.state("versions");
    state.set("a", &1).await.unwrap();
    let first = state.entry("a").unwrap().unwrap().version;
    state.remove("a").await.unwrap();
    state.set("a", &1).await.unwrap();
    let again = state.entry("a").unwrap().unwrap().version;
    assert!(
        again > first,
        "{again} after {first}: a removal does not give a number back"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_store_reads_find_nothing_and_writes_say_why() {
    let runtime = Runtime::builder().start().await.unwrap();
    let state = runtime.state("anyone");
    assert_eq!(state.get::<u64>("n").unwrap(), None);
    assert!(state.entries(None, 10).unwrap().is_empty());
    let err = state.set("n", &1).await.unwrap_err();
    assert!(
        matches!(&err, Error::Store { message, .. } if message.contains("keeps no store")),
        "{err:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_that_keeps_state_opens_the_configured_store() {
    let file = TempStore::new("state-opens");
    let runtime = Runtime::builder()
        .config(Config::toml(&format!(
            "[store]\npath = {:?}\n",
            file.0.display().to_string()
        )))
        .service(|| DataSync)
        .start()
        .await
        .unwrap();
    assert!(runtime.jobs().is_some(), "the store is open");
    assert_eq!(starts(&runtime), Some(1));
    runtime.shutdown().await.unwrap();
    assert!(file.0.exists());
}

#[tokio::test]
async fn a_value_nested_past_what_a_reader_takes_is_refused() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let state = runtime.state("data-sync");
    let mut deep = serde_json::json!(1);
    for _ in 0..200 {
        deep = serde_json::json!([deep]);
    }
    let err = state.set("deep", &deep).await.unwrap_err();
    assert!(err.to_string().contains("would not read back"), "{err}");
    assert!(
        state.entry("deep").unwrap().is_none(),
        "nothing was written"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_large_state_is_cleared_whole_over_several_commits() {
    let runtime = start(RedbStore::in_memory().unwrap()).await;
    let state = runtime.state("big");
    let keys: Vec<String> = (0..10_001).map(|i| format!("k{i:05}")).collect();
    futures::future::try_join_all(keys.iter().map(|k| state.set(k, &1)))
        .await
        .unwrap();
    assert_eq!(state.clear().await.unwrap(), 10_001);
    assert!(state.entries(None, 1).unwrap().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_damaged_value_reads_as_none_and_an_update_writes_over_it() {
    let file = TempStore::new("state-damaged");
    start_file(&file).await.shutdown().await.unwrap();
    {
        const STATE: redb::TableDefinition<'_, (&str, &str), &[u8]> =
            redb::TableDefinition::new("state");
        let db = redb::Database::open(&file.0).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(STATE)
            .unwrap()
            .insert(("data-sync", "synced"), [9u8, 9, 9].as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let runtime = start_file(&file).await;
    let state = runtime.state("data-sync");
    assert_eq!(state.get::<u64>("synced").unwrap(), None);
    let sync = runtime.service::<DataSync>().unwrap();
    // An update from what it read, none: it replaces the damaged record, and does not spin.
    assert_eq!(sync.act(Sync).await.unwrap(), 1);
    assert_eq!(state.get::<u64>("synced").unwrap(), Some(1));
    runtime.shutdown().await.unwrap();
}
