//! The HTTP control plane: operators list, inspect, poke and call services from outside the
//! process, and probes read health.
//!
//! The runtime serves it when it is given an address ([`RuntimeBuilder::http`]); it binds
//! before any service starts (a taken port fails the start) and stops after the last service.
//! [`router`] gives the same endpoints as an axum [`Router`] to mount in a server of your own.
//!
//! | method | path | what it does |
//! |---|---|---|
//! | GET | `/api/services` | every service: name, kinds, state, health |
//! | GET | `/api/services/{name}` | what the service declared ([`ServiceInfo`](crate::ServiceInfo)) |
//! | GET | `/api/services/{name}/status` | its [`ServiceStatus`](crate::ServiceStatus) |
//! | POST | `/api/services/{name}/trigger` | runs a periodic service now |
//! | POST | `/api/services/{name}/check-queue` | the check-queue command |
//! | POST | `/api/services/{name}/pause` | a periodic service skips its ticks until resumed |
//! | POST | `/api/services/{name}/resume` | its schedule runs again |
//! | POST | `/api/services/{name}/process-batch` | body `{"batchSize": 100, "filter": "..."}`, both optional |
//! | POST | `/api/services/{name}/commands/{command}` | a custom command; the JSON body is its arguments |
//! | POST | `/api/services/{name}/actions/{action}` | JSON parameters in, JSON reply out |
//! | GET | `/api/events` | server-sent events, `?service=S&event=E`; `Last-Event-ID` resumes |
//! | GET | `/metrics` | Prometheus text: per service and per action |
//! | GET | `/api/openapi.json` | the OpenAPI 3.1 document of all of these |
//! | GET | `/health` | every service's health; 200 when healthy or degraded, 503 when unhealthy |
//! | GET | `/health/live` | 200 while the runtime runs |
//! | GET | `/health/ready` | 200 once start-up is over and every service is ready |
//!
//! Calls take `?priority=N&timeoutMs=N` and an `X-Correlation-Id` header, which the reply
//! echoes. Errors are JSON, `{"code": "...", "message": "...", "field": "..."}`, with the stable
//! codes of [`Error::code`](crate::Error::code) and these statuses: 400 malformed JSON or
//! parameters, 401 a missing or wrong token, 404 an unknown service, action, command or path,
//! 405 a wrong method, 409 a disabled or stopping service, 413 a body over the limit, 429 a
//! service whose queue is at its limit, 503 a service that cannot take calls now, 504 a timeout.
//!
//! [`RuntimeBuilder::http`]: crate::RuntimeBuilder::http

mod error;
mod live;
pub(crate) mod metrics;
pub(crate) mod openapi;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::runtime::RuntimeHandle;
use error::ApiError;
use routes::Api;

/// Where and how the control plane is served.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sora::Error> {
/// use sora::http::HttpConfig;
///
/// let runtime = sora::Runtime::builder()
///     .http(HttpConfig::local(0).token("s3cret"))
///     .start()
///     .await?;
/// let address = runtime.http_address().expect("served");
/// assert!(address.ip().is_loopback());
/// # runtime.shutdown().await }
/// ```
#[derive(Clone)]
pub struct HttpConfig {
    pub(crate) address: SocketAddr,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) body_limit: usize,
    pub(crate) open_probes: bool,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("body_limit", &self.body_limit)
            .field("open_probes", &self.open_probes)
            .finish()
    }
}

/// The default port of the control plane.
pub const DEFAULT_PORT: u16 = 7070;

impl HttpConfig {
    /// Serves on `address`.
    pub fn new(address: SocketAddr) -> Self {
        HttpConfig {
            address,
            token: None,
            body_limit: 1024 * 1024,
            open_probes: true,
        }
    }

    /// Serves on 127.0.0.1 at `port` (0 picks a free one; see
    /// [`RuntimeHandle::http_address`]).
    pub fn local(port: u16) -> Self {
        HttpConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Requires `Authorization: Bearer <token>` on every endpoint that changes something or
    /// calls a service (every `POST`). Reading endpoints and health stay open.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// Whether health and metrics stay open when a token is set (default `true`, so that probes
    /// and scrapers need no secret); with `false` they need the token too.
    pub fn open_probes(mut self, open: bool) -> Self {
        self.open_probes = open;
        self
    }

    /// The largest request body taken, in bytes (default 1 MiB); a larger one gets 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

impl Default for HttpConfig {
    /// 127.0.0.1 at [`DEFAULT_PORT`], no token, 1 MiB bodies.
    fn default() -> Self {
        HttpConfig::local(DEFAULT_PORT)
    }
}

/// The control plane's endpoints over `runtime`, to serve or to mount in another router.
///
/// Call it inside a Tokio runtime: it subscribes to every event at once, for the live stream.
pub fn router(runtime: RuntimeHandle, config: &HttpConfig) -> Router {
    let (app, doc) = endpoints(config).split_for_parts();
    let openapi = match doc.to_json() {
        Ok(json) => Arc::from(json),
        Err(err) => {
            tracing::error!(%err, "control plane: the OpenAPI document could not be rendered");
            Arc::from("{}")
        }
    };
    let api = Api {
        live: live::Live::start(&runtime),
        metrics: runtime.metrics(),
        runtime,
        openapi,
    };
    app.fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(api)
}

/// Every endpoint, each added with its OpenAPI description.
fn endpoints(config: &HttpConfig) -> OpenApiRouter<Api> {
    let token = || middleware::from_fn_with_state(config.token.clone(), require_token);
    let mut calls = OpenApiRouter::new()
        .routes(routes!(routes::trigger))
        .routes(routes!(routes::check_queue))
        .routes(routes!(routes::pause))
        .routes(routes!(routes::resume))
        .routes(routes!(routes::process_batch))
        .routes(routes!(routes::custom_command))
        .routes(routes!(routes::act));
    // Without a token there is nothing to check: no layer, no cost per call.
    if config.token.is_some() {
        calls = calls.route_layer(token());
    }
    let mut probes = OpenApiRouter::new()
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::health))
        .routes(routes!(routes::live))
        .routes(routes!(routes::ready));
    if !config.open_probes && config.token.is_some() {
        probes = probes.route_layer(token());
    }
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::list))
        .routes(routes!(routes::info))
        .routes(routes!(routes::status))
        .routes(routes!(live::events))
        .routes(routes!(routes::openapi))
        .merge(probes)
        .merge(calls)
}

/// Refuses a request without the configured bearer token.
async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.trim().as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the bearer token is wrong").into_response(),
        None => ApiError::unauthorized("this endpoint needs `Authorization: Bearer <token>`")
            .into_response(),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bound listener and the configuration to serve with.
pub(crate) struct Bound {
    listener: tokio::net::TcpListener,
    config: HttpConfig,
}

impl Bound {
    /// Binds the address, so that a taken port fails the start before any service runs.
    pub(crate) async fn bind(config: HttpConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.address).await?;
        Ok(Bound { listener, config })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the runtime has stopped.
    pub(crate) fn serve(self, runtime: RuntimeHandle) -> tokio::task::JoinHandle<()> {
        let app = router(runtime.clone(), &self.config);
        let address = self.local_addr().ok();
        tokio::spawn(async move {
            tracing::info!(?address, "control plane listening");
            let stopped = async move {
                let _ = runtime.wait().await;
            };
            if let Err(err) = axum::serve(self.listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(%err, "control plane stopped");
            }
        })
    }
}
