//! The endpoints: a thin layer over [`RuntimeHandle`] and [`ServiceRef`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::handle::ServiceRef;
use crate::runtime::RuntimeHandle;
use crate::service::{Command, Health};
use crate::status::{ServiceInfo, ServiceKind, ServiceState, ServiceStatus};
use crate::{CallOptions, Error};

/// The header that carries a call's correlation id, both ways.
pub(crate) const CORRELATION_HEADER: &str = "x-correlation-id";

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) runtime: RuntimeHandle,
    pub(crate) live: Arc<super::live::Live>,
    pub(crate) metrics: Arc<super::metrics::Metrics>,
}

type ApiResult<T> = Result<T, ApiError>;

fn service(api: &Api, name: &str) -> ApiResult<ServiceRef> {
    Ok(api.runtime.service_by_name(name)?)
}

/// One line of `GET /api/services`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceSummary {
    name: String,
    kinds: Vec<ServiceKind>,
    state: ServiceState,
    health: Health,
}

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

pub(crate) async fn info(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceInfo>> {
    Ok(Json(service(&api, &name)?.info().await?))
}

pub(crate) async fn status(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceStatus>> {
    Ok(Json(service(&api, &name)?.status().await?))
}

/// The query of a call: `?priority=10&timeoutMs=500`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CallQuery {
    priority: Option<i32>,
    timeout_ms: Option<u64>,
}

/// The options of a call, from its query and its correlation header.
fn call_options(
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> ApiResult<CallOptions> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let correlation_id = match headers.get(CORRELATION_HEADER) {
        Some(value) => Some(Arc::from(value.to_str().map_err(|_| {
            ApiError::bad_request("the X-Correlation-Id header is not visible ASCII")
        })?)),
        None => None,
    };
    Ok(CallOptions {
        priority: query.priority.unwrap_or(0),
        timeout: query.timeout_ms.map(Duration::from_millis),
        correlation_id,
    })
}

/// A body read as JSON; an empty body is `null`.
fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<serde_json::Value> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "payload_too_large", e.body_text())
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

pub(crate) async fn act(
    State(api): State<Api>,
    Path((name, action)): Path<(String, String)>,
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let options = call_options(query, &headers)?;
    let params = json_body(body)?;
    let service = service(&api, &name)?;
    let answer = service.act_json(&action, params, options.clone()).await;
    let result = answer.map(Json).map_err(ApiError::from);
    Ok(reply(&options, result))
}

async fn run_command(
    api: &Api,
    name: &str,
    command: Command,
    options: CallOptions,
) -> ApiResult<Response> {
    let request = service(api, name)?
        .command(command)
        .options(options.clone());
    let result = request.await.map(|()| StatusCode::NO_CONTENT);
    Ok(reply(&options, result.map_err(ApiError::from)))
}

/// `POST /api/services/{name}/{verb}`: `trigger`, `check-queue`, `pause` or `resume`.
pub(crate) async fn verb(
    State(api): State<Api>,
    Path((name, verb)): Path<(String, String)>,
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let command = match verb.as_str() {
        Command::TRIGGER => Command::TriggerNow,
        Command::CHECK_QUEUE => Command::CheckQueue,
        "pause" | "resume" => {
            let service = service(&api, &name)?;
            if verb == "pause" {
                service.pause()?;
            } else {
                service.resume()?;
            }
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        _ => return Err(ApiError::not_found()),
    };
    let options = call_options(query, &headers)?;
    run_command(&api, &name, command, options).await
}

/// The body of `process-batch`: `{"batchSize": 100, "filter": "..."}`, both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchBody {
    batch_size: Option<usize>,
    filter: Option<String>,
}

pub(crate) async fn process_batch(
    State(api): State<Api>,
    Path(name): Path<String>,
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let options = call_options(query, &headers)?;
    let batch: BatchBody = match json_body(body)? {
        serde_json::Value::Null => BatchBody::default(),
        value => serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            let mut err = ApiError::bad_request(e.inner().to_string());
            err.field = (field != ".").then_some(field);
            err
        })?,
    };
    let command = Command::ProcessBatch {
        size: batch.batch_size,
        filter: batch.filter,
    };
    run_command(&api, &name, command, options).await
}

pub(crate) async fn custom_command(
    State(api): State<Api>,
    Path((name, command)): Path<(String, String)>,
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let options = call_options(query, &headers)?;
    let args = match json_body(body)? {
        serde_json::Value::Null => None,
        value => Some(value.to_string()),
    };
    let command = match command.as_str() {
        Command::TRIGGER => Command::TriggerNow,
        Command::CHECK_QUEUE => Command::CheckQueue,
        _ => Command::Custom {
            name: command,
            args,
        },
    };
    run_command(&api, &name, command, options).await
}

/// The body of `GET /health`.
#[derive(Debug, Serialize)]
pub(crate) struct HealthReport {
    status: &'static str,
    services: Vec<ServiceHealth>,
}

#[derive(Debug, Serialize)]
struct ServiceHealth {
    name: String,
    #[serde(flatten)]
    health: Health,
}

pub(crate) async fn health(State(api): State<Api>) -> Response {
    let services: Vec<ServiceHealth> = api
        .runtime
        .health()
        .await
        .into_iter()
        .map(|(name, health)| ServiceHealth { name, health })
        .collect();
    let status = if services.iter().any(|s| !s.health.is_up()) {
        "unhealthy"
    } else if services
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
    (code, Json(HealthReport { status, services })).into_response()
}

pub(crate) async fn live(State(api): State<Api>) -> Response {
    if api.runtime.is_shutting_down() {
        // A probe says down (503), where a call to a stopping service conflicts (409).
        let mut err = ApiError::from(Error::ShuttingDown);
        err.status = StatusCode::SERVICE_UNAVAILABLE;
        return err.into_response();
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "status": "live" })),
    )
        .into_response()
}

pub(crate) async fn ready(State(api): State<Api>) -> Response {
    if api.runtime.is_ready().await {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        let body = serde_json::json!({ "status": "not ready" });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let text = api.metrics.render(&api.runtime).await;
    let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, kind);
    response
}
