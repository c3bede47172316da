//! The node's control plane, as the CLI calls it.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::output::Output;
use crate::sse;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command line asked for something impossible.
    #[error("{0}")]
    Usage(String),
    /// Nothing answered at the URL.
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The node answered with an error.
    #[error("{message} [{code}, HTTP {status}]{}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The node took longer than the CLI waits.
    #[error("no answer from the node at {url} within {after:?}")]
    TimedOut { url: String, after: Duration },
    /// The node answered something that is not the control plane's answer.
    #[error("unexpected answer from the node: {0}")]
    Protocol(String),
}

impl Failure {
    /// A probe said the node is unhealthy or not ready.
    pub(crate) const UNHEALTHY: u8 = 6;

    /// The process's exit code:
    ///
    /// | code | meaning |
    /// |---|---|
    /// | 0 | done |
    /// | 1 | the node refused or failed the request (400, 405, 409, 413, 429, 500, …) |
    /// | 2 | the command line is wrong |
    /// | 3 | the node cannot be reached |
    /// | 4 | the token is missing or wrong (401), or may not do that (403) |
    /// | 5 | no such service, action, command or path (404) |
    /// | 6 | unavailable (503), or a health probe says unhealthy or not ready |
    /// | 7 | the call timed out (504), or the node did not answer within the CLI's deadline |
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
            Failure::TimedOut { .. } => 7,
            Failure::Api { status, .. } => match *status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => 4,
                StatusCode::NOT_FOUND => 5,
                StatusCode::SERVICE_UNAVAILABLE => Self::UNHEALTHY,
                StatusCode::GATEWAY_TIMEOUT => 7,
                _ => 1,
            },
            Failure::Protocol(_) => 1,
        }
    }
}

/// Reads a JSON argument given on the command line.
pub(crate) fn json_arg(text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::Usage(format!("not JSON: {e}: {text}")))
}

/// The options of a command or an action.
#[derive(Debug, Default)]
pub(crate) struct Call {
    pub(crate) priority: i32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) correlation_id: Option<String>,
}

/// How a durable action's call is made a job.
#[derive(Debug, Default)]
pub(crate) struct JobArgs {
    /// Wait for the job's reply instead of its id.
    pub(crate) wait: bool,
    /// Not before this long from now.
    pub(crate) delay: Option<Duration>,
    /// Its idempotency key.
    pub(crate) key: Option<String>,
}

/// Which jobs (or runs: only `limit`) to list.
#[derive(Debug, Default, Serialize)]
pub(crate) struct JobQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<String>,
}

/// Which events to follow.
#[derive(Debug, Serialize)]
pub(crate) struct EventFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<String>,
}

/// One of the health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Health,
    Live,
    Ready,
}

/// How often `events` reconnects in a row before it gives up, and the longest pause between.
const RECONNECTS: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(5);
/// How much longer than a call's own `--timeout` the CLI waits: the node answers 504 at the
/// timeout, and this is for that answer to arrive.
const GRACE: Duration = Duration::from_secs(1);
/// How long `events` waits for the next bytes of its stream before it reconnects: the node
/// sends a keep-alive every 15 s.
const STALL: Duration = Duration::from_secs(45);

/// A client of one node.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// How long a request without a `--timeout` of its own may take, connection included.
    deadline: Duration,
}

impl Client {
    pub(crate) fn new(
        url: &str,
        token: Option<String>,
        deadline: Duration,
    ) -> Result<Self, Failure> {
        let base =
            Url::parse(url).map_err(|e| Failure::Usage(format!("bad --url `{url}`: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Failure::Usage(format!(
                "bad --url `{url}`: not an http URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT.min(deadline))
            .user_agent(concat!("sora-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Usage(format!("cannot build an HTTP client: {e}")))?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Client {
            http,
            base,
            token,
            deadline,
        })
    }

    /// `path` under the node's URL; each segment in `parts` is percent-encoded.
    fn url(&self, parts: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in `new`")
            .pop_if_empty()
            .extend(parts);
        url
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`, whole within `within` (its answer's body included).
    async fn send(&self, request: RequestBuilder, within: Duration) -> Result<Response, Failure> {
        let response = self.open(request.timeout(within), within).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(refusal(response).await)
        }
    }

    /// Sends `request` and waits, at most `within`, for the head of its answer.
    async fn open(&self, request: RequestBuilder, within: Duration) -> Result<Response, Failure> {
        let sent = tokio::time::timeout(within, self.authorized(request).send()).await;
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) if err.is_timeout() && !err.is_connect() => Err(self.late(within)),
            Ok(Err(err)) => Err(self.unreachable(&err)),
            Err(_) => Err(self.late(within)),
        }
    }

    fn late(&self, after: Duration) -> Failure {
        Failure::TimedOut {
            url: self.base.to_string(),
            after,
        }
    }

    fn unreachable(&self, err: &reqwest::Error) -> Failure {
        // reqwest's own message repeats the URL; the innermost cause says what went wrong.
        let mut cause: &dyn std::error::Error = err;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        Failure::Unreachable {
            url: self.base.to_string(),
            reason: cause.to_string(),
        }
    }

    /// How long a call may take: its own timeout and a grace, or the CLI's deadline.
    fn within(&self, call: &Call) -> Duration {
        call.timeout.map_or(self.deadline, |t| t + GRACE)
    }

    async fn get(&self, parts: &[&str]) -> Result<Value, Failure> {
        let response = self
            .send(self.http.get(self.url(parts)), self.deadline)
            .await?;
        body(response, self, self.deadline).await
    }

    async fn post(
        &self,
        parts: &[&str],
        call: Call,
        json: Option<Value>,
    ) -> Result<Response, Failure> {
        self.post_job(parts, call, JobArgs::default(), json).await
    }

    async fn post_job(
        &self,
        parts: &[&str],
        call: Call,
        job: JobArgs,
        json: Option<Value>,
    ) -> Result<Response, Failure> {
        let within = self.within(&call);
        let mut request = self.http.post(self.url(parts));
        if job.wait {
            request = request.query(&[("wait", true)]);
        }
        if let Some(delay) = job.delay {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            request = request.query(&[("delayMs", ms)]);
        }
        if let Some(key) = job.key {
            request = request.header("idempotency-key", key);
        }
        if call.priority != 0 {
            request = request.query(&[("priority", call.priority)]);
        }
        if let Some(timeout) = call.timeout {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            request = request.query(&[("timeoutMs", ms)]);
        }
        if let Some(id) = call.correlation_id {
            request = request.header("x-correlation-id", id);
        }
        if let Some(json) = json {
            request = request.json(&json);
        }
        self.send(request, within).await
    }

    pub(crate) async fn services(&self) -> Result<Value, Failure> {
        self.get(&["api", "services"]).await
    }

    pub(crate) async fn status(&self, name: &str) -> Result<Value, Failure> {
        self.get(&["api", "services", name, "status"]).await
    }

    pub(crate) async fn runs(&self, name: &str, limit: Option<usize>) -> Result<Value, Failure> {
        let url = self.url(&["api", "services", name, "runs"]);
        let query = JobQuery {
            limit,
            ..JobQuery::default()
        };
        let request = self.http.get(url).query(&query);
        let response = self.send(request, self.deadline).await?;
        body(response, self, self.deadline).await
    }

    /// A page of the state kept under `name`.
    pub(crate) async fn state(
        &self,
        name: &str,
        after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Value, Failure> {
        #[derive(Serialize)]
        struct Page {
            #[serde(skip_serializing_if = "Option::is_none")]
            after: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<usize>,
        }
        let url = self.url(&["api", "services", name, "state"]);
        let request = self.http.get(url).query(&Page { after, limit });
        let response = self.send(request, self.deadline).await?;
        body(response, self, self.deadline).await
    }

    pub(crate) async fn state_entry(&self, name: &str, key: &str) -> Result<Value, Failure> {
        self.get(&["api", "services", name, "state", key]).await
    }

    pub(crate) async fn remove_state(&self, name: &str, key: &str) -> Result<(), Failure> {
        let url = self.url(&["api", "services", name, "state", key]);
        self.send(self.http.delete(url), self.deadline)
            .await
            .map(drop)
    }

    /// How many values were cleared.
    pub(crate) async fn clear_state(&self, name: &str) -> Result<u64, Failure> {
        let url = self.url(&["api", "services", name, "state"]);
        let response = self.send(self.http.delete(url), self.deadline).await?;
        let cleared = body(response, self, self.deadline).await?;
        cleared["cleared"]
            .as_u64()
            .ok_or_else(|| Failure::Protocol(format!("not a count of cleared values: {cleared}")))
    }

    pub(crate) async fn info(&self, name: &str) -> Result<Value, Failure> {
        self.get(&["api", "services", name]).await
    }

    /// `trigger`, `check-queue`, `pause` or `resume`.
    pub(crate) async fn verb(&self, name: &str, verb: &str, call: Call) -> Result<(), Failure> {
        self.post(&["api", "services", name, verb], call, None)
            .await
            .map(drop)
    }

    pub(crate) async fn batch(
        &self,
        name: &str,
        size: Option<usize>,
        filter: Option<String>,
        call: Call,
    ) -> Result<(), Failure> {
        let body = serde_json::json!({ "batchSize": size, "filter": filter });
        self.post(
            &["api", "services", name, "process-batch"],
            call,
            Some(body),
        )
        .await
        .map(drop)
    }

    pub(crate) async fn command(
        &self,
        name: &str,
        command: &str,
        args: Option<Value>,
        call: Call,
    ) -> Result<(), Failure> {
        self.post(&["api", "services", name, "commands", command], call, args)
            .await
            .map(drop)
    }

    pub(crate) async fn act(
        &self,
        name: &str,
        action: &str,
        params: Option<Value>,
        call: Call,
        job: JobArgs,
    ) -> Result<Value, Failure> {
        let parts = ["api", "services", name, "actions", action];
        let within = self.within(&call);
        let response = self.post_job(&parts, call, job, params).await?;
        body(response, self, within).await
    }

    /// `GET /api/jobs`, filtered.
    pub(crate) async fn jobs(&self, query: &JobQuery) -> Result<Value, Failure> {
        let request = self.http.get(self.url(&["api", "jobs"])).query(query);
        let response = self.send(request, self.deadline).await?;
        body(response, self, self.deadline).await
    }

    pub(crate) async fn job(&self, id: &str) -> Result<Value, Failure> {
        self.get(&["api", "jobs", id]).await
    }

    /// A dead job's new series of attempts.
    pub(crate) async fn retry(&self, id: &str) -> Result<(), Failure> {
        self.post(&["api", "jobs", id, "retry"], Call::default(), None)
            .await
            .map(drop)
    }

    pub(crate) async fn discard(&self, id: &str) -> Result<(), Failure> {
        let request = self.http.delete(self.url(&["api", "jobs", id]));
        self.send(request, self.deadline).await.map(drop)
    }

    /// The probe's body, and whether it says up (200) or down (503).
    pub(crate) async fn health(&self, probe: Probe) -> Result<(bool, Value), Failure> {
        let parts: &[&str] = match probe {
            Probe::Health => &["health"],
            Probe::Live => &["health", "live"],
            Probe::Ready => &["health", "ready"],
        };
        let request = self.http.get(self.url(parts)).timeout(self.deadline);
        let response = self.open(request, self.deadline).await?;
        match response.status() {
            StatusCode::OK => Ok((true, body(response, self, self.deadline).await?)),
            // Down, with a report (health, ready) or an error (live, while shutting down).
            StatusCode::SERVICE_UNAVAILABLE => {
                Ok((false, body(response, self, self.deadline).await?))
            }
            _ => Err(refusal(response).await),
        }
    }

    /// Prints events as they come until `count` have, reconnecting with `Last-Event-ID` when
    /// the stream ends, so that nothing the node still keeps is lost or repeated.
    pub(crate) async fn follow(
        &self,
        filter: &EventFilter,
        since: Option<String>,
        count: Option<u64>,
        out: &Output,
    ) -> Result<(), Failure> {
        let mut last = since;
        let mut printed = 0u64;
        let mut attempts = 0u32;
        let mut connected_once = false;
        if count == Some(0) {
            return Ok(());
        }
        loop {
            let mut request = self.http.get(self.url(&["api", "events"])).query(filter);
            if let Some(id) = &last {
                request = request.header("last-event-id", id.as_str());
            }
            // The stream has no end, so only its head is bounded; then each chunk is.
            let opened = match self.open(request, self.deadline).await {
                Ok(response) if response.status().is_success() => Ok(response),
                Ok(response) => Err(refusal(response).await),
                Err(failure) => Err(failure),
            };
            match opened {
                Ok(response) => {
                    connected_once = true;
                    attempts = 0;
                    let mut parser = sse::Parser::default();
                    let mut bytes = response.bytes_stream();
                    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(STALL, bytes.next()).await
                    {
                        let events = parser.feed(&chunk).map_err(|_| {
                            Failure::Protocol(format!(
                                "an event of the stream is longer than {} MiB",
                                sse::MAX_EVENT >> 20
                            ))
                        })?;
                        for event in events {
                            if let Some(id) = &event.id {
                                last = Some(id.clone());
                            }
                            out.event(&event)?;
                            if event.event.as_deref() != Some("gap") {
                                printed += 1;
                                if count.is_some_and(|n| printed >= n) {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
                // Nothing listens (yet, or any more), or nothing answers: try again, a few
                // times.
                Err(failure @ (Failure::Unreachable { .. } | Failure::TimedOut { .. })) => {
                    if !connected_once || attempts >= RECONNECTS {
                        return Err(failure);
                    }
                }
                Err(failure) => return Err(failure),
            }
            attempts += 1;
            let backoff = Duration::from_millis(250 * 2u64.pow(attempts.min(5)));
            tokio::time::sleep(backoff.min(MAX_BACKOFF)).await;
        }
    }
}

/// A success's JSON body, read within the request's deadline.
async fn body(response: Response, client: &Client, within: Duration) -> Result<Value, Failure> {
    let text = response.text().await.map_err(|e| {
        if e.is_timeout() {
            client.late(within)
        } else {
            Failure::Protocol(format!("the body could not be read: {e}"))
        }
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Failure::Protocol(format!("not JSON ({e}): {text}")))
}

/// An error answer: the plane's `{code, message, field}`, or what else came back.
async fn refusal(response: Response) -> Failure {
    #[derive(serde::Deserialize)]
    struct ApiError {
        code: String,
        message: String,
        field: Option<String>,
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ApiError>(&text) {
        Ok(err) => Failure::Api {
            status,
            code: err.code,
            message: err.message,
            field: err.field,
        },
        Err(_) => Failure::Api {
            status,
            code: "http".into(),
            message: format!("the node answered {status} {}", text.trim()),
            field: None,
        },
    }
}
