//! The `sora` binary, run against a live node on 127.0.0.1.

#![cfg(feature = "cli")]

#[path = "support/plane.rs"]
mod plane;
#[path = "support/common.rs"]
mod support;

use std::process::Output;

use plane::{Batcher, Off};
use serde_json::{Value, json};
use sora::http::HttpConfig;
use sora::{Context, Health, Runtime, Service};
use support::*;

const TOKEN: &str = "cli-secret";

/// Reports itself unhealthy.
#[derive(Default)]
struct Sick;

impl Service for Sick {
    async fn health(&self, _: &Context) -> Health {
        Health::unhealthy("the disk is full")
    }
}

struct Node {
    runtime: Runtime,
    url: String,
    journal: Journal,
}

async fn node() -> Node {
    let journal = Journal::default();
    let batcher = {
        let journal = journal.clone();
        move || Batcher {
            journal: journal.clone(),
        }
    };
    let runtime = Runtime::builder()
        .service(translator(&journal, None))
        .service(batcher)
        .service(Off::default)
        .http(HttpConfig::local(0).token(TOKEN))
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", runtime.http_address().unwrap());
    Node {
        runtime,
        url,
        journal,
    }
}

impl Node {
    /// Runs `sora --url <node> --token <token> args..`.
    async fn sora(&self, args: &[&str]) -> Run {
        let mut full = vec!["--url", &self.url, "--token", TOKEN];
        full.extend_from_slice(args);
        sora(&full).await
    }

    async fn stop(self) {
        self.runtime.shutdown().await.unwrap();
    }
}

/// What a run of the binary left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "sora failed: {self:?}");
        &self.stdout
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.ok().trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs the binary with `args`, without the caller's `SORA_*` variables.
async fn sora(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sora"))
            .args(&args)
            .env_remove("SORA_URL")
            .env_remove("SORA_TOKEN")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn services_are_listed_for_people_and_for_scripts() {
    let node = node().await;

    let table = node.sora(&["services"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "KINDS", "STATE", "HEALTH"]
    );
    let batcher = lines.iter().find(|l| l.starts_with("batcher ")).unwrap();
    assert!(batcher.contains("periodic, pokable"), "{batcher}");
    let off = lines.iter().find(|l| l.starts_with("Off ")).unwrap();
    assert!(off.contains("disabled"), "{off}");

    let json = node.sora(&["--json", "services"]).await.json();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Off", "Translator", "batcher"]);
    node.stop().await;
}

#[tokio::test]
async fn status_and_info_show_what_the_node_reports() {
    let node = node().await;
    let status = node.sora(&["status", "batcher"]).await;
    let line = |key: &str| {
        status
            .ok()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no `{key}` in {status:?}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("name"), "batcher");
    assert_eq!(line("paused"), "false");
    // A duration reads as people write one, not as serde's `{secs, nanos}`.
    assert!(
        line("next_run_in").ends_with('s'),
        "{}",
        line("next_run_in")
    );

    let info = node.sora(&["--json", "info", "Translator"]).await.json();
    assert_eq!(info["actions"][0], "translate");
    node.stop().await;
}

#[tokio::test]
async fn commands_reach_the_service() {
    let node = node().await;
    assert_eq!(
        node.sora(&["trigger", "batcher"]).await.ok(),
        "batcher: triggered\n"
    );
    node.sora(&["check-queue", "batcher"]).await.ok();
    node.sora(&["batch", "batcher", "--size", "5", "--filter", "old"])
        .await
        .ok();
    let done = node
        .sora(&[
            "--json",
            "command",
            "batcher",
            "reindex",
            "--args",
            r#"{"full":true}"#,
        ])
        .await
        .json();
    assert_eq!(done, json!({"service": "batcher", "ok": true}));
    let journal = node.journal.entries();
    for entry in [
        "tick",
        "check-queue",
        r#"batch:Some(5):Some("old")"#,
        r#"reindex:Some("{\"full\":true}")"#,
    ] {
        assert!(journal.iter().any(|e| e == entry), "{entry} in {journal:?}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_services_runs_are_shown_newest_first() {
    let node = node().await;
    node.sora(&["trigger", "batcher"]).await.ok();
    node.sora(&[
        "command",
        "batcher",
        "reindex",
        "--correlation-id",
        "nightly",
    ])
    .await
    .ok();

    let table = node.sora(&["runs", "batcher"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs: {lines:?}");
    for column in ["STARTED", "KIND", "NAME", "TOOK", "OUTCOME", "CORRELATION"] {
        assert!(lines[0].contains(column), "{column} in {:?}", lines[0]);
    }
    assert!(lines[1].contains("command") && lines[1].contains("reindex"));
    assert!(lines[1].contains("nightly") && lines[1].contains("ok"));
    assert!(lines[2].contains("tick"), "{:?}", lines[2]);

    let newest = node
        .sora(&["--json", "runs", "batcher", "--limit", "1"])
        .await
        .json();
    let newest = newest.as_array().unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["name"], "reindex");
    assert_eq!(newest[0]["correlation_id"], "nightly");

    let unknown = node.sora(&["runs", "nobody"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("nobody"), "{unknown:?}");
    node.stop().await;
}

#[tokio::test]
async fn pause_and_resume_show_in_status() {
    let node = node().await;
    node.sora(&["pause", "batcher"]).await.ok();
    let status = node.sora(&["--json", "status", "batcher"]).await.json();
    assert_eq!(status["paused"], true);
    node.sora(&["resume", "batcher"]).await.ok();
    let status = node.sora(&["--json", "status", "batcher"]).await.json();
    assert_eq!(status["paused"], false);
    node.stop().await;
}

#[tokio::test]
async fn actions_answer_with_their_reply() {
    let node = node().await;
    let params = r#"{"text": "bonjour", "to": "en"}"#;
    let reply = node
        .sora(&[
            "--json",
            "act",
            "Translator",
            "translate",
            "--params",
            params,
        ])
        .await
        .json();
    assert_eq!(reply, "[en] bonjour");
    let who = node
        .sora(&[
            "--json",
            "act",
            "Translator",
            "who-am-i",
            "--correlation-id",
            "upload-7",
            "--priority",
            "-3",
        ])
        .await
        .json();
    assert_eq!(who, "upload-7");
    node.stop().await;
}

#[tokio::test]
async fn exit_codes_tell_scripts_what_went_wrong() {
    let node = node().await;
    let cases: [(&[&str], i32, &str); 8] = [
        // The node refused the request: bad parameters, naming the field.
        (
            &[
                "act",
                "Translator",
                "translate",
                "--params",
                r#"{"text": 1}"#,
            ],
            1,
            "text",
        ),
        // A disabled service.
        (&["trigger", "Off"], 1, "service_disabled"),
        // Bad JSON on the command line never leaves the machine.
        (
            &["act", "Translator", "translate", "--params", "{"],
            2,
            "not JSON",
        ),
        // No such service, action, command.
        (&["status", "nobody"], 5, "unknown_service"),
        (&["act", "Translator", "nope"], 5, "unknown_action"),
        (&["command", "batcher", "nope"], 5, "unknown_command"),
        // The handler outlives the timeout.
        (
            &[
                "act",
                "Translator",
                "sleep",
                "--params",
                "60000",
                "--timeout",
                "50ms",
            ],
            7,
            "timeout",
        ),
        // A malformed duration.
        (&["trigger", "batcher", "--timeout", "soon"], 2, "soon"),
    ];
    for (args, code, says) in cases {
        let run = node.sora(args).await;
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }

    // A missing or wrong token.
    let url = node.url.clone();
    let run = sora(&["--url", &url, "trigger", "batcher"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    let run = sora(&["--url", &url, "--token", "guess", "trigger", "batcher"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(!node.journal.entries().contains(&"tick".to_owned()));

    // Nothing listens any more.
    node.stop().await;
    let run = sora(&["--url", &url, "services"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("cannot reach"), "{run:?}");
}

#[tokio::test]
async fn health_exits_non_zero_when_unhealthy() {
    let node = node().await;
    let run = node.sora(&["health"]).await;
    assert!(run.ok().starts_with("healthy\n"), "{run:?}");
    node.sora(&["health", "--live"]).await.ok();
    node.sora(&["health", "--ready"]).await.ok();
    node.stop().await;

    let sick = Runtime::builder()
        .service(Sick::default)
        .http(HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", sick.http_address().unwrap());
    let run = sora(&["--url", &url, "--json", "health"]).await;
    assert_eq!(run.code, 6, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["services"][0]["reason"], "the disk is full");
    sick.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_are_followed_from_where_the_caller_left_off() {
    let node = node().await;
    node.sora(&["trigger", "batcher"]).await.ok();
    node.sora(&["trigger", "batcher"]).await.ok();
    eventually(|| async { node.journal.count("tick") == 2 }).await;

    // Two events are kept by the node; the third comes while the command follows.
    let url = node.url.clone();
    let follower = tokio::spawn(async move {
        sora(&[
            "--url",
            &url,
            "--token",
            TOKEN,
            "--json",
            "events",
            "--service",
            "batcher",
            "--since",
            "0",
            "--count",
            "3",
        ])
        .await
    });
    node.sora(&["trigger", "batcher"]).await.ok();
    let run = within(follower).await.unwrap();
    let events: Vec<Value> = run
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{run:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(events.iter().all(|e| e["event"] == "ticked"));
    // `0` is no id of this node's: it said so, and gave everything it kept.
    assert!(run.stderr.contains("\"restarted\":true"), "{run:?}");

    // For people: one line per event. An id resumes after it.
    let first = events[0]["id"].as_str().unwrap();
    let run = node
        .sora(&["events", "--since", first, "--count", "1"])
        .await;
    let second = events[1]["id"].as_str().unwrap();
    assert!(
        run.ok().starts_with(&format!("#{second} batcher ticked")),
        "{run:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_with_the_last_event_id() {
    use axum::http::HeaderMap;

    // A node that ends every stream after one event, and resumes after the id it is given.
    async fn events(headers: HeaderMap) -> String {
        let last: u64 = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let id = last + 1;
        let data = json!({"id": id, "service": "s", "event": "e", "payload": null});
        format!("id: {id}\nevent: e\ndata: {data}\n\n")
    }
    let app = axum::Router::new().route("/api/events", axum::routing::get(events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let run = within(sora(&["--url", &url, "--json", "events", "--count", "3"])).await;
    let ids: Vec<u64> = run
        .ok()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    server.abort();
}

/// A durable action that fails while `broken` is set.
#[derive(serde::Serialize, serde::Deserialize)]
struct Deliver {
    to: String,
}

impl sora::Action for Deliver {
    const NAME: &'static str = "deliver";
    type Reply = String;
}

struct Courier {
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Service for Courier {
    fn define(def: &mut sora::Definition<Self>) {
        def.name("courier").durable::<Deliver>(sora::Retry::none());
    }
}

impl sora::Handler<Deliver> for Courier {
    async fn handle(&self, d: Deliver, _: &Context) -> Result<String, sora::BoxError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("no road to {}", d.to).into());
        }
        Ok(format!("delivered to {}", d.to))
    }
}

#[tokio::test]
async fn jobs_are_listed_shown_retried_and_discarded_from_the_cli() {
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let runtime = Runtime::builder()
        .store(sora::store::RedbStore::in_memory().unwrap())
        .service({
            let broken = broken.clone();
            move || Courier {
                broken: broken.clone(),
            }
        })
        .http(HttpConfig::local(0).token(TOKEN))
        .start()
        .await
        .unwrap();
    let node = Node {
        url: format!("http://{}", runtime.http_address().unwrap()),
        runtime,
        journal: Journal::default(),
    };
    let jobs = node.runtime.jobs().unwrap();

    let accepted = node
        .sora(&[
            "--json",
            "act",
            "courier",
            "deliver",
            "--params",
            r#"{"to":"ada"}"#,
            "--key",
            "d-1",
        ])
        .await
        .json();
    assert_eq!(accepted["new"], true);
    let id = accepted["id"].as_str().unwrap().to_owned();
    let _ = jobs.wait(id.parse().unwrap()).await;
    while jobs.get(id.parse().unwrap()).unwrap().finished.is_none() {
        tokio::task::yield_now().await;
    }

    let table = node.sora(&["jobs", "--state", "dead"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().take(5).collect::<Vec<_>>(),
        ["ID", "SERVICE", "ACTION", "STATE", "ATTEMPTS"]
    );
    assert!(lines[1].starts_with(&id), "{table:?}");
    assert!(
        lines[1].contains("dead") && lines[1].contains("no road to ada"),
        "{table:?}"
    );
    let shown = node.sora(&["job", &id]).await;
    assert!(shown.ok().contains("params.to"), "{shown:?}");

    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let retried = node.sora(&["retry", &id]).await;
    assert_eq!(retried.ok().trim(), format!("{id}: is ready again"));
    assert_eq!(
        jobs.wait(id.parse().unwrap()).await.unwrap(),
        json!("delivered to ada")
    );
    // Waiting from the CLI gives the reply.
    let reply = node
        .sora(&[
            "--json",
            "act",
            "courier",
            "deliver",
            "--params",
            r#"{"to":"bo"}"#,
            "--wait",
        ])
        .await
        .json();
    assert_eq!(reply, json!("delivered to bo"));

    while jobs.get(id.parse().unwrap()).unwrap().finished.is_none() {
        tokio::task::yield_now().await;
    }
    let discarded = node.sora(&["discard", &id]).await;
    assert_eq!(discarded.ok().trim(), format!("{id}: is discarded"));
    let gone = node.sora(&["job", &id]).await;
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("unknown job"), "{gone:?}");
    let bad = node.sora(&["job", "not-an-id"]).await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not a job id"), "{bad:?}");
    node.stop().await;
}

/// Keeps state, and nothing else.
struct Keeper;

impl Service for Keeper {
    fn define(def: &mut sora::Definition<Self>) {
        def.name("keeper").state();
    }
}

#[tokio::test]
async fn state_is_shown_page_by_page_and_cleared_from_the_cli() {
    let runtime = Runtime::builder()
        .store(sora::store::RedbStore::in_memory().unwrap())
        .service(|| Keeper)
        .http(HttpConfig::local(0).token(TOKEN))
        .start()
        .await
        .unwrap();
    let node = Node {
        url: format!("http://{}", runtime.http_address().unwrap()),
        runtime,
        journal: Journal::default(),
    };
    let state = node.runtime.state("keeper");
    state.set("cursor", &42).await.unwrap();
    state.set("last", &json!({ "ok": true })).await.unwrap();
    state.set("note", &"x".repeat(200)).await.unwrap();

    let table = node.sora(&["state", "keeper", "--limit", "2"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["KEY", "VERSION", "WRITTEN", "VALUE"]
    );
    assert!(
        lines[1].starts_with("cursor") && lines[1].ends_with("42"),
        "{table:?}"
    );
    assert!(lines[2].starts_with("last"), "{table:?}");
    assert_eq!(lines[3], "more: sora state keeper --after=last");
    let rest = node.sora(&["state", "keeper", "--after=last"]).await;
    let row = rest.ok().lines().nth(1).unwrap().to_owned();
    assert!(row.starts_with("note") && row.ends_with('…'), "cut: {row}");
    let page = node.sora(&["--json", "state", "keeper"]).await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);

    let one = node.sora(&["state", "keeper", "last"]).await;
    let shown: Vec<&str> = one.ok().lines().collect();
    assert!(
        shown[0].starts_with("key") && shown[0].ends_with("last"),
        "{one:?}"
    );
    assert!(shown[1].starts_with("version"), "{one:?}");
    assert_eq!(shown[3], "value    {", "the value whole, indented: {one:?}");
    assert!(shown[4].trim() == r#""ok": true"#, "{one:?}");
    // A key with a newline is escaped; one with a leading dash and a space, quoted.
    state.set("-a\nkey", &1).await.unwrap();
    state.set("-b key", &1).await.unwrap();
    let table = node.sora(&["state", "keeper", "--limit", "1"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[1].starts_with(r#""-a\nkey""#), "{table:?}");
    assert!(
        lines[2].starts_with(r#"more: after "-a\nkey""#),
        "{table:?}"
    );
    let table = node
        .sora(&["state", "keeper", "--limit", "1", "--after=-a\nkey"])
        .await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines[2], "more: sora state keeper --after='-b key'");
    state.remove("-a\nkey").await.unwrap();
    state.remove("-b key").await.unwrap();
    let removed = node.sora(&["state", "keeper", "cursor", "--clear"]).await;
    assert_eq!(
        removed.ok().trim(),
        "keeper: keeps nothing under `cursor` now"
    );
    let missing = node.sora(&["state", "keeper", "cursor"]).await;
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("keeps nothing under"),
        "{missing:?}"
    );
    let cleared = node.sora(&["state", "keeper", "--clear"]).await;
    assert_eq!(cleared.ok().trim(), "keeper: cleared 2 values");
    assert!(state.entries(None, 10).unwrap().is_empty());
    node.stop().await;
}
