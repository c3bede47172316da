//! The HTTP control plane, against a real server on 127.0.0.1 with a real HTTP client.

#![cfg(feature = "http")]

#[path = "support/plane.rs"]
mod plane;
#[path = "support/common.rs"]
mod support;

use futures::StreamExt;
use plane::{Batcher, Off};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sora::http::HttpConfig;
use sora::{Error, Runtime};
use support::*;

const TOKEN: &str = "let-me-in";

struct Node {
    runtime: Runtime,
    base: String,
    client: reqwest::Client,
    journal: Journal,
}

impl Node {
    async fn start(config: HttpConfig) -> Node {
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
            .http(config)
            .start()
            .await
            .unwrap();
        let address = runtime.http_address().expect("the control plane is served");
        Node {
            runtime,
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            journal,
        }
    }

    /// A read, with the token (which every route of a node with one needs).
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn stop(self) {
        self.runtime.shutdown().await.unwrap();
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

async fn node() -> Node {
    Node::start(HttpConfig::local(0).token(TOKEN)).await
}

#[tokio::test]
async fn services_are_listed_described_and_reported() {
    let node = node().await;
    let (status, body) = node.get("/api/services").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    for name in ["Translator", "batcher", "Off"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let batcher = &body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "batcher")
        .unwrap();
    assert_eq!(batcher["kinds"], json!(["periodic", "pokable"]));
    assert_eq!(batcher["health"]["status"], "healthy");

    let (status, info) = node.get("/api/services/Translator").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        info["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("translate"))
    );
    assert_eq!(info["events"], json!(["TranslationCompleted"]));

    let (status, report) = node.get("/api/services/batcher/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["state"], "idle");
    assert_eq!(report["runs"], 0);

    let (status, off) = node.get("/api/services/Off/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(off["state"], "disabled");
    node.stop().await;
}

#[tokio::test]
async fn an_action_takes_json_and_answers_json_with_its_correlation_id() {
    let node = node().await;
    let response = node
        .post("/api/services/Translator/actions/translate?priority=5&timeoutMs=5000")
        .header("X-Correlation-Id", "req-42")
        .json(&json!({"text": "olá", "to": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "req-42");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!("[en] olá"));

    // The id reached the handler.
    let response = node
        .post("/api/services/Translator/actions/who-am-i")
        .header("X-Correlation-Id", "req-43")
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await, (StatusCode::OK, json!("req-43")));
    let (_, status) = node.get("/api/services/Translator/status").await;
    assert_eq!(status["calls"], 2);
    node.stop().await;
}

#[tokio::test]
async fn commands_run_and_answer_no_content() {
    let node = node().await;
    let send = |path: &'static str, body: Option<Value>| {
        let mut request = node.post(path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    let no_content = (StatusCode::NO_CONTENT, Value::Null);
    assert_eq!(
        send("/api/services/batcher/trigger", None).await,
        no_content
    );
    let body = json!({"batchSize": 50, "filter": "old"});
    let done = send("/api/services/batcher/process-batch", Some(body)).await;
    assert_eq!(done, no_content);
    let done = send("/api/services/batcher/process-batch", None).await;
    assert_eq!(done, no_content);
    let done = send("/api/services/batcher/check-queue", None).await;
    assert_eq!(done, no_content);
    let done = send(
        "/api/services/batcher/commands/reindex",
        Some(json!({"full": true})),
    );
    assert_eq!(done.await, no_content);
    assert_eq!(
        node.journal.entries(),
        [
            "tick",
            "batch:Some(50):Some(\"old\")",
            "batch:None:None",
            "check-queue",
            "reindex:Some(\"{\\\"full\\\":true}\")",
        ]
    );
    let (_, status) = node.get("/api/services/batcher/status").await;
    assert_eq!(status["runs"], 1);
    node.stop().await;
}

/// Sends a POST with `body` (raw) and returns the status and the error's code.
async fn post_code(node: &Node, path: &str, body: &str) -> (StatusCode, String, Value) {
    let response = node
        .post(path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    (status, code, body)
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_stable_code() {
    let node = Node::start(HttpConfig::local(0).token(TOKEN).body_limit(256)).await;
    let translate = "/api/services/Translator/actions/translate";
    let cases: Vec<(String, String, StatusCode, &str)> = vec![
        (
            "/api/services/Nobody/actions/translate".into(),
            "{}".into(),
            StatusCode::NOT_FOUND,
            "unknown_service",
        ),
        (
            "/api/services/Translator/actions/fly".into(),
            "{}".into(),
            StatusCode::NOT_FOUND,
            "unknown_action",
        ),
        (
            "/api/services/batcher/commands/launch".into(),
            String::new(),
            StatusCode::NOT_FOUND,
            "unknown_command",
        ),
        (
            translate.into(),
            "{\"text\": 3, \"to\": \"en\"}".into(),
            StatusCode::BAD_REQUEST,
            "bad_parameters",
        ),
        (
            translate.into(),
            "{\"text\": ".into(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            format!("{translate}?priority=high"),
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/services/batcher/process-batch".into(),
            "{\"batchSize\": -1}".into(),
            StatusCode::BAD_REQUEST,
            "bad_parameters",
        ),
        (
            format!("{translate}?timeoutMs=0"),
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/services/%FF%FE/trigger".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            translate.into(),
            format!("{{\"text\": \"{}\", \"to\": \"en\"}}", "a".repeat(1000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/api/services/Off/trigger".into(),
            String::new(),
            StatusCode::CONFLICT,
            "service_disabled",
        ),
        (
            "/api/services/Translator/actions/refuse".into(),
            "null".into(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "action_failed",
        ),
        (
            "/api/services/Translator/actions/sleep?timeoutMs=20".into(),
            "60000".into(),
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
        ),
        (
            "/api/nowhere".into(),
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/services".into(),
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "/api/services/batcher/status".into(),
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "/api/services/batcher/launch".into(),
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, body, want_status, want_code) in cases {
        let (status, code, whole) = post_code(&node, &path, &body).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{path}: {whole}"
        );
        assert!(
            whole["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{whole}"
        );
    }
    // The field at fault is named.
    let (_, _, whole) = post_code(&node, translate, "{\"text\": 3, \"to\": \"en\"}").await;
    assert_eq!(whole["field"], "text");
    // The same for a built-in command sent by its name, which is read as its own route reads it.
    for path in [
        "/api/services/batcher/process-batch",
        "/api/services/batcher/commands/process-batch",
    ] {
        let (status, code, whole) = post_code(&node, path, "{\"batchSize\": -1}").await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "bad_parameters")
        );
        assert_eq!(whole["field"], "batchSize", "{path}");
    }
    // The service is still there after all of it.
    let (status, _) = node.get("/api/services/Translator/status").await;
    assert_eq!(status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn a_token_guards_every_route_but_the_probes() {
    let node = Node::start(HttpConfig::local(0).token(TOKEN).read_token("only-looking")).await;
    let trigger = format!("{}/api/services/batcher/trigger", node.base);
    let client = &node.client;
    let (status, body) = read(client.post(&trigger).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let wrong = client.post(&trigger).bearer_auth("guess").send().await;
    assert_eq!(read(wrong.unwrap()).await.0, StatusCode::UNAUTHORIZED);
    // The read-only token may not act.
    let reader = client
        .post(&trigger)
        .bearer_auth("only-looking")
        .send()
        .await;
    let (status, body) = read(reader.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    // The scheme's case does not matter (RFC 9110), the token's does.
    let lower = client
        .post(&trigger)
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await;
    assert_eq!(read(lower.unwrap()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        node.journal.count("tick"),
        1,
        "only the authorized trigger ran"
    );

    // Every read needs a token: either opens it.
    for path in [
        "/api/services",
        "/api/services/batcher",
        "/api/services/batcher/status",
        "/api/events",
        "/api/openapi.json",
    ] {
        let url = format!("{}{path}", node.base);
        let open = client.get(&url).send().await.unwrap();
        assert_eq!(open.status(), StatusCode::UNAUTHORIZED, "{path}");
        for token in [TOKEN, "only-looking"] {
            let seen = client.get(&url).bearer_auth(token).send().await.unwrap();
            assert_eq!(seen.status(), StatusCode::OK, "{path} with {token}");
        }
    }
    // The probes stay open, as `open_probes` is on by default.
    for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
        let probe = client.get(format!("{}{path}", node.base)).send().await;
        assert_eq!(probe.unwrap().status(), StatusCode::OK, "{path}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_read_only_token_needs_a_token_to_act_too() {
    let err = Runtime::builder()
        .http(HttpConfig::local(0).read_token("only-looking"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "http.read_token"),
        "{err:?}"
    );
}

#[tokio::test]
async fn without_a_token_calls_are_open() {
    let node = Node::start(HttpConfig::local(0)).await;
    let path = format!("{}/api/services/batcher/trigger", node.base);
    let response = node.client.post(&path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    node.stop().await;
}

#[tokio::test]
async fn health_live_and_ready() {
    let node = node().await;
    let (status, body) = node.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["services"].as_array().unwrap().len(), 3);
    assert_eq!(
        node.get("/health/live").await,
        (StatusCode::OK, json!({"status": "live"}))
    );
    assert_eq!(
        node.get("/health/ready").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );

    // A crashed service that is not restarted makes the whole unhealthy: 503.
    let response = node
        .post("/api/services/Translator/actions/explode")
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let translator = node.runtime.service::<Translator>().unwrap();
    within(async {
        while translator.status().await.unwrap().restarts == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_taken_port_fails_the_start_before_any_service_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let journal = Journal::default();
    let err = Runtime::builder()
        .service(translator(&journal, None))
        .http(HttpConfig::local(port))
        .start()
        .await
        .unwrap_err();
    match err {
        Error::StartupFailed { service, reason } => {
            assert_eq!(service, "http");
            assert!(reason.contains(&port.to_string()), "{reason}");
        }
        other => panic!("expected StartupFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn the_server_stops_with_the_runtime() {
    let node = node().await;
    let base = node.base.clone();
    let client = node.client.clone();
    // An open event stream does not hold the shutdown up: it ends with the runtime.
    let mut events = SseReader::open(&node, "/api/events", None).await;
    node.stop().await;
    let ended = within(events.body.next()).await;
    assert!(ended.is_none_or(|chunk| chunk.is_err()), "the stream ended");
    // Once shutdown has returned, nothing listens any more.
    let refused = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect() || refused.is_request(), "{refused}");
}

#[tokio::test]
async fn the_configuration_file_can_serve_the_plane() {
    let config = sora::config::Config::toml(
        "[http]\naddress = \"127.0.0.1:0\"\ntoken = \"from-file\"\nbody_limit = 64\n",
    );
    assert!(
        !format!("{config:?}").contains("from-file"),
        "a token never shows in Debug"
    );
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service(translator(&journal, None))
        .config(config)
        .start()
        .await
        .unwrap();
    let address = runtime.http_address().expect("served from [http]");
    assert!(address.ip().is_loopback());
    let url = format!("http://{address}/api/services/Translator/actions/who-am-i");
    let client = reqwest::Client::new();
    let denied = client.post(&url).send().await.unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    let allowed = client
        .post(&url)
        .bearer_auth("from-file")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let big = client
        .post(&url)
        .bearer_auth("from-file")
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    runtime.shutdown().await.unwrap();
}

#[test]
#[allow(clippy::result_large_err)] // figment's own error type
fn sora_token_outranks_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "sora.toml",
            "[http]\naddress = \"127.0.0.1:0\"\ntoken = \"old\"\n",
        )?;
        jail.set_env("SORA_TOKEN", "new");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let journal = Journal::default();
            let node = Runtime::builder()
                .service(translator(&journal, None))
                .config(sora::config::Config::load())
                .start()
                .await
                .unwrap();
            let address = node.http_address().unwrap();
            let url = format!("http://{address}/api/services/Translator/actions/who-am-i");
            let client = reqwest::Client::new();
            for (token, want) in [("old", StatusCode::UNAUTHORIZED), ("new", StatusCode::OK)] {
                let response = client.post(&url).bearer_auth(token).send().await.unwrap();
                assert_eq!(response.status(), want, "token {token}");
            }
            node.shutdown().await.unwrap();
        });
        Ok(())
    });
}

#[tokio::test]
async fn pause_and_resume_show_in_status() {
    let node = node().await;
    let send = |path: &'static str| {
        let request = node.post(path);
        async move { read(request.send().await.unwrap()).await }
    };
    let no_content = (StatusCode::NO_CONTENT, Value::Null);
    assert_eq!(send("/api/services/batcher/pause").await, no_content);
    assert_eq!(
        node.get("/api/services/batcher/status").await.1["paused"],
        true
    );
    assert_eq!(send("/api/services/batcher/resume").await, no_content);
    assert_eq!(
        node.get("/api/services/batcher/status").await.1["paused"],
        false
    );
    let (status, body) = send("/api/services/Translator/pause").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_command"))
    );
    let (status, body) = send("/api/services/Off/pause").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("service_disabled"))
    );
    node.stop().await;
}

/// One server-sent event as a client reads it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Sse {
    /// The event's data, as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Reads server-sent events from a streaming response.
struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    async fn open(node: &Node, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = node
            .client
            .get(format!("{}{path}", node.base))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self) -> Sse {
        within(async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut sse = Sse::default();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            sse.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            sse.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            sse.data.push_str(v);
                        }
                    }
                    if sse.event.is_some() || !sse.data.is_empty() {
                        return sse;
                    }
                    continue;
                }
                let chunk = self.body.next().await.expect("the stream ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
    }
}

async fn translate(node: &Node, text: &str) {
    translate_en(&node.runtime, text).await;
}

/// An event id's incarnation and sequence.
fn split(id: Option<&str>) -> (String, u64) {
    let (incarnation, seq) = id
        .expect("an id")
        .split_once('-')
        .expect("incarnation-sequence");
    (incarnation.to_owned(), seq.parse().expect("a sequence"))
}

#[tokio::test]
async fn events_stream_live_with_ids_and_filters() {
    let node = node().await;
    let mut all = SseReader::open(&node, "/api/events", None).await;
    let mut translations = SseReader::open(&node, "/api/events?service=Translator", None).await;
    let mut ticks = SseReader::open(&node, "/api/events?event=ticked", None).await;
    node.runtime
        .service::<Batcher>()
        .unwrap()
        .trigger()
        .await
        .unwrap();
    translate(&node, "olá").await;

    let first = all.next().await;
    assert_eq!(first.event.as_deref(), Some("ticked"));
    let second = all.next().await;
    assert_eq!(second.event.as_deref(), Some("TranslationCompleted"));
    let data = second.json();
    assert_eq!(data["service"], "Translator");
    assert_eq!(data["payload"], json!({"text": "olá", "to": "en"}));
    assert_eq!(second.id.as_deref(), data["id"].as_str());
    // `<incarnation>-<sequence>`: one incarnation, increasing sequences.
    let (a, b) = (split(first.id.as_deref()), split(second.id.as_deref()));
    assert_eq!(a.0, b.0);
    assert_eq!(data["seq"], b.1);
    assert!(a.1 < b.1, "ids increase");

    // The filtered streams saw only theirs.
    assert_eq!(
        translations.next().await.event.as_deref(),
        Some("TranslationCompleted")
    );
    assert_eq!(ticks.next().await.event.as_deref(), Some("ticked"));

    let (status, body) = node.get("/api/events?service=Nobody").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_service"))
    );
    node.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed() {
    let node = node().await;
    let mut client = SseReader::open(&node, "/api/events", None).await;
    translate(&node, "one").await;
    let seen = client.next().await.id.unwrap();
    drop(client);
    translate(&node, "two").await;
    translate(&node, "three").await;
    // The client comes back with the last id it saw.
    let mut watcher = SseReader::open(&node, "/api/events", Some(&seen)).await;
    let missed = [watcher.next().await, watcher.next().await];
    let texts: Vec<Value> = missed
        .iter()
        .map(|e| e.json()["payload"]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("two"), json!("three")]);
    translate(&node, "four").await;
    let live = watcher.next().await.json();
    assert_eq!(live["payload"]["text"], "four", "then it follows live");
    node.stop().await;
}

#[tokio::test]
async fn a_gap_larger_than_the_ring_is_reported() {
    let node = node().await;
    let mut first = SseReader::open(&node, "/api/events", None).await;
    translate(&node, "0").await;
    let start = first.next().await.id.unwrap();
    // More events than the ring keeps (1024).
    for n in 1..=1100 {
        translate(&node, &n.to_string()).await;
    }
    let mut last = String::new();
    for _ in 0..1100 {
        last = first.next().await.id.unwrap();
    }
    let mut late = SseReader::open(&node, "/api/events", Some(&start)).await;
    let gap = late.next().await;
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let gap = gap.json();
    let (incarnation, start) = split(Some(&start));
    let (_, last) = split(Some(&last));
    assert_eq!(gap["from"], start + 1);
    let to = gap["to"].as_u64().unwrap();
    assert_eq!(to, last - 1024, "everything older than the ring's oldest");
    assert_eq!(gap.get("restarted"), None);
    // Then the ring, from its oldest event.
    let next = late.next().await;
    assert_eq!(next.id, Some(format!("{incarnation}-{}", to + 1)));
    node.stop().await;
}

#[tokio::test]
async fn any_last_event_id_is_taken_without_harm() {
    let node = node().await;
    // Nothing emitted yet: a bare number, or an id of another incarnation of the node, gets a
    // `gap` that says the node restarted, then what comes.
    for id in ["0", "18446744073709551615", "ffffffff-18446744073709551615"] {
        let mut client = SseReader::open(&node, "/api/events", Some(id)).await;
        let gap = client.next().await;
        assert_eq!(gap.event.as_deref(), Some("gap"), "{id}");
        assert_eq!(gap.json(), json!({"restarted": true}), "{id}");
        translate(&node, id).await;
        let event = client.next().await;
        assert_eq!(event.event.as_deref(), Some("TranslationCompleted"), "{id}");
    }
    // An id of this incarnation past the newest: only what comes.
    let mut watcher = SseReader::open(&node, "/api/events", None).await;
    translate(&node, "seen").await;
    let (incarnation, _) = split(watcher.next().await.id.as_deref());
    let ahead = format!("{incarnation}-18446744073709551615");
    let mut client = SseReader::open(&node, "/api/events", Some(&ahead)).await;
    translate(&node, "next").await;
    assert_eq!(client.next().await.json()["payload"]["text"], "next");
    node.stop().await;
}

#[tokio::test]
async fn a_bad_last_event_id_is_refused() {
    let node = node().await;
    let response = node
        .client
        .get(format!("{}/api/events", node.base))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    node.stop().await;
}

/// The value of the sample `name{labels}` in Prometheus text, if it is there.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_move_when_actions_run() {
    let node = node().await;
    let scrape = || async {
        let response = node
            .client
            .get(format!("{}/metrics", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        response.text().await.unwrap()
    };
    let before = scrape().await;
    let calls = "sora_service_calls_total{service=\"Translator\"}";
    assert_eq!(sample(&before, calls), Some(0.0));
    assert_eq!(
        sample(&before, "sora_service_up{service=\"Translator\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "sora_service_up{service=\"Off\"}"),
        Some(0.0)
    );

    translate(&node, "one").await;
    translate(&node, "two").await;
    let refused = node
        .post("/api/services/Translator/actions/refuse")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    node.runtime
        .service::<Batcher>()
        .unwrap()
        .trigger()
        .await
        .unwrap();

    let after = scrape().await;
    assert_eq!(sample(&after, calls), Some(3.0));
    assert_eq!(
        sample(
            &after,
            "sora_service_failures_total{service=\"Translator\"}"
        ),
        Some(1.0)
    );
    let translate = "{service=\"Translator\",action=\"translate\"}";
    assert_eq!(
        sample(&after, &format!("sora_action_calls_total{translate}")),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "sora_action_failures_total{service=\"Translator\",action=\"refuse\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            &format!("sora_action_duration_seconds_count{translate}")
        ),
        Some(2.0)
    );
    assert!(after.contains("sora_action_duration_seconds_bucket{service=\"Translator\",action=\"translate\",le=\"0.0001\"}"), "{after}");
    assert_eq!(
        sample(&after, "sora_service_runs_total{service=\"batcher\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "sora_events_emitted_total{service=\"Translator\"}"),
        Some(2.0)
    );
    node.stop().await;
}

#[tokio::test]
async fn probes_can_require_the_token_too() {
    let node = Node::start(HttpConfig::local(0).token(TOKEN).open_probes(false)).await;
    for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
        let url = format!("{}{path}", node.base);
        let open = node.client.get(&url).send().await.unwrap();
        assert_eq!(open.status(), StatusCode::UNAUTHORIZED, "{path}");
        let allowed = node
            .client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), StatusCode::OK, "{path}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_and_a_stopping_service_409() {
    let journal = Journal::default();
    let gate = Gate::default();
    let runtime = Runtime::builder()
        .service_with(translator(&journal, Some(&gate)), |def| {
            def.queue_limit(1);
        })
        .http(HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_address().unwrap());
    let client = reqwest::Client::new();
    let work = |label: &'static str| {
        let request = client
            .post(format!("{base}/api/services/Translator/actions/work"))
            .json(&label);
        tokio::spawn(async move { read(request.send().await.unwrap()).await })
    };
    let translator = runtime.service::<Translator>().unwrap();

    // One call holds the only slot, one waits: the queue is at its limit of one.
    let running = work("a");
    until(|| async { journal.count("begin:a") == 1 }).await;
    let queued = work("b");
    until(|| async { translator.status().await.unwrap().queue_depth == 1 }).await;
    let (status, body) = within(work("c")).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "overloaded");
    let status = translator.status().await.unwrap();
    assert_eq!((status.rejected, status.queue_depth), (1, 1));
    let info = translator.info().await.unwrap();
    assert_eq!(info.queue_limit, Some(1));
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sora_service_rejected_total{service=\"Translator\"} 1"),
        "{metrics}"
    );

    // Shutting down: the held call finishes, new calls conflict with the stopping service.
    let handle = runtime.handle();
    let stopping = tokio::spawn(async move { runtime.shutdown().await });
    until(|| async { handle.is_shutting_down() }).await;
    let (status, body) = within(work("d")).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "shutting_down");
    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::SERVICE_UNAVAILABLE);
    gate.open(2);
    assert_eq!(within(running).await.unwrap().0, StatusCode::OK);
    // The queued call was refused, or ran, as the shutdown reached it: never lost.
    let (status, _) = within(queued).await.unwrap();
    assert!(
        [StatusCode::OK, StatusCode::CONFLICT].contains(&status),
        "{status}"
    );
    within(stopping).await.unwrap().unwrap();
}

/// Whether `value` fits `schema`, for the parts of JSON Schema the OpenAPI document uses:
/// `$ref`, `type`, `properties`, `required`, `items`, `enum`, `oneOf`, `allOf`. Stricter than
/// JSON Schema in one way: outside `allOf`, an object may not carry a key the schema does not
/// document, so that an answer cannot grow fields the document does not know.
fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    fits_in(doc, schema, value, at, true)
}

fn fits_in(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    closed: bool,
) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return fits_in(doc, &doc["components"]["schemas"][name], value, at, closed);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|s| fits_in(doc, s, value, at, closed).is_ok())
            .count();
        if matching != 1 {
            return Err(format!("{at}: {matching} of oneOf fit {value}"));
        }
    }
    // Each part sees only its own keys: together they must document every key.
    for part in schema["allOf"].as_array().into_iter().flatten() {
        fits_in(doc, part, value, at, false)?;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits_type = types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
    if !fits_type {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let Value::Object(object) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: `{key}` is missing from {value}"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, field) in object {
                match properties.get(key) {
                    Some(property) => fits(doc, property, field, &format!("{at}.{key}"))?,
                    None if closed => return Err(format!("{at}: `{key}` is not documented")),
                    None => {}
                }
            }
        }
    }
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            fits_in(doc, &schema["items"], item, &format!("{at}[{i}]"), true)?;
        }
    }
    Ok(())
}

/// Checks an answer against what the document says of `method path` for its status: the status
/// is documented, and a JSON body fits the documented schema.
async fn answers_as_documented(
    doc: &Value,
    template: &str,
    method: &str,
    response: reqwest::Response,
) -> StatusCode {
    let status = response.status();
    let documented = &doc["paths"][template][method]["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "{method} {template} answered {status}, which the document does not list"
    );
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if kind.starts_with("application/json") {
        let body: Value = response.json().await.unwrap();
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON body documented"
        );
        if let Err(err) = fits(doc, schema, &body, "body") {
            panic!("{method} {template} {status}: {err}");
        }
    } else if status != StatusCode::NO_CONTENT {
        let documented_kinds: Vec<&String> = documented["content"]
            .as_object()
            .map(|c| c.keys().collect())
            .unwrap_or_default();
        assert!(
            documented_kinds
                .iter()
                .any(|k| kind.starts_with(k.split(';').next().unwrap())),
            "{method} {template} {status}: {kind} is not among {documented_kinds:?}"
        );
    }
    status
}

#[tokio::test]
async fn the_openapi_document_describes_every_answer() {
    let node = node().await;
    let (status, doc) = node.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // What docs/operations.md lists is what the document describes.
    let operations = include_str!("../docs/operations.md");
    let mut listed: Vec<(String, String)> = operations
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let method = *cells.get(1)?;
            let path = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            ["GET", "POST", "DELETE"]
                .contains(&method)
                .then(|| (method.to_lowercase(), path.to_owned()))
        })
        .collect();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    listed.sort();
    documented.sort();
    assert_eq!(
        listed, documented,
        "docs/operations.md and the OpenAPI document differ"
    );

    // Every operation, with good input and with bad: each answer is documented and fits.
    let good = |template: &str| {
        template
            .replace("{name}/actions", "Translator/actions")
            .replace("{action}", "translate")
            .replace("{command}", "reindex")
            .replace("{name}", "batcher")
    };
    let body = |path: &str| {
        if path.contains("/actions/") {
            json!({"text": "hello", "to": "en"})
        } else if path.ends_with("process-batch") {
            json!({"batchSize": 3})
        } else {
            Value::Null
        }
    };
    for (method, template) in &documented {
        let path = good(template);
        let mut cases = vec![(path.clone(), Some(TOKEN), body(&path))];
        if template.contains("{name}") {
            let unknown = path
                .replace("/batcher", "/nobody")
                .replace("/Translator", "/nobody");
            cases.push((unknown, Some(TOKEN), Value::Null));
        }
        if method != "get" {
            cases.push((path.clone(), None, body(&path)));
            cases.push((format!("{path}?priority=high"), Some(TOKEN), body(&path)));
        }
        if template.contains("{action}") {
            cases.push((path.clone(), Some(TOKEN), json!({"text": 1})));
        }
        for (path, token, body) in cases {
            let url = format!("{}{path}", node.base);
            let mut request = match method.as_str() {
                "get" => node.client.get(url),
                "delete" => node.client.delete(url),
                _ => node.client.post(url),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if !body.is_null() {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            if template == "/api/events" && response.status() == StatusCode::OK {
                // A stream that stays open: its type is what can be checked.
                let kind = response.headers()["content-type"].to_str().unwrap();
                assert!(kind.starts_with("text/event-stream"), "{kind}");
                continue;
            }
            answers_as_documented(&doc, template, method, response).await;
        }
    }

    // A path the document does not list is not served.
    assert_eq!(
        node.post("/api/services/batcher/reboot")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    node.stop().await;
}
