//! The endpoints: a thin layer over [`RuntimeHandle`] and [`ServiceRef`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openapi::{CallErrors, ReadErrors};
use crate::handle::ServiceRef;
use crate::runtime::RuntimeHandle;
use crate::service::{Command, Health};
use crate::status::{Run, ServiceInfo, ServiceKind, ServiceState, ServiceStatus};
use crate::{CallOptions, Error};

/// The header that carries a call's correlation id, both ways.
pub(crate) const CORRELATION_HEADER: &str = "x-correlation-id";

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) runtime: RuntimeHandle,
    pub(crate) live: Arc<super::live::Live>,
    pub(crate) metrics: Arc<super::metrics::Metrics>,
    /// The OpenAPI document, rendered once.
    pub(crate) openapi: Arc<str>,
}

type ApiResult<T> = Result<T, ApiError>;

fn service(api: &Api, name: &str) -> ApiResult<ServiceRef> {
    Ok(api.runtime.service_by_name(name)?)
}

/// One line of `GET /api/services`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ServiceSummary {
    name: String,
    kinds: Vec<ServiceKind>,
    state: ServiceState,
    health: Health,
}

/// Every service, in name order: kinds, state, health.
#[utoipa::path(get, path = "/api/services", tag = "services",
    responses((status = 200, body = Vec<ServiceSummary>)))]
pub(crate) async fn list(State(api): State<Api>) -> ApiResult<Json<Vec<ServiceSummary>>> {
    let mut out = Vec::new();
    for service in api.runtime.services() {
        out.push(ServiceSummary {
            name: service.name().to_owned(),
            kinds: service.info().await?.kinds,
            state: service.status().await?.state,
            health: service.health().await?,
        });
    }
    Ok(Json(out))
}

/// What a service declared: kinds, schedule, actions, commands, events, policies.
#[utoipa::path(get, path = "/api/services/{name}", tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = ServiceInfo), ReadErrors))]
pub(crate) async fn info(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceInfo>> {
    Ok(Json(service(&api, &name)?.info().await?))
}

/// A service's status: state, runs, skips, failures, calls, queue, restarts, events.
#[utoipa::path(get, path = "/api/services/{name}/status", tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = ServiceStatus), ReadErrors))]
pub(crate) async fn status(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceStatus>> {
    Ok(Json(service(&api, &name)?.status().await?))
}

/// The most runs one answer holds.
const RUNS_LIMIT: usize = 1000;

/// How many runs to show: `?limit=20`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    /// At most this many, newest first (default and most: 1000).
    limit: Option<usize>,
}

/// A service's last runs, newest first: periodic runs, commands, attempts of durable jobs and
/// in-memory actions that failed, as `[history]` keeps them.
#[utoipa::path(get, path = "/api/services/{name}/runs", tag = "services",
    params(("name" = String, Path, description = "The service's name"), RunQuery),
    responses((status = 200, body = Vec<Run>), ReadErrors))]
pub(crate) async fn runs(
    State(api): State<Api>,
    Path(name): Path<String>,
    Params(query): Params<RunQuery>,
) -> ApiResult<Json<Vec<Run>>> {
    let limit = query.limit.unwrap_or(RUNS_LIMIT).min(RUNS_LIMIT);
    Ok(Json(service(&api, &name)?.runs(limit)?))
}

/// A path's parameters; one that does not decode (not UTF-8, say) is the JSON error
/// `bad_request`, as every other rejection is.
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            )),
        }
    }
}

/// A query, read as the other parts of a request are: one that does not decode is the JSON
/// `bad_request`; none at all is the default.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_none() {
            return Ok(Params(T::default()));
        }
        let Query(query) = Query::<T>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(Params(query))
    }
}

/// The query of a call: `?priority=10&timeoutMs=500`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallQuery {
    /// Among queued calls, the higher runs first (default 0).
    priority: Option<i32>,
    /// Past this many milliseconds the caller gets 504 and the handler is cancelled; for a
    /// durable action, each attempt.
    timeout_ms: Option<u64>,
    /// For a durable action: wait for the job's reply (200) instead of answering 202 once it
    /// is committed.
    wait: Option<bool>,
    /// For a durable action: run the job no sooner than this many milliseconds from now.
    delay_ms: Option<u64>,
}

/// What a call's request says of the job it may be: from its query and its
/// `Idempotency-Key` header.
#[derive(Debug, Default)]
pub(crate) struct JobParts {
    wait: bool,
    delay_ms: Option<u64>,
    key: Option<String>,
}

impl JobParts {
    /// The first of these that the request sets, for a call that is no job.
    fn set(&self) -> Option<&'static str> {
        if self.wait {
            Some("wait")
        } else if self.delay_ms.is_some() {
            Some("delayMs")
        } else if self.key.is_some() {
            Some("Idempotency-Key")
        } else {
            None
        }
    }
}

/// The options of a call, from its query and its correlation and idempotency headers; reads
/// only those, without copying the request's headers.
pub(crate) struct Call(CallOptions, JobParts);

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Params(query) = Params::<CallQuery>::from_request_parts(parts, &()).await?;
        let correlation_id = match parts.headers.get(CORRELATION_HEADER) {
            Some(value) => Some(Arc::from(value.to_str().map_err(|_| {
                ApiError::bad_request("the X-Correlation-Id header is not visible ASCII")
            })?)),
            None => None,
        };
        if query.timeout_ms == Some(0) {
            let mut err = ApiError::bad_request("`timeoutMs` must be at least 1");
            err.field = Some("timeoutMs".into());
            return Err(err);
        }
        let key = match parts.headers.get(super::jobs::IDEMPOTENCY_HEADER) {
            Some(value) => match value.to_str() {
                Ok(key) if !key.is_empty() && key.len() <= KEY_LIMIT => Some(key.to_owned()),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "the Idempotency-Key header is 1 to {KEY_LIMIT} visible ASCII characters"
                    )));
                }
            },
            None => None,
        };
        let job = JobParts {
            wait: query.wait.unwrap_or(false),
            delay_ms: query.delay_ms,
            key,
        };
        let options = CallOptions {
            priority: query.priority.unwrap_or(0),
            timeout: query.timeout_ms.map(Duration::from_millis),
            correlation_id,
        };
        Ok(Call(options, job))
    }
}

/// The longest idempotency key a request may give.
const KEY_LIMIT: usize = 256;

/// A body read as JSON; an empty body is `null`.
fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<serde_json::Value> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "payload_too_large", e.body_text())
        } else if let Some(late) = timed_out(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                late.to_string(),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not JSON: {e}"),
        )
    })
}

/// The deadline a body missed, if that is why it could not be read.
fn timed_out(rejection: &BytesRejection) -> Option<&super::server::BodyTimeout> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if let Some(late) = err.downcast_ref::<super::server::BodyTimeout>() {
            return Some(late);
        }
        cause = err.source();
    }
    None
}

/// The reply of a call, with its correlation id echoed.
fn reply(options: &CallOptions, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Some(id) = &options.correlation_id {
        if let Ok(value) = HeaderValue::from_str(id) {
            response.headers_mut().insert(CORRELATION_HEADER, value);
        }
    }
    response
}

/// Calls an action: its parameters as JSON in, its reply as JSON out. A durable action's call
/// is a job: it answers 202 with the job's id once the job is committed (or its reply, with
/// `wait=true`).
#[utoipa::path(post, path = "/api/services/{name}/actions/{action}", tag = "calls",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("action" = String, Path, description = "The action's name"),
        CallQuery,
        ("X-Correlation-Id" = Option<String>, Header,
            description = "Reaches the handler's context and tracing span; echoed on the reply"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "For a durable action: a job of this action with this key is enqueued once"),
    ),
    request_body(content = serde_json::Value, description = "The action's parameters"),
    responses(
        (status = 200, body = serde_json::Value, description = "The action's reply"),
        (status = 202, body = super::jobs::Accepted,
            description = "A durable action's job is committed; `Location` is `/api/jobs/{id}`"),
        CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn act(
    State(api): State<Api>,
    Path((name, action)): Path<(String, String)>,
    Call(options, job): Call,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let params = json_body(body)?;
    let service = service(&api, &name)?;
    if service.is_durable(&action) && !(job.wait && job.delay_ms.is_none() && job.key.is_none()) {
        if job.wait {
            return Err(ApiError::bad_request(
                "`wait` takes a job with neither a delay nor an idempotency key; \
                 follow the job at its Location instead",
            ));
        }
        let mut job_options = crate::JobOptions {
            key: job.key,
            delay: super::jobs::delay(job.delay_ms),
            ..Default::default()
        };
        job_options.call = options.clone();
        let enqueued = service.enqueue_json(&action, params, job_options).await?;
        return Ok(reply(&options, super::jobs::accepted(enqueued)));
    }
    if let Some(part) = job.set().filter(|_| !service.is_durable(&action)) {
        return Err(ApiError::bad_request(format!(
            "`{part}` is for durable actions, and `{name}.{action}` is not one"
        )));
    }
    let answer = service.act_json(&action, params, options.clone()).await;
    let result = answer.map(Json).map_err(ApiError::from);
    Ok(reply(&options, result))
}

async fn run_command(
    api: &Api,
    name: &str,
    command: Command,
    Call(options, job): Call,
) -> ApiResult<Response> {
    if let Some(part) = job.set() {
        return Err(ApiError::bad_request(format!(
            "`{part}` is for durable actions, not commands"
        )));
    }
    let request = service(api, name)?
        .command(command)
        .options(options.clone());
    let result = request.await.map(|()| StatusCode::NO_CONTENT);
    Ok(reply(&options, result.map_err(ApiError::from)))
}

/// Runs a periodic service now (or once more after its current run).
#[utoipa::path(post, path = "/api/services/{name}/trigger", tag = "calls",
    params(("name" = String, Path, description = "The service's name"), CallQuery, Correlation),
    responses((status = 204, description = "Done"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn trigger(
    State(api): State<Api>,
    Path(name): Path<String>,
    call: Call,
) -> ApiResult<Response> {
    run_command(&api, &name, Command::TriggerNow, call).await
}

/// Asks a service to check its queue.
#[utoipa::path(post, path = "/api/services/{name}/check-queue", tag = "calls",
    params(("name" = String, Path, description = "The service's name"), CallQuery, Correlation),
    responses((status = 204, description = "Done"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn check_queue(
    State(api): State<Api>,
    Path(name): Path<String>,
    call: Call,
) -> ApiResult<Response> {
    run_command(&api, &name, Command::CheckQueue, call).await
}

/// Pauses a periodic service's schedule: its ticks are skipped until it is resumed.
#[utoipa::path(post, path = "/api/services/{name}/pause", tag = "calls",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 204, description = "Paused"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    service(&api, &name)?.pause()?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resumes a paused service's schedule.
#[utoipa::path(post, path = "/api/services/{name}/resume", tag = "calls",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 204, description = "Resumed"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    service(&api, &name)?.resume()?;
    Ok(StatusCode::NO_CONTENT)
}

/// The correlation header, as a documented parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "it only describes the header")]
struct Correlation {
    /// Reaches the handler's context and tracing span; echoed on the reply.
    #[param(rename = "X-Correlation-Id")]
    x_correlation_id: Option<String>,
}

/// Asks a service to process a batch.
#[utoipa::path(post, path = "/api/services/{name}/process-batch", tag = "calls",
    params(("name" = String, Path, description = "The service's name"), CallQuery, Correlation),
    request_body(content = Option<crate::service::BatchArgs>, description = "Both fields optional; an empty body is `{}`"),
    responses((status = 204, description = "Done"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn process_batch(
    State(api): State<Api>,
    Path(name): Path<String>,
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let command = named_command(&name, Command::PROCESS_BATCH, json_body(body)?)?;
    run_command(&api, &name, command, call).await
}

/// The command called `command` with the JSON `args` (`null`: none), the built-in ones read
/// as their routes read them.
fn named_command(service: &str, command: &str, args: serde_json::Value) -> ApiResult<Command> {
    let args = (!args.is_null()).then(|| args.to_string());
    Command::named(command, args).map_err(|e| {
        ApiError::from(Error::BadParameters {
            service: service.to_owned(),
            action: command.to_owned(),
            field: e.field,
            message: e.message,
        })
    })
}

/// Sends one of a service's own commands; the JSON body is its arguments.
#[utoipa::path(post, path = "/api/services/{name}/commands/{command}", tag = "calls",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("command" = String, Path, description = "The command's name"),
        CallQuery,
        Correlation,
    ),
    request_body(content = Option<serde_json::Value>, description = "The command's arguments"),
    responses((status = 204, description = "Done"), CallErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn custom_command(
    State(api): State<Api>,
    Path((name, command)): Path<(String, String)>,
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let command = named_command(&name, &command, json_body(body)?)?;
    run_command(&api, &name, command, call).await
}

/// The body of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HealthReport {
    /// `healthy`, `degraded` or `unhealthy`: the worst of the services'.
    #[schema(value_type = String, example = "healthy")]
    status: &'static str,
    services: Vec<ServiceHealth>,
    /// The node's place in its cluster, when it is a node of one.
    #[cfg(feature = "cluster")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterHealth>,
}

/// A node's place in its cluster: degraded while a seed is not joined, or while another node
/// serves an action or event with other types.
#[cfg(feature = "cluster")]
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClusterHealth {
    /// This node's name, `node@host`.
    node: String,
    health: Health,
    seeds: Vec<crate::cluster::SeedInfo>,
    peers: Vec<crate::cluster::PeerInfo>,
    /// What other nodes serve with other types than this node declares.
    schema_mismatches: Vec<crate::cluster::SchemaMismatch>,
}

/// One service's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ServiceHealth {
    name: String,
    #[serde(flatten)]
    health: Health,
}

/// Every service's health: 200 when each is healthy or degraded, 503 when one is unhealthy.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses(
        (status = 200, body = HealthReport, description = "Healthy or degraded"),
        (status = 401, body = ApiError, description = "Probes need the token (`open_probes = false`)"),
        (status = 503, body = HealthReport, description = "A service is unhealthy"),
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn health(State(api): State<Api>) -> Response {
    let services: Vec<ServiceHealth> = api
        .runtime
        .health()
        .await
        .into_iter()
        .map(|(name, health)| ServiceHealth { name, health })
        .collect();
    #[cfg(feature = "cluster")]
    let cluster = api.runtime.cluster().map(|c| ClusterHealth {
        node: c.node().to_owned(),
        health: c.health(),
        seeds: c.seeds(),
        peers: c.peers(),
        schema_mismatches: c.schema_mismatches(),
    });
    #[cfg(feature = "cluster")]
    let cluster_degraded = cluster
        .as_ref()
        .is_some_and(|c| c.health != Health::Healthy);
    #[cfg(not(feature = "cluster"))]
    let cluster_degraded = false;
    let status = if services.iter().any(|s| !s.health.is_up()) {
        "unhealthy"
    } else if cluster_degraded
        || services
            .iter()
            .any(|s| matches!(s.health, Health::Degraded(_)))
    {
        "degraded"
    } else {
        "healthy"
    };
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let report = HealthReport {
        status,
        services,
        #[cfg(feature = "cluster")]
        cluster,
    };
    (code, Json(report)).into_response()
}

/// A probe's answer: `{"status": "live"}`, `{"status": "ready"}`, `{"status": "not ready"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProbeReport {
    #[schema(value_type = String, example = "live")]
    status: &'static str,
}

/// 200 while the runtime runs, 503 once it shuts down.
#[utoipa::path(get, path = "/health/live", tag = "probes",
    responses(
        (status = 200, body = ProbeReport),
        (status = 401, body = ApiError, description = "Probes need the token (`open_probes = false`)"),
        (status = 503, body = ApiError, description = "The runtime is shutting down"),
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn live(State(api): State<Api>) -> Response {
    if api.runtime.is_shutting_down() {
        // A probe says down (503), where a call to a stopping service conflicts (409).
        let mut err = ApiError::from(Error::ShuttingDown);
        err.status = StatusCode::SERVICE_UNAVAILABLE;
        return err.into_response();
    }
    (StatusCode::OK, Json(ProbeReport { status: "live" })).into_response()
}

/// 200 once start-up is over and every service is ready, else 503.
#[utoipa::path(get, path = "/health/ready", tag = "probes",
    responses(
        (status = 200, body = ProbeReport),
        (status = 401, body = ApiError, description = "Probes need the token (`open_probes = false`)"),
        (status = 503, body = ProbeReport, description = "Not ready"),
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn ready(State(api): State<Api>) -> Response {
    if api.runtime.is_ready().await {
        (StatusCode::OK, Json(ProbeReport { status: "ready" })).into_response()
    } else {
        let body = ProbeReport {
            status: "not ready",
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Prometheus text: per service and per action.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses(
        (status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, body = ApiError, description = "Probes need the token (`open_probes = false`)"),
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let text = api.metrics.render(&api.runtime).await;
    let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, kind);
    response
}

/// This document: every endpoint, its parameters, bodies and error bodies.
#[utoipa::path(get, path = "/api/openapi.json", tag = "services",
    responses((status = 200, content_type = "application/json", body = Object,
        description = "An OpenAPI 3.1 document")))]
pub(crate) async fn openapi(State(api): State<Api>) -> Response {
    let kind = HeaderValue::from_static("application/json");
    let mut response = api.openapi.to_string().into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, kind);
    response
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A body as a careless or hostile client sends it: JSON of any shape or none, cut short,
    /// with a field of the wrong kind.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let fields = prop_oneof![
            any::<i64>().prop_map(|n| format!(r#"{{"batchSize": {n}}}"#)),
            any::<f64>().prop_map(|n| format!(r#"{{"batchSize": {n}}}"#)),
            ".*".prop_map(|f| format!(r#"{{"filter": {}}}"#, serde_json::json!(f))),
            Just(r#"{"batchSize": 3, "filter": "x", "other": 1}"#.to_owned()),
            Just("null".to_owned()),
            Just("[]".to_owned()),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            (fields, any::<prop::sample::Index>()).prop_map(|(text, cut)| {
                let bytes = text.into_bytes();
                let at = cut.index(bytes.len() + 1);
                bytes[..at].to_vec()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever the body, it reads as JSON or is a 400 that says why; and a batch's
        /// arguments make the command or a 400 that names the field.
        #[test]
        fn any_body_is_read_or_refused_as_a_bad_request(body in bodies()) {
            match json_body(Ok(Bytes::from(body))) {
                Ok(json) => {
                    for command in [Command::PROCESS_BATCH, Command::TRIGGER, "reindex"] {
                        match named_command("batcher", command, json.clone()) {
                            Ok(made) => prop_assert_eq!(made.name(), command),
                            Err(err) => {
                                prop_assert_eq!(err.status, StatusCode::BAD_REQUEST);
                                prop_assert_eq!(err.code, "bad_parameters");
                            }
                        }
                    }
                }
                Err(err) => {
                    prop_assert_eq!(err.status, StatusCode::BAD_REQUEST);
                    prop_assert!(!err.message.is_empty());
                }
            }
        }
    }
}
