//! Services' state over the control plane: pages in key order, one key, removal and clearing
//! behind the token; and what a careless or hostile client sends instead.

#![cfg(feature = "http")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sora::http::HttpConfig;
use sora::store::RedbStore;
use sora::{Definition, Runtime, Service};

const TOKEN: &str = "act-token";
const READ: &str = "read-token";

struct Keeper;

impl Service for Keeper {
    fn define(def: &mut Definition<Self>) {
        def.name("keeper").state();
    }
}

struct Node {
    runtime: Runtime,
    base: String,
    client: reqwest::Client,
}

impl Node {
    async fn start() -> Node {
        let runtime = Runtime::builder()
            .store(RedbStore::in_memory().unwrap())
            .service(|| Keeper)
            .http(HttpConfig::local(0).token(TOKEN).read_token(READ))
            .start()
            .await
            .unwrap();
        let address = runtime.http_address().unwrap();
        Node {
            runtime,
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(READ)).await
    }
}

/// Sends a DELETE with `path` exactly as written, and answers the status line.
async fn raw_delete(node: &Node, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = node.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "DELETE {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {TOKEN}\r\n\
         connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn keys(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn state_is_read_in_pages_and_by_key_with_the_read_token() {
    let node = Node::start().await;
    let state = node.runtime.state("keeper");
    for key in ["c", "a", "b", "with/slash", "é"] {
        state.set(key, &json!({ "key": key })).await.unwrap();
    }
    let (status, page) = node.get("/api/services/keeper/state?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(keys(&page), ["a", "b"]);
    assert_eq!(page["next"], "b");
    let (_, page) = node.get("/api/services/keeper/state?after=b&limit=2").await;
    assert_eq!(keys(&page), ["c", "with/slash"]);
    let (_, page) = node
        .get("/api/services/keeper/state?after=with%2Fslash")
        .await;
    assert_eq!(keys(&page), ["é"]);
    assert!(page["next"].is_null(), "the last page");

    let (status, entry) = node.get("/api/services/keeper/state/with%2Fslash").await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["value"], json!({ "key": "with/slash" }));
    assert!(entry["version"].as_u64().unwrap() > 0);
    assert!(entry["written"].is_object());
    let (status, _) = node.get("/api/services/keeper/state/%C3%A9").await;
    assert_eq!(status, StatusCode::OK);

    let (status, err) = node.get("/api/services/keeper/state/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "unknown_key");
    // A name no service has here: the state kept under it, which is none.
    let (status, page) = node.get("/api/services/renamed-long-ago/state").await;
    assert_eq!(status, StatusCode::OK);
    assert!(keys(&page).is_empty());
    let (status, _) = node
        .call(Method::GET, "/api/services/keeper/state", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn removing_and_clearing_take_the_token_that_acts() {
    let node = Node::start().await;
    let state = node.runtime.state("keeper");
    for key in ["a", "b", "c"] {
        state.set(key, &1).await.unwrap();
    }
    for token in [None, Some(READ)] {
        let (status, _) = node
            .call(Method::DELETE, "/api/services/keeper/state/a", token)
            .await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{status}"
        );
        let (status, _) = node
            .call(Method::DELETE, "/api/services/keeper/state", token)
            .await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{status}"
        );
    }
    assert_eq!(
        state.entries(None, 10).unwrap().len(),
        3,
        "nothing was removed"
    );

    let (status, _) = node
        .call(Method::DELETE, "/api/services/keeper/state/a", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = node
        .call(Method::DELETE, "/api/services/keeper/state/a", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "unknown_key");
    let (status, cleared) = node
        .call(Method::DELETE, "/api/services/keeper/state", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["cleared"], 2);
    assert!(state.entries(None, 10).unwrap().is_empty());
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn careless_and_hostile_requests_get_clear_errors_and_change_nothing() {
    let node = Node::start().await;
    node.runtime.state("keeper").set("a", &1).await.unwrap();
    for query in ["limit=abc", "limit=-1", "color=red", "after"] {
        let (status, err) = node
            .get(&format!("/api/services/keeper/state?{query}"))
            .await;
        if query == "after" {
            // An empty `after` is a key like any: the page starts after it.
            assert_eq!(status, StatusCode::OK, "{query}: {err}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["code"], "bad_request");
    }
    // A page of none is a page of one; of a million, a page of the most.
    let (_, page) = node.get("/api/services/keeper/state?limit=0").await;
    assert_eq!(keys(&page), ["a"]);
    let (status, _) = node
        .get("/api/services/keeper/state?limit=1000000000000")
        .await;
    assert_eq!(status, StatusCode::OK);

    // A key past the limit is no key, to read or to remove; the error does not echo it whole.
    let long = "k".repeat(10_000);
    let (status, err) = node
        .get(&format!("/api/services/keeper/state/{long}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], "bad_state");
    assert!(err["message"].as_str().unwrap().len() < 200, "{err}");
    let (status, err) = node
        .call(
            Method::DELETE,
            &format!("/api/services/keeper/state/{long}"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], "bad_state");
    // `.` and `..`: a client's URL parser drops them (so `url` cannot even send them), and a
    // raw request that does is refused rather than read as the page.
    for dots in ["%2E", "%2e%2E", ".."] {
        let status = raw_delete(&node, &format!("/api/services/keeper/state/{dots}")).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{dots}: {status}");
    }
    // Bytes that are not UTF-8 in the path.
    let (status, err) = node.get("/api/services/keeper/state/%FF%FE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(
        node.runtime.state("keeper").get::<u64>("a").unwrap(),
        Some(1)
    );
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_without_a_store_says_so() {
    struct Plain;
    impl Service for Plain {}
    let runtime = Runtime::builder()
        .service(|| Plain)
        .http(HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_address().unwrap());
    let response = reqwest::get(format!("{base}/api/services/Plain/state"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let err: Value = response.json().await.unwrap();
    assert_eq!(err["code"], "no_store");
    runtime.shutdown().await.unwrap();
}
