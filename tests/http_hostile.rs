//! The control plane and the CLI against clients and nodes that misbehave: slow, half-sent,
//! never finishing, too many, too early, too late. Real sockets, written to by hand where a
//! well-behaved client would not do what the test needs; the real `sora` binary.

#![cfg(feature = "http")]

#[path = "support/plane.rs"]
mod plane;
#[path = "support/common.rs"]
mod support;

use std::time::{Duration, Instant};

use plane::Batcher;
use reqwest::StatusCode;
use serde_json::Value;
use sora::http::HttpConfig;
use sora::{BoxError, Context, Definition, Runtime, Service};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "let-me-in";

struct Node {
    runtime: Runtime,
    address: std::net::SocketAddr,
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
            .http(config)
            .start()
            .await
            .unwrap();
        let address = runtime.http_address().expect("served");
        Node {
            runtime,
            address,
            journal,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }
}

/// Reads until the other end closes, and says how long that took.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match within(stream.read(&mut buffer)).await {
            Ok(0) | Err(_) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buffer[..n]),
        }
    }
}

/// One HTTP/1.1 response read off a raw stream: its status, its headers, its body.
async fn response(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let json = serde_json::from_str(&body[..length]).unwrap_or(Value::Null);
                return (status, head.to_ascii_lowercase(), json);
            }
        }
        let n = within(stream.read(&mut buffer)).await.unwrap();
        assert!(n > 0, "closed before a whole response: {text}");
        got.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test]
async fn a_request_whose_head_never_ends_is_closed_at_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let node = Node::start(HttpConfig::local(0).header_timeout(timeout)).await;
    let mut slow = node.connect().await;
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: node\r\nx-slow: ")
        .await
        .unwrap();
    let (answer, after) = until_closed(&mut slow).await;
    assert!(after >= timeout - Duration::from_millis(50), "{after:?}");
    // hyper answers 408 as it closes, or closes; either way, nothing is held.
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let node = Node::start(HttpConfig::local(0).header_timeout(timeout)).await;
    let mut idle = node.connect().await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nhost: node\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = response(&mut idle).await;
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");
    let (rest, after) = until_closed(&mut idle).await;
    assert!(rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"));
    assert!(after >= timeout - Duration::from_millis(50), "{after:?}");
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_answered_408_and_the_call_does_not_run() {
    let timeout = Duration::from_millis(300);
    let config = HttpConfig::local(0)
        .token(TOKEN)
        .header_timeout(Duration::from_secs(60))
        .body_timeout(timeout);
    let node = Node::start(config).await;
    let mut short = node.connect().await;
    let request = format!(
        "POST /api/services/Translator/actions/translate HTTP/1.1\r\nhost: node\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"text\": \"ha"
    );
    short.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, _, body) = response(&mut short).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    assert!(
        node.journal.entries().is_empty(),
        "the call ran: {:?}",
        node.journal.entries()
    );
    // And the connection, whose body never came, is not kept.
    until_closed(&mut short).await;

    // A route that reads no body is not held by one that never comes either.
    let mut short = node.connect().await;
    let request = format!(
        "POST /api/services/batcher/trigger HTTP/1.1\r\nhost: node\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n"
    );
    short.write_all(request.as_bytes()).await.unwrap();
    let (status, _, _) = response(&mut short).await;
    assert_eq!(status, 204);
    until_closed(&mut short).await;
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_write_timeout() {
    let timeout = Duration::from_millis(300);
    let node = Node::start(
        HttpConfig::local(0)
            .max_connections(1)
            .header_timeout(Duration::from_secs(60))
            .write_timeout(timeout),
    )
    .await;
    let mut stuck = node.connect().await;
    // Answers far larger than the sockets' buffers, asked for and never read.
    let ask = b"GET /api/openapi.json HTTP/1.1\r\nhost: node\r\n\r\n".repeat(2000);
    let _ = tokio::time::timeout(Duration::from_secs(5), stuck.write_all(&ask)).await;
    // It holds the only slot: another client is turned away...
    let mut other = node.connect().await;
    assert_eq!(response(&mut other).await.0, 503);
    // ...until the node gives up on the stuck one and its slot comes back.
    let started = Instant::now();
    eventually(|| async {
        reqwest::get(node.url("/health/live"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(stuck);
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_at_once() {
    let cap = 100;
    let node = Node::start(
        HttpConfig::local(0)
            .max_connections(cap)
            .header_timeout(Duration::from_secs(60)),
    )
    .await;
    // Many slow clients, each holding a connection with a half-sent head.
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let mut stream = node.connect().await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: no")
            .await
            .unwrap();
        slow.push(stream);
    }
    let mut held = 0;
    let mut refused = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        // A connection under the cap is held (nothing to read); one past it is answered.
        match tokio::time::timeout(Duration::from_millis(20), stream.peek(&mut byte)).await {
            Err(_) => held += 1,
            Ok(_) => refused += 1,
        }
    }
    assert_eq!(held, cap, "held {held}, refused {refused}");
    let mut last = slow.pop().unwrap();
    let (status, head, body) = response(&mut last).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("overloaded")));
    assert!(head.contains("connection: close"), "{head}");
    // A slot comes back when a connection goes.
    slow.truncate(cap - 1);
    eventually(|| async {
        reqwest::get(node.url("/health/live"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    node.runtime.shutdown().await.unwrap();
}

/// A service whose stop waits until the test opens its gate: the runtime stays shutting down.
struct Lingering {
    gate: Gate,
}

impl Service for Lingering {
    fn define(_: &mut Definition<Self>) {}

    async fn stop(&self, _: &Context) {
        self.gate.pass().await;
    }
}

#[tokio::test]
async fn requests_on_a_kept_alive_connection_during_shutdown_are_answered_and_close_it() {
    let gate = Gate::default();
    let stopping = gate.clone();
    let runtime = Runtime::builder()
        .service(move || Lingering {
            gate: stopping.clone(),
        })
        .service(translator(&Journal::default(), None))
        .http(HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let address = runtime.http_address().unwrap();
    let (mut during, mut after) = (
        TcpStream::connect(address).await.unwrap(),
        TcpStream::connect(address).await.unwrap(),
    );
    for stream in [&mut during, &mut after] {
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: node\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(response(stream).await.0, 200);
    }
    let handle = runtime.handle();
    let stopped = tokio::spawn(async move { runtime.shutdown().await });
    until(|| async { handle.is_shutting_down() }).await;

    // While the services stop: the call is refused, and the connection is told to close.
    let call = "POST /api/services/Translator/actions/translate HTTP/1.1\r\nhost: node\r\n\
                content-type: application/json\r\ncontent-length: 26\r\n\r\n\
                {\"text\": \"hi\", \"to\": \"pt\"}";
    during.write_all(call.as_bytes()).await.unwrap();
    let (status, head, body) = response(&mut during).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("shutting_down")),
        "{body}"
    );
    assert!(head.contains("connection: close"), "{head}");
    until_closed(&mut during).await;

    // Once the runtime has stopped, what still comes on an open connection is answered too.
    gate.open(1);
    handle.wait().await.unwrap();
    after.write_all(call.as_bytes()).await.unwrap();
    let (status, head, _) = response(&mut after).await;
    assert!(matches!(status, 409 | 503), "{status}");
    assert!(head.contains("connection: close"), "{head}");
    stopped.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_zero_timeout_is_refused_and_an_unknown_command_is_never_a_timeout() {
    let node = Node::start(HttpConfig::local(0)).await;
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(node.url(path)).send();
    let zero = post("/api/services/batcher/trigger?timeoutMs=0")
        .await
        .unwrap();
    assert_eq!(zero.status(), StatusCode::BAD_REQUEST);
    let body: Value = zero.json().await.unwrap();
    assert_eq!(body["field"], "timeoutMs");
    for _ in 0..100 {
        let unknown = post("/api/services/batcher/commands/launch?timeoutMs=1")
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_rejection_is_the_json_error() {
    let node = Node::start(HttpConfig::local(0)).await;
    let client = reqwest::Client::new();
    let cases = [
        (
            reqwest::Method::GET,
            "/api/services/%FF%FE",
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            "/api/services/%FF%FE/status",
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            "/api/events?who=me",
            400,
            "bad_request",
        ),
        (reqwest::Method::GET, "/nowhere", 404, "not_found"),
        (
            reqwest::Method::DELETE,
            "/api/services",
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::OPTIONS,
            "/api/events",
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let answer = client
            .request(method.clone(), node.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{method} {path}");
        let kind = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            kind.starts_with("application/json"),
            "{method} {path}: {kind}"
        );
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}");
    }
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn triggers_are_counted_as_calls() {
    let node = Node::start(HttpConfig::local(0)).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let done = client
            .post(node.url("/api/services/batcher/trigger"))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
    }
    let status: Value = reqwest::get(node.url("/api/services/batcher/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["calls"], 3, "{status}");
    let metrics = reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sora_action_calls_total") && l.contains("action=\"trigger\""))
        .unwrap_or_else(|| panic!("no trigger calls in:\n{metrics}"));
    assert!(line.ends_with(" 3"), "{line}");
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn pages_of_allowed_origins_may_read_and_others_may_not() {
    let node = Node::start(HttpConfig::local(0).cors_origin("https://ops.example.com")).await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, node.url("/api/events"))
        .header("origin", "https://ops.example.com")
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = &preflight.headers()["access-control-allow-origin"];
    assert_eq!(allowed, "https://ops.example.com");
    let read = client
        .get(node.url("/api/services"))
        .header("origin", "https://ops.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );
    let stranger = client
        .get(node.url("/api/services"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    node.runtime.shutdown().await.unwrap();

    // Off by default.
    let node = Node::start(HttpConfig::local(0)).await;
    let read = client
        .get(node.url("/api/services"))
        .header("origin", "https://ops.example.com")
        .send()
        .await
        .unwrap();
    assert!(read.headers().get("access-control-allow-origin").is_none());
    node.runtime.shutdown().await.unwrap();
}

/// Emits once as it starts: the first event of the node's life.
struct Herald;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Started;

impl sora::Event for Started {
    const NAME: &'static str = "started";
}

impl Service for Herald {
    fn define(def: &mut Definition<Self>) {
        def.emits::<Started>();
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        ctx.emit(Started)?;
        Ok(())
    }
}

/// The SSE events of a stream, as (id, event, data) until `n` have come.
async fn sse(url: &str, last: Option<&str>, n: usize) -> Vec<(String, String, Value)> {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(id) = last {
        request = request.header("last-event-id", id);
    }
    let mut body = request.send().await.unwrap();
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = within(body.chunk())
            .await
            .unwrap()
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_owned))
                    .unwrap_or_default()
            };
            let event = field("event: ");
            if !event.is_empty() {
                let data = serde_json::from_str(&field("data: ")).unwrap_or(Value::Null);
                out.push((field("id: "), event, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_client_back_after_the_node_restarted_gets_what_it_kept_after_a_gap() {
    let start = || async {
        Runtime::builder()
            .service(|| Herald)
            .service(translator(&Journal::default(), None))
            .http(HttpConfig::local(0))
            .start()
            .await
            .unwrap()
    };
    let before = start().await;
    let url = format!("http://{}/api/events", before.http_address().unwrap());
    translate_en(&before.handle(), "one").await;
    // The node kept its first event, emitted as it started.
    let seen = sse(&url, Some("0"), 2).await;
    assert_eq!(seen[0].1, "gap");
    assert_eq!(seen[1].1, "started");
    assert_eq!(seen[1].2["seq"], 1);
    let kept = sse(&url, Some(&seen[1].0), 1).await;
    assert_eq!(kept[0].1, "TranslationCompleted");
    let last = kept[0].0.clone();
    before.shutdown().await.unwrap();

    // The node comes back (a new incarnation) and emits before the client does.
    let after = start().await;
    let url = format!("http://{}/api/events", after.http_address().unwrap());
    translate_en(&after.handle(), "two").await;
    let resumed = sse(&url, Some(&last), 3).await;
    assert_eq!(resumed[0].1, "gap");
    assert_eq!(resumed[0].2, serde_json::json!({"restarted": true}));
    assert_eq!(
        (resumed[1].1.as_str(), &resumed[1].2["seq"]),
        ("started", &Value::from(1))
    );
    assert_eq!(resumed[2].2["payload"]["text"], "two");
    assert_ne!(
        resumed[1].0.split('-').next(),
        last.split('-').next(),
        "a new incarnation"
    );
    after.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The CLI against nodes that do not answer.

/// Runs the `sora` binary; its exit code, its stderr, and how long it took.
#[cfg(feature = "cli")]
async fn sora(args: &[&str]) -> (i32, String, Duration) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sora"))
            .args(&args)
            .env_remove("SORA_URL")
            .env_remove("SORA_TOKEN")
            .env_remove("SORA_DEADLINE")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let code = output.status.code().expect("an exit code");
    (
        code,
        String::from_utf8_lossy(&output.stderr).into(),
        started.elapsed(),
    )
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_cli_gives_up_on_a_node_that_accepts_and_never_answers() {
    // It accepts every connection and reads nothing, ever.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", mute.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = mute.accept().await {
            streams.push(stream);
        }
    });
    let cases: [(&[&str], Duration); 3] = [
        (
            &["health", "--deadline", "500ms"],
            Duration::from_millis(500),
        ),
        (
            &["trigger", "cleanup", "--timeout", "2s"],
            Duration::from_secs(3),
        ),
        (
            &[
                "act",
                "t",
                "translate",
                "--params",
                "{}",
                "--timeout",
                "500ms",
            ],
            Duration::from_millis(1500),
        ),
    ];
    for (args, waits) in cases {
        let mut full = vec!["--url", url.as_str()];
        full.extend_from_slice(args);
        let (code, stderr, took) = sora(&full).await;
        assert_eq!(code, 7, "{args:?}: {stderr}");
        assert!(stderr.contains("no answer from the node"), "{stderr}");
        assert!(
            took >= waits && took < waits + Duration::from_secs(5),
            "{args:?}: {took:?}"
        );
    }
    held.abort();
    // Nothing listening at all: 3, at once.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let (code, stderr, _) = sora(&["--url", &url, "health"]).await;
    assert_eq!(code, 3, "{stderr}");
}
