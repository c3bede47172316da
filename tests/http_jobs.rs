//! Durable jobs over the control plane: 202 with a Location, the job by id, lists, dead
//! letters retried and discarded; and what a careless or hostile client sends instead.

#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sora::http::HttpConfig;
use sora::store::RedbStore;
use sora::{Action, BoxError, Context, Definition, Handler, Retry, Runtime, Service};

const TOKEN: &str = "act-token";
const READ: &str = "read-token";

#[derive(serde::Serialize, serde::Deserialize)]
struct Send {
    to: String,
}

impl Action for Send {
    const NAME: &'static str = "send";
    type Reply = String;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Echo(String);

impl Action for Echo {
    const NAME: &'static str = "echo";
    type Reply = String;
}

struct Mailer {
    broken: Arc<AtomicBool>,
}

impl Service for Mailer {
    fn define(def: &mut Definition<Self>) {
        def.name("mailer")
            .durable::<Send>(Retry::none())
            .action::<Echo>();
    }
}

impl Handler<Send> for Mailer {
    async fn handle(&self, mail: Send, _: &Context) -> Result<String, BoxError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(format!("smtp refused {}", mail.to).into());
        }
        Ok(format!("sent to {}", mail.to))
    }
}

impl Handler<Echo> for Mailer {
    async fn handle(&self, echo: Echo, _: &Context) -> Result<String, BoxError> {
        Ok(echo.0)
    }
}

struct Node {
    runtime: Runtime,
    base: String,
    client: reqwest::Client,
    broken: Arc<AtomicBool>,
}

impl Node {
    async fn start() -> Node {
        let broken = Arc::new(AtomicBool::new(false));
        let runtime = Runtime::builder()
            .store(RedbStore::in_memory().unwrap())
            .service({
                let broken = broken.clone();
                move || Mailer {
                    broken: broken.clone(),
                }
            })
            .http(HttpConfig::local(0).token(TOKEN).read_token(READ))
            .start()
            .await
            .unwrap();
        let address = runtime.http_address().unwrap();
        Node {
            runtime,
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            broken,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn send(&self, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/api/services/mailer/actions/send")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The job once its outcome is recorded.
    async fn finished(&self, id: &str) -> Value {
        let jobs = self.runtime.jobs().unwrap();
        let _ = jobs.wait(id.parse().unwrap()).await;
        loop {
            let (status, job) = self.get(&format!("/api/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if !job["finished"].is_null() {
                return job;
            }
            tokio::task::yield_now().await;
        }
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

#[tokio::test]
async fn a_durable_call_answers_202_with_where_to_follow_its_job() {
    let node = Node::start().await;
    let response = node.send(json!({"to": "ada"})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = read(response).await;
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["new"], true);
    assert_eq!(location, format!("/api/jobs/{id}"));

    let job = node.finished(&id).await;
    assert_eq!(job["state"], "completed");
    assert_eq!(job["service"], "mailer");
    assert_eq!(job["action"], "send");
    assert_eq!(job["params"], json!({"to": "ada"}));
    assert_eq!(job["reply"], json!("sent to ada"));
    assert_eq!(job["maxAttempts"], 1);

    // Asked to wait, the same route answers the reply, as an in-memory action does.
    let (status, reply) = read(
        node.request(
            reqwest::Method::POST,
            "/api/services/mailer/actions/send?wait=true",
        )
        .json(&json!({"to": "grace"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply, json!("sent to grace"));
    // An in-memory action is unchanged.
    let (status, reply) = read(
        node.request(reqwest::Method::POST, "/api/services/mailer/actions/echo")
            .json(&json!("hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!("hi")));
    let (_, info) = node.get("/api/services/mailer").await;
    assert_eq!(info["durable"], json!(["send"]));
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idempotency_key_names_one_job_and_a_delay_schedules_it() {
    let node = Node::start().await;
    let keyed = || {
        node.request(reqwest::Method::POST, "/api/services/mailer/actions/send")
            .header("Idempotency-Key", "welcome-ada")
            .json(&json!({"to": "ada"}))
    };
    let (status, first) = read(keyed().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, again) = read(keyed().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        (first["new"].clone(), again["new"].clone()),
        (json!(true), json!(false))
    );

    let (status, later) = read(
        node.request(
            reqwest::Method::POST,
            "/api/services/mailer/actions/send?delayMs=3600000",
        )
        .json(&json!({"to": "later"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, job) = node
        .get(&format!("/api/jobs/{}", later["id"].as_str().unwrap()))
        .await;
    assert_eq!(job["state"], "scheduled");
    assert!(job["at"]["secs_since_epoch"].as_u64().is_some(), "{job}");
    let (status, scheduled) = node.get("/api/services/mailer/jobs?state=scheduled").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scheduled["jobs"].as_array().unwrap().len(), 1);
    assert!(scheduled["next"].is_null(), "the last page");
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_letter_is_listed_retried_and_discarded() {
    let node = Node::start().await;
    node.broken.store(true, Ordering::SeqCst);
    let (_, accepted) = read(node.send(json!({"to": "kurt"})).await).await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    let job = node.finished(&id).await;
    assert_eq!(job["state"], "dead");
    assert_eq!(job["errors"][0]["attempt"], 1);
    assert!(
        job["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("smtp refused kurt")
    );
    let (status, dead) = node.get("/api/jobs?state=dead&service=mailer").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dead["jobs"][0]["id"], id.as_str());

    // Mended, then retried: a new series.
    node.broken.store(false, Ordering::SeqCst);
    let retry = format!("/api/jobs/{id}/retry");
    let response = node
        .request(reqwest::Method::POST, &retry)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let job = node.finished(&id).await;
    assert_eq!(job["state"], "completed");
    // Only the dead are retried.
    let (status, err) = read(
        node.request(reqwest::Method::POST, &retry)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["code"], "job_conflict");

    let path = format!("/api/jobs/{id}");
    let response = node
        .request(reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, err) = node.get(&path).await;
    assert_eq!(
        (status, err["code"].clone()),
        (StatusCode::NOT_FOUND, json!("unknown_job"))
    );
    let (status, _) = read(
        node.request(reqwest::Method::DELETE, &path)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn careless_and_hostile_job_requests_get_clear_errors_and_commit_nothing() {
    let node = Node::start().await;
    let expect = |status: StatusCode, code: &'static str| {
        move |(s, body): (StatusCode, Value)| {
            assert_eq!(s, status, "{body}");
            assert_eq!(body["code"], code, "{body}");
        }
    };
    // Parameters that do not fit: refused before the commit, naming the field.
    let (status, err) = read(node.send(json!({"to": 7})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["field"], "to");
    // Not job ids, in many shapes.
    for bad in [
        "nope",
        "0",
        "%00",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        &"7".repeat(500),
    ] {
        expect(StatusCode::BAD_REQUEST, "bad_request")(node.get(&format!("/api/jobs/{bad}")).await);
    }
    // An id that could be, and is not.
    expect(StatusCode::NOT_FOUND, "unknown_job")(
        node.get("/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
    );
    // Filters that are not.
    expect(StatusCode::BAD_REQUEST, "bad_request")(node.get("/api/jobs?state=lost").await);
    expect(StatusCode::BAD_REQUEST, "bad_request")(node.get("/api/jobs?colour=red").await);
    expect(StatusCode::BAD_REQUEST, "bad_request")(node.get("/api/jobs?limit=-1").await);
    expect(StatusCode::BAD_REQUEST, "bad_request")(node.get("/api/jobs?order=sideways").await);
    expect(StatusCode::BAD_REQUEST, "bad_request")(node.get("/api/jobs?after=nope").await);
    expect(StatusCode::NOT_FOUND, "unknown_service")(node.get("/api/services/ghost/jobs").await);
    // Job options on what is no job.
    let (status, err) = read(
        node.request(
            reqwest::Method::POST,
            "/api/services/mailer/actions/echo?delayMs=10",
        )
        .json(&json!("x"))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request"))
    );
    let (status, _) = read(
        node.request(reqwest::Method::POST, "/api/services/mailer/trigger")
            .header("Idempotency-Key", "k")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A delay past any time.
    let (status, err) = read(
        node.request(
            reqwest::Method::POST,
            "/api/services/mailer/actions/send?delayMs=18446744073709551615",
        )
        .json(&json!({"to": "x"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("delay"))
    );
    // A key too long, or empty.
    for key in ["", &"k".repeat(300)] {
        let (status, _) = read(
            node.request(reqwest::Method::POST, "/api/services/mailer/actions/send")
                .header("Idempotency-Key", key)
                .json(&json!({"to": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "key of {} bytes",
            key.len()
        );
    }
    let (_, all) = node.get("/api/jobs").await;
    assert_eq!(
        all,
        json!({ "jobs": [], "next": null }),
        "nothing was committed"
    );
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_read_token_reads_jobs_and_cannot_retry_or_discard_them() {
    let node = Node::start().await;
    let (_, accepted) = read(node.send(json!({"to": "ada"})).await).await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    node.finished(&id).await;
    let as_reader = |method: reqwest::Method, path: String| {
        node.client
            .request(method, format!("{}{path}", node.base))
            .bearer_auth(READ)
            .send()
    };
    let ok = as_reader(reqwest::Method::GET, format!("/api/jobs/{id}"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    for (method, path) in [
        (reqwest::Method::POST, format!("/api/jobs/{id}/retry")),
        (reqwest::Method::DELETE, format!("/api/jobs/{id}")),
        (
            reqwest::Method::POST,
            "/api/services/mailer/actions/send".to_owned(),
        ),
    ] {
        let refused = as_reader(method, path.clone()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let anonymous = node
        .client
        .get(format!("{}/api/jobs", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_without_durable_actions_says_it_keeps_no_jobs() {
    #[derive(Default)]
    struct Plain;
    impl Service for Plain {}
    let runtime = Runtime::builder()
        .service(Plain::default)
        .http(HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_address().unwrap());
    let (status, body) = read(reqwest::get(format!("{base}/api/jobs")).await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "no_store");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_runs_of_a_service_are_read_newest_first_and_bounded() {
    let node = Node::start().await;
    node.broken.store(true, Ordering::SeqCst);
    let (_, accepted) = read(node.send(json!({"to": "ada"})).await).await;
    let failed = accepted["id"].as_str().unwrap().to_owned();
    node.finished(&failed).await;
    node.broken.store(false, Ordering::SeqCst);
    let (_, accepted) = read(node.send(json!({"to": "bob"})).await).await;
    let ok = accepted["id"].as_str().unwrap().to_owned();
    node.finished(&ok).await;

    let (status, runs) = node.get("/api/services/mailer/runs").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["kind"], "job");
    assert_eq!(runs[0]["name"], "send");
    assert_eq!(runs[0]["outcome"], "ok");
    assert_eq!(runs[0]["job"], ok.as_str());
    assert_eq!(runs[0]["attempt"], 1);
    assert_eq!(runs[1]["outcome"], "failed");
    assert_eq!(runs[1]["job"], failed.as_str());
    assert!(
        runs[1]["error"]
            .as_str()
            .unwrap()
            .contains("smtp refused ada")
    );

    let (status, newest) = node.get("/api/services/mailer/runs?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_eq!(newest[0]["job"], ok.as_str());

    // A limit past the most is the most, as for lists of jobs.
    let (status, all) = node.get("/api/services/mailer/runs?limit=1000000").await;
    assert_eq!((status, all.as_array().unwrap().len()), (StatusCode::OK, 2));

    // The read token reads them.
    let response = node
        .client
        .get(format!("{}/api/services/mailer/runs", node.base))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // What a careless client sends instead.
    for (path, status, code) in [
        ("/api/services/mailer/runs?limit=lots", 400, "bad_request"),
        ("/api/services/mailer/runs?limit=-1", 400, "bad_request"),
        (
            "/api/services/mailer/runs?since=yesterday",
            400,
            "bad_request",
        ),
        ("/api/services/nobody/runs", 404, "unknown_service"),
    ] {
        let (got, err) = node.get(path).await;
        assert_eq!(
            (got.as_u16(), err["code"].as_str()),
            (status, Some(code)),
            "{path}: {err}"
        );
    }
    let anonymous = node
        .client
        .get(format!("{}/api/services/mailer/runs", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    node.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn jobs_are_listed_a_page_at_a_time_either_way_round() {
    let node = Node::start().await;
    let mut ids = Vec::new();
    for to in ["a", "b", "c", "d", "e"] {
        let (_, accepted) = read(node.send(json!({ "to": to })).await).await;
        let id = accepted["id"].as_str().unwrap().to_owned();
        node.finished(&id).await;
        ids.push(id);
    }
    let page_ids = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    let mut path = "/api/jobs?limit=2".to_owned();
    loop {
        let (status, page) = node.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page_ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/jobs?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "oldest first, each once");
    let (_, newest) = node
        .get("/api/services/mailer/jobs?order=newest&limit=3")
        .await;
    let expected: Vec<String> = ids.iter().rev().take(3).cloned().collect();
    assert_eq!(page_ids(&newest), expected);
    let after = newest["next"].as_str().unwrap();
    let (_, rest) = node
        .get(&format!(
            "/api/services/mailer/jobs?order=newest&after={after}"
        ))
        .await;
    assert_eq!(page_ids(&rest), [ids[1].clone(), ids[0].clone()]);
    node.runtime.shutdown().await.unwrap();
}
