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

mod auth;
mod error;
mod jobs;
mod live;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod plane;
mod routes;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::middleware;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Error;
use crate::config::Loaded;
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
    pub(crate) read_token: Option<Arc<str>>,
    pub(crate) body_limit: usize,
    pub(crate) open_probes: bool,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) cors_origins: Vec<String>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |t: &Option<Arc<str>>| t.as_ref().map(|_| "<set>");
        f.debug_struct("HttpConfig")
            .field("address", &self.address)
            .field("token", &set(&self.token))
            .field("read_token", &set(&self.read_token))
            .field("body_limit", &self.body_limit)
            .field("open_probes", &self.open_probes)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

/// The default port of the control plane.
pub const DEFAULT_PORT: u16 = 7070;

impl HttpConfig {
    /// The control plane's settings from the configuration: `explicit` (the builder's) over the
    /// `[http]` table; the token from the builder, else `SORA_TOKEN`, else the file. `None` if
    /// neither asks for it.
    pub(crate) fn resolve(
        loaded: &Loaded,
        explicit: Option<HttpConfig>,
    ) -> Result<Option<HttpConfig>, Error> {
        let file = loaded.file.http.as_ref();
        let mut http = match (explicit, file) {
            (Some(http), _) => http,
            (None, Some(file)) => {
                let mut http = HttpConfig::default();
                if let Some(address) = file.address {
                    http.address = address;
                }
                if let Some(limit) = file.body_limit {
                    http.body_limit = limit;
                }
                if let Some(open) = file.open_probes {
                    http.open_probes = open;
                }
                if let Some(token) = &file.read_token {
                    http.read_token = Some(std::sync::Arc::from(token.0.as_str()));
                }
                if let Some(timeout) = file.header_timeout {
                    http.header_timeout = timeout;
                }
                if let Some(timeout) = file.body_timeout {
                    http.body_timeout = timeout;
                }
                if let Some(timeout) = file.write_timeout {
                    http.write_timeout = timeout;
                }
                if let Some(connections) = file.max_connections {
                    http.max_connections = connections;
                }
                if let Some(origins) = &file.cors_origins {
                    http.cors_origins = origins.clone();
                }
                http
            }
            (None, None) => return Ok(None),
        };
        if http.token.is_none() {
            let token = loaded
                .token
                .clone()
                .or_else(|| file.and_then(|f| f.token.clone()));
            http.token = token.map(|t| std::sync::Arc::from(t.0));
        }
        if let Some((key, why)) = http.invalid() {
            return Err(loaded.error_at(&["http".to_owned(), key.to_owned()], why));
        }
        Ok(Some(http))
    }

    /// Serves on `address`.
    pub fn new(address: SocketAddr) -> Self {
        HttpConfig {
            address,
            token: None,
            read_token: None,
            body_limit: 1024 * 1024,
            open_probes: true,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            cors_origins: Vec::new(),
        }
    }

    /// Serves on 127.0.0.1 at `port` (0 picks a free one; see
    /// [`RuntimeHandle::http_address`]).
    pub fn local(port: u16) -> Self {
        HttpConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Requires `Authorization: Bearer <token>` on every endpoint: this token reads and acts.
    /// The probes stay open unless [`open_probes`](Self::open_probes) says otherwise.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// A second token that reads (services, status, events, metrics) and cannot act: a call
    /// with it is refused with 403. It needs [`token`](Self::token) set too; the start fails
    /// otherwise.
    pub fn read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(Arc::from(token.into()));
        self
    }

    /// Whether health and metrics stay open when a token is set (default `true`, so that probes
    /// and scrapers need no secret); with `false` they need a token too (the read-only one
    /// does).
    pub fn open_probes(mut self, open: bool) -> Self {
        self.open_probes = open;
        self
    }

    /// The largest request body taken, in bytes (default 1 MiB); a larger one gets 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long a client may take to send a request's head (default 10 s); a kept-alive
    /// connection that sends nothing for as long is closed too.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's body once its head has arrived
    /// (default 30 s); past it the call is answered 408 and does not run.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long an answer may wait for the client to take it (default 30 s): a client that
    /// stops reading, with its socket's buffer full, has its connection closed then. An event
    /// stream's client that stops reading goes the same way.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How many connections are served at once (default 1024); one more is answered 503 and
    /// closed at once.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Lets pages of `origin` (`https://ops.example.com`, or `*` for any) read the plane's
    /// answers and its event stream from a browser (CORS). None is allowed by default.
    pub fn cors_origin(mut self, origin: impl Into<String>) -> Self {
        self.cors_origins.push(origin.into());
        self
    }

    /// What is wrong with these settings, if anything: the key and why.
    pub(crate) fn invalid(&self) -> Option<(&'static str, String)> {
        if self.read_token.is_some() && self.token.is_none() {
            return Some((
                "read_token",
                "needs `token` too: without it, calls would need no token at all".into(),
            ));
        }
        if let (Some(read), Some(act)) = (&self.read_token, &self.token) {
            if read == act {
                return Some(("read_token", "must differ from `token`".into()));
            }
        }
        for (key, token) in [("token", &self.token), ("read_token", &self.read_token)] {
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Some((key, "must not be empty (leave it out for none)".into()));
            }
        }
        if self.max_connections == 0 {
            return Some(("max_connections", "must be at least 1".into()));
        }
        for (key, timeout) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if timeout.is_zero() {
                return Some((key, "must be longer than zero".into()));
            }
        }
        for origin in &self.cors_origins {
            if origin != "*" && HeaderValue::from_str(origin).is_err() {
                return Some(("cors_origins", format!("`{origin}` is not an origin")));
            }
        }
        None
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
/// Mounted in a server of your own, the plane's own limits on connections, heads and bodies
/// are that server's to set.
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
        runtime: runtime.clone(),
        openapi,
    };
    let app = app
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(
            config.body_timeout,
            server::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(runtime, server::closing))
        .with_state(api);
    match cors(config) {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// The CORS layer, when origins are allowed.
fn cors(config: &HttpConfig) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let headers = [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::HeaderName::from_static(routes::CORRELATION_HEADER),
        header::HeaderName::from_static("last-event-id"),
        header::HeaderName::from_static(jobs::IDEMPOTENCY_HEADER),
    ];
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers(headers)
            .expose_headers([
                header::HeaderName::from_static(routes::CORRELATION_HEADER),
                header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Every endpoint, each added with its OpenAPI description, behind the token it needs.
fn endpoints(config: &HttpConfig) -> OpenApiRouter<Api> {
    let tokens = auth::Tokens {
        act: config.token.clone(),
        read: config.read_token.clone(),
    };
    let guard = |needed| middleware::from_fn_with_state((tokens.clone(), needed), auth::require);
    let mut calls = OpenApiRouter::new()
        .routes(routes!(routes::trigger))
        .routes(routes!(routes::check_queue))
        .routes(routes!(routes::pause))
        .routes(routes!(routes::resume))
        .routes(routes!(routes::process_batch))
        .routes(routes!(routes::custom_command))
        .routes(routes!(routes::act))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::discard))
        .routes(routes!(state::clear))
        .routes(routes!(state::remove));
    let mut reads = OpenApiRouter::new()
        .routes(routes!(routes::list))
        .routes(routes!(routes::info))
        .routes(routes!(routes::status))
        .routes(routes!(routes::runs))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::of_service))
        .routes(routes!(state::page))
        .routes(routes!(state::entry))
        .routes(routes!(live::events))
        .routes(routes!(routes::openapi));
    let mut probes = OpenApiRouter::new()
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::health))
        .routes(routes!(routes::live))
        .routes(routes!(routes::ready));
    // Without a token there is nothing to check: no layer, no cost per call.
    if tokens.guarded() {
        calls = calls.route_layer(guard(auth::Access::Act));
        reads = reads.route_layer(guard(auth::Access::Read));
        if !config.open_probes {
            probes = probes.route_layer(guard(auth::Access::Read));
        }
    }
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(reads)
        .merge(probes)
        .merge(calls)
}
