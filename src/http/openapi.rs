//! The control plane's OpenAPI document, built from the same handlers that the router serves
//! (each route is added together with its description), so that the two cannot drift apart.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::error::ApiError;

/// The document's frame: title, tags, the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sora control plane",
        description = "List, inspect, poke and call the services of a running Sora node; \
                       follow its events; probe its health; scrape its metrics."
    ),
    modifiers(&Bearer),
    tags(
        (name = "services", description = "What runs, and how it is doing"),
        (name = "calls", description = "Commands and actions; they need the bearer token when one is configured"),
        (name = "jobs", description = "Durable jobs: their state, the dead letters, retrying and discarding them"),
        (name = "state", description = "What services keep in the store under their names"),
        (name = "events", description = "Live events as server-sent events"),
        (name = "probes", description = "Health, readiness and metrics"),
    )
)]
pub(crate) struct ApiDoc;

/// The name of the bearer scheme in the document.
pub(crate) const BEARER: &str = "bearer";

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// How a call (a command or an action) can fail.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "it only describes the responses")]
pub(crate) enum CallErrors {
    /// Malformed JSON, query or parameters; `field` names the one at fault when known.
    #[response(status = 400)]
    BadRequest(ApiError),
    /// A token is configured and the request lacks it or has another.
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// No such service, action or command.
    #[response(status = 404)]
    NotFound(ApiError),
    /// The service is disabled, or stopping with its runtime.
    #[response(status = 409)]
    Conflict(ApiError),
    /// The body is over the configured limit.
    #[response(status = 413)]
    TooLarge(ApiError),
    /// The service's queue is at its limit; retry later.
    #[response(status = 429)]
    Overloaded(ApiError),
    /// The handler failed; the message is the handler's own.
    #[response(status = 500)]
    Failed(ApiError),
    /// The service is starting, restarting, crashed or stopped.
    #[response(status = 503)]
    Unavailable(ApiError),
    /// The call outlasted `timeoutMs`; the handler was cancelled.
    #[response(status = 504)]
    Timeout(ApiError),
}

/// How reading a service can fail.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "it only describes the responses")]
pub(crate) enum ReadErrors {
    /// No such service.
    #[response(status = 404)]
    NotFound(ApiError),
    /// The service cannot answer now (its host is being replaced).
    #[response(status = 503)]
    Unavailable(ApiError),
}

/// How a request about durable jobs can fail.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "it only describes the responses")]
pub(crate) enum JobErrors {
    /// The id is no job id, or the query is malformed.
    #[response(status = 400)]
    BadRequest(ApiError),
    /// A token is configured and the request lacks it or has another.
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// No such job (`unknown_job`) or service, or the node keeps none (`no_store`).
    #[response(status = 404)]
    NotFound(ApiError),
    /// The job's state does not allow it (`job_conflict`): only a dead job is retried, and a
    /// running one is not discarded.
    #[response(status = 409)]
    Conflict(ApiError),
    /// The store failed.
    #[response(status = 500)]
    Failed(ApiError),
}

/// How a request about a service's state can fail.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "it only describes the responses")]
pub(crate) enum StateErrors {
    /// The query is malformed, or the key is no state key: empty, past 512 bytes, `.` or `..`
    /// (`bad_state`).
    #[response(status = 400)]
    BadRequest(ApiError),
    /// A token is configured and the request lacks it or has another.
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// Nothing is kept under the key (`unknown_key`), or the node keeps no store (`no_store`).
    #[response(status = 404)]
    NotFound(ApiError),
    /// The store failed.
    #[response(status = 500)]
    Failed(ApiError),
}
