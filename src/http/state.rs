//! The endpoints of services' state: what a service keeps under its name, read page by page
//! or by key, and cleared by an operator (a renamed or removed service's leftovers).

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openapi::StateErrors;
use super::routes::{Api, Params, Path};
use crate::StateEntry;

/// The most values one page holds.
const PAGE_LIMIT: usize = 1000;

/// The values a page holds unless it asks: `?limit=`.
const PAGE_DEFAULT: usize = 100;

type ApiResult<T> = Result<T, ApiError>;

/// One value of a service's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntryView {
    key: String,
    /// The value, as the service wrote it.
    value: serde_json::Value,
    /// The write that made it; every write of the store gets a number of its own.
    version: u64,
    #[schema(value_type = crate::schema::TimeSchema)]
    written: SystemTime,
}

impl From<StateEntry> for EntryView {
    fn from(entry: StateEntry) -> Self {
        EntryView {
            key: entry.key,
            value: entry.value,
            version: entry.version,
            written: entry.written,
        }
    }
}

/// A page of a service's state, in the order of its keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StatePage {
    entries: Vec<EntryView>,
    /// The key to pass as `after` for the next page; absent on the last.
    next: Option<String>,
}

/// Which page: `?after=cursor&limit=50`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StateQuery {
    /// Start after this key (the `next` of the page before).
    after: Option<String>,
    /// At most this many (default 100, most 1000).
    limit: Option<usize>,
}

/// What was cleared.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Cleared {
    /// How many values there were.
    cleared: usize,
}

/// The state under `name`, or the answer of a node that keeps no store.
fn state(api: &Api, name: &str) -> ApiResult<crate::State> {
    if api.runtime.jobs().is_none() {
        return Err(super::jobs::no_store());
    }
    Ok(api.runtime.state(name))
}

fn unknown_key(name: &str, key: &str) -> ApiError {
    let shown = crate::store::state::shortened(key, 64);
    let mut err = ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_key",
        format!("`{name}` keeps nothing under `{shown}`"),
    );
    err.field = Some("key".into());
    err
}

/// A page of the state kept under a service's name, in the order of its keys. The name need
/// not be a service that runs here: a renamed or removed service's state stays under its old
/// name until it is cleared.
#[utoipa::path(get, path = "/api/services/{name}/state", tag = "state",
    params(("name" = String, Path, description = "The service's name"), StateQuery),
    responses((status = 200, body = StatePage), StateErrors))]
pub(crate) async fn page(
    State(api): State<Api>,
    Path(name): Path<String>,
    Params(query): Params<StateQuery>,
) -> ApiResult<Json<StatePage>> {
    let limit = query.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_LIMIT);
    let state = state(&api, &name)?;
    // One more than the page, to know whether another follows.
    let mut entries = state.entries(query.after.as_deref(), limit + 1)?;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| e.key.clone())
    } else {
        None
    };
    Ok(Json(StatePage {
        entries: entries.into_iter().map(EntryView::from).collect(),
        next,
    }))
}

/// One value of the state kept under a service's name.
#[utoipa::path(get, path = "/api/services/{name}/state/{key}", tag = "state",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("key" = String, Path, description = "The key, percent-encoded")),
    responses((status = 200, body = EntryView), StateErrors))]
pub(crate) async fn entry(
    State(api): State<Api>,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<Json<EntryView>> {
    match state(&api, &name)?.entry(&key)? {
        Some(entry) => Ok(Json(entry.into())),
        None => Err(unknown_key(&name, &key)),
    }
}

/// Removes one value of the state kept under a service's name.
#[utoipa::path(delete, path = "/api/services/{name}/state/{key}", tag = "state",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("key" = String, Path, description = "The key, percent-encoded")),
    responses((status = 204, description = "It is gone"), StateErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn remove(
    State(api): State<Api>,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if state(&api, &name)?.remove(&key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_key(&name, &key))
    }
}

/// Removes every value kept under a service's name.
#[utoipa::path(delete, path = "/api/services/{name}/state", tag = "state",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = Cleared), StateErrors),
    security((), ("bearer" = [])))]
pub(crate) async fn clear(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> ApiResult<Json<Cleared>> {
    let cleared = state(&api, &name)?.clear().await?;
    Ok(Json(Cleared { cleared }))
}
