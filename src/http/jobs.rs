//! The endpoints of durable jobs: a job by id, lists of them, retrying the dead, discarding.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openapi::JobErrors;
use super::routes::{Api, Params, Path};
use crate::runtime::Jobs;
use crate::store::{Enqueued, Job, JobFilter, JobId, JobState};

/// The header that gives a durable call its idempotency key.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The most jobs one list answers.
const LIST_LIMIT: usize = 1000;

type ApiResult<T> = Result<T, ApiError>;

/// A job as the control plane shows it: its parameters and reply as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobView {
    id: String,
    service: String,
    action: String,
    /// The action's parameters.
    params: serde_json::Value,
    priority: i32,
    correlation_id: Option<String>,
    key: Option<String>,
    /// `queued`, `scheduled` (with `at`), `running` (with `attempt`), `retrying` (with `at` and
    /// `attempts`), `completed` or `dead`.
    #[serde(flatten)]
    state: JobState,
    max_attempts: u32,
    /// How long one attempt may run, in milliseconds.
    timeout_ms: Option<u64>,
    /// How often its process stopped while it was claimed.
    interruptions: u32,
    /// Every failed attempt, oldest first.
    errors: Vec<crate::store::AttemptError>,
    /// The reply of the attempt that completed it.
    reply: Option<serde_json::Value>,
    #[schema(value_type = crate::schema::TimeSchema)]
    created: SystemTime,
    #[schema(value_type = Option<crate::schema::TimeSchema>)]
    finished: Option<SystemTime>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        // Parameters and replies are kept as JSON; a value that is not shows as a string.
        let json = |bytes: &[u8]| {
            serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into())
            })
        };
        JobView {
            id: job.id.to_string(),
            params: json(&job.params),
            reply: job.reply.as_deref().map(json),
            service: job.service,
            action: job.action,
            priority: job.priority,
            correlation_id: job.correlation_id,
            key: job.key,
            state: job.state,
            max_attempts: job.max_attempts,
            timeout_ms: job
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            interruptions: job.interruptions,
            errors: job.errors,
            created: job.created,
            finished: job.finished,
        }
    }
}

/// What a durable call answers when it does not wait: the job, and whether this call made it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    /// The job's id; follow it at `/api/jobs/{id}`.
    id: String,
    /// `false` when the idempotency key named a job that was already kept.
    new: bool,
}

/// A 202 for a committed job, with where to follow it.
pub(crate) fn accepted(enqueued: Enqueued) -> Response {
    let id = enqueued.id().to_string();
    let location = format!("/api/jobs/{id}");
    let body = Accepted {
        id,
        new: matches!(enqueued, Enqueued::Created(_)),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The runtime's jobs, or the answer of a node that keeps none.
fn jobs(api: &Api) -> ApiResult<Jobs> {
    api.runtime.jobs().ok_or_else(no_store)
}

/// The answer of a node that keeps no store.
pub(crate) fn no_store() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_store",
        "this node keeps no store: no service declares a durable action or state, and none is \
         configured",
    )
}

fn job_id(text: &str) -> ApiResult<JobId> {
    text.parse().map_err(|e: crate::store::BadJobId| {
        let mut err = ApiError::bad_request(format!("`{text}` is not a job id: {e}"));
        err.field = Some("id".into());
        err
    })
}

/// Which jobs a list shows: `?service=mailer&state=dead&limit=50&order=newest&after=ID`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobQuery {
    /// Only this service's (on `/api/jobs`).
    service: Option<String>,
    /// Only those in this state: `queued`, `scheduled`, `running`, `retrying`, `completed`,
    /// `dead`.
    state: Option<String>,
    /// At most this many (default and most: 1000).
    limit: Option<usize>,
    /// `oldest` first (the default) or `newest` first.
    order: Option<String>,
    /// Start after this job: the `next` of the page before.
    after: Option<String>,
}

/// A page of jobs, and where the next one starts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JobList {
    jobs: Vec<JobView>,
    /// The `after` of the next page; absent on the last. A page reads at most 10,000 jobs,
    /// so one whose filter matches few of many may hold fewer than its limit, and a `next`.
    next: Option<String>,
}

const STATES: [&str; 6] = [
    "queued",
    "scheduled",
    "running",
    "retrying",
    "completed",
    "dead",
];

fn list_jobs(api: &Api, service: Option<String>, query: JobQuery) -> ApiResult<JobList> {
    if let Some(state) = &query.state
        && !STATES.contains(&state.as_str())
    {
        let mut err = ApiError::bad_request(format!(
            "`{state}` is no job state: one of {}",
            STATES.join(", ")
        ));
        err.field = Some("state".into());
        return Err(err);
    }
    let newest_first = match query.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            let mut err =
                ApiError::bad_request(format!("`{other}` is no order: `oldest` or `newest`"));
            err.field = Some("order".into());
            return Err(err);
        }
    };
    let after = query
        .after
        .as_deref()
        .map(job_id)
        .transpose()
        .map_err(|mut err| {
            err.field = Some("after".into());
            err
        })?;
    let filter = JobFilter {
        service,
        state: query.state,
        limit: Some(query.limit.unwrap_or(LIST_LIMIT).clamp(1, LIST_LIMIT)),
        after,
        newest_first,
    };
    let page = jobs(api)?.page(&filter)?;
    Ok(JobList {
        jobs: page.jobs.into_iter().map(JobView::from).collect(),
        next: page.next.map(|id| id.to_string()),
    })
}

/// A page of the durable jobs of every service, oldest first unless asked.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    params(JobQuery),
    responses((status = 200, body = JobList), JobErrors))]
pub(crate) async fn list(
    State(api): State<Api>,
    Params(query): Params<JobQuery>,
) -> ApiResult<Json<JobList>> {
    let service = query.service.clone();
    Ok(Json(list_jobs(&api, service, query)?))
}

/// A page of a service's durable jobs, oldest first unless asked.
#[utoipa::path(get, path = "/api/services/{name}/jobs", tag = "jobs",
    params(("name" = String, Path, description = "The service's name"), JobQuery),
    responses((status = 200, body = JobList), JobErrors))]
pub(crate) async fn of_service(
    State(api): State<Api>,
    Path(name): Path<String>,
    Params(query): Params<JobQuery>,
) -> ApiResult<Json<JobList>> {
    // The service's own name, as the jobs carry it; an unknown one is a 404.
    let service = api.runtime.service_by_name(&name)?.name().to_owned();
    if query.service.is_some() {
        let mut err = ApiError::bad_request("the path names the service already");
        err.field = Some("service".into());
        return Err(err);
    }
    Ok(Json(list_jobs(&api, Some(service), query)?))
}

/// A job: its parameters, state, attempts, errors and reply.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), JobErrors))]
pub(crate) async fn get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = job_id(&id)?;
    Ok(Json(jobs(&api)?.get(id)?.into()))
}

/// Gives a dead job a new series of attempts.
#[utoipa::path(post, path = "/api/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 204, description = "It is ready again"), JobErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn retry(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = job_id(&id)?;
    jobs(&api)?.retry(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a job that is not running, with its idempotency key.
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 204, description = "It is gone"), JobErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn discard(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = job_id(&id)?;
    if jobs(&api)?.discard(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::Error::UnknownJob { id: id.to_string() }.into())
    }
}

/// How long a durable call is delayed, from its query.
pub(crate) fn delay(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}
