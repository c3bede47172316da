//! Ctrl-C and SIGTERM stop the runtime in order. In a test binary of its own: the signal
//! handler it installs is process-wide.

#![cfg(unix)]

#[path = "support/common.rs"]
mod support;

use std::time::Duration;

use sora::{Context, Definition, Runtime, Service};
use support::*;

struct Recorder {
    journal: Journal,
}

impl Service for Recorder {
    fn define(def: &mut Definition<Self>) {
        def.name("recorder");
    }

    async fn stop(&self, _ctx: &Context) {
        self.journal.push("stopped");
    }
}

async fn start_recorder(journal: &Journal) -> Runtime {
    let journal = journal.clone();
    Runtime::builder()
        .service(move || Recorder {
            journal: journal.clone(),
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_shuts_the_runtime_down_in_order() {
    // Listening here first makes SIGTERM a signal to handle, not one that ends the process,
    // from now on, whether or not the runtime has begun to listen.
    let mut ours = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("listen for SIGTERM");
    let journal = Journal::default();
    let runtime = start_recorder(&journal).await;
    let run = tokio::spawn(async move { runtime.run().await });
    // The runtime may not listen yet when a signal arrives; send until it has stopped.
    let pid = std::process::id().to_string();
    within(async {
        while !run.is_finished() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("run kill");
            assert!(sent.success());
            ours.recv().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    run.await.unwrap().unwrap();
    assert_eq!(journal.entries(), ["stopped"]);
}

#[tokio::test]
async fn run_until_stops_when_its_future_resolves() {
    let journal = Journal::default();
    let runtime = start_recorder(&journal).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        runtime
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    stop.send(()).unwrap();
    within(run).await.unwrap().unwrap();
    assert_eq!(journal.entries(), ["stopped"]);
}
