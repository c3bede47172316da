//! The HTTP control plane, against a real server on 127.0.0.1 with a real HTTP client.

#![cfg(feature = "http")]

#[path = "support/common.rs"]
mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sora::http::HttpConfig;
use sora::{BoxError, Command, Context, Definition, Error, Runtime, Schedule, Service};
use support::*;

/// Periodic and pokable: records its runs and commands.
struct Batcher {
    journal: Journal,
}

impl Service for Batcher {
    fn define(def: &mut Definition<Self>) {
        def.name("batcher")
            .periodic(Schedule::every(Duration::from_secs(3600)))
            .command(Command::PROCESS_BATCH)
            .command(Command::CHECK_QUEUE)
            .command("reindex");
    }

    async fn tick(&self, _: &Context) -> Result<(), BoxError> {
        self.journal.push("tick");
        Ok(())
    }

    async fn command(&self, command: Command, _: &Context) -> Result<(), BoxError> {
        self.journal.push(match command {
            Command::ProcessBatch { size, filter } => format!("batch:{size:?}:{filter:?}"),
            Command::CheckQueue => "check-queue".into(),
            Command::Custom { name, args } => format!("{name}:{args:?}"),
            other => format!("{other:?}"),
        });
        Ok(())
    }
}

/// Registered, disabled.
#[derive(Default)]
struct Off;

impl Service for Off {
    fn define(def: &mut Definition<Self>) {
        def.enabled(false);
    }
}

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

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
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
    let (_, _, whole) = post_code(
        &node,
        "/api/services/batcher/process-batch",
        "{\"batchSize\": -1}",
    )
    .await;
    assert_eq!(whole["field"], "batchSize");
    // The service is still there after all of it.
    let (status, _) = node.get("/api/services/Translator/status").await;
    assert_eq!(status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn a_token_guards_every_call_and_leaves_reading_open() {
    let node = node().await;
    let path = format!("{}/api/services/batcher/trigger", node.base);
    let client = &node.client;
    let (status, body) = read(client.post(&path).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let wrong = client
        .post(&path)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(read(wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = client.post(&path).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(read(right).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        node.journal.count("tick"),
        1,
        "only the authorized trigger ran"
    );
    assert_eq!(node.get("/api/services").await.0, StatusCode::OK);
    assert_eq!(node.get("/health").await.0, StatusCode::OK);
    node.stop().await;
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
    node.stop().await;
    let refused = within(async {
        loop {
            match client.get(format!("{base}/health/live")).send().await {
                Err(err) => break err,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
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
