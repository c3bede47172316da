//! How calls reach a service: order per caller across fire-and-forget commands and awaited
//! actions, and queries that get through a long burst.

use std::sync::{Arc, Mutex};

use sora::{
    Action, BoxError, Command, Context, Definition, Handler, Query, Runtime, Service,
    ServiceMessage,
};

/// Writes down every call it handles, in the order it handles them.
#[derive(Clone, Default)]
struct Ledger {
    entries: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Ledger {
    fn write(&self, caller: u64, seq: u64) {
        self.entries.lock().unwrap().push((caller, seq));
    }

    fn entries(&self) -> Vec<(u64, u64)> {
        self.entries.lock().unwrap().clone()
    }
}

/// An entry, written by an action: `(caller, seq)`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Note(u64, u64);

impl Action for Note {
    const NAME: &'static str = "note";
    type Reply = ();
}

impl Service for Ledger {
    fn define(def: &mut Definition<Self>) {
        def.command("note").action::<Note>();
    }

    async fn command(&self, command: Command, _: &Context) -> Result<(), BoxError> {
        let Command::Custom { args, .. } = command else {
            return Err("unexpected command".into());
        };
        let (caller, seq): (u64, u64) = serde_json::from_str(&args.unwrap_or_default())?;
        self.write(caller, seq);
        Ok(())
    }
}

impl Handler<Note> for Ledger {
    async fn handle(&self, Note(caller, seq): Note, _: &Context) -> Result<(), BoxError> {
        self.write(caller, seq);
        Ok(())
    }
}

fn note(caller: u64, seq: u64) -> Command {
    Command::Custom {
        name: "note".into(),
        args: Some(format!("[{caller},{seq}]")),
    }
}

/// A runtime whose only service writes into `ledger`.
async fn start(ledger: &Ledger) -> Runtime {
    let ledger = ledger.clone();
    Runtime::builder()
        .service(move || ledger.clone())
        .start()
        .await
        .unwrap()
}

/// The sequence numbers `caller` wrote, in the order the service handled them.
fn seqs_of(entries: &[(u64, u64)], caller: u64) -> Vec<u64> {
    entries
        .iter()
        .filter(|(c, _)| *c == caller)
        .map(|(_, seq)| *seq)
        .collect()
}

/// Sends `count` calls as `caller`: mostly fire-and-forget commands, with an awaited action
/// every `every` calls and at the end.
async fn send(ledger: sora::ServiceHandle<Ledger>, caller: u64, count: u64, every: u64) {
    for seq in 0..count {
        if seq % every == every - 1 {
            ledger.act(Note(caller, seq)).await.unwrap();
        } else {
            ledger.tell(note(caller, seq)).unwrap();
        }
    }
    ledger.act(Note(caller, count)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_commands_and_actions_run_in_the_order_sent() {
    let ledger = Ledger::default();
    let runtime = start(&ledger).await;
    let handle = runtime.service::<Ledger>().unwrap();
    // Short bursts, and bursts longer than one turn of the host.
    send(handle.clone(), 0, 5_000, 7).await;
    send(handle, 1, 5_000, 500).await;
    let entries = ledger.entries();
    for caller in 0..2 {
        assert_eq!(seqs_of(&entries, caller), (0..=5_000).collect::<Vec<_>>());
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_keep_their_own_order() {
    let ledger = Ledger::default();
    let runtime = start(&ledger).await;
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            tokio::spawn(send(
                runtime.service::<Ledger>().unwrap(),
                caller,
                2_000,
                3 + caller * 97,
            ))
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let entries = ledger.entries();
    assert_eq!(entries.len(), 4 * 2_001, "nothing lost, nothing doubled");
    for caller in 0..4 {
        assert_eq!(seqs_of(&entries, caller), (0..=2_000).collect::<Vec<_>>());
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_query_gets_through_a_long_burst_of_commands() {
    let ledger = Ledger::default();
    let runtime = start(&ledger).await;
    let handle = runtime.service::<Ledger>().unwrap();
    // On this one-thread runtime the host runs only once the test awaits: the whole burst is
    // waiting when it starts, and the query is in its mailbox behind the first doorbell.
    for seq in 0..10_000 {
        handle.tell(note(0, seq)).unwrap();
    }
    let actor = handle.actor_ref().unwrap();
    let status = ractor::call!(actor, |port| ServiceMessage::Query(Query::Status(port))).unwrap();
    assert!(
        status.calls > 0 && status.calls < 10_000,
        "the query was answered between two turns of the burst, after {} calls",
        status.calls
    );
    handle.act(Note(0, 10_000)).await.unwrap();
    assert_eq!(ledger.entries().len(), 10_001);
    assert_eq!(handle.status().await.unwrap().calls, 10_001);
    runtime.shutdown().await.unwrap();
}
