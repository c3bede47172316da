//! Serving the control plane: an accept loop of Sora's own, so that every connection is bounded.
//!
//! - At most [`HttpConfig::max_connections`] connections at once; one more is answered `503`
//!   and closed at once.
//! - A request's head must arrive within [`HttpConfig::header_timeout`], and a kept-alive
//!   connection that sends nothing for as long is closed (hyper's header read timeout).
//! - A request's body must arrive within [`HttpConfig::body_timeout`] of its head, or the call
//!   is answered `408` and the connection closed.
//! - An answer the client does not take (its socket's buffer stays full) for
//!   [`HttpConfig::write_timeout`] closes the connection.
//! - Once the runtime shuts down, every answer says `Connection: close`; once it has stopped,
//!   the connections still open are answered for a moment more ([`LINGER`]), so that a request
//!   sent on a kept-alive connection just then gets an answer (`409` or `503`) rather than a
//!   closed connection, and then closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::HttpConfig;
use crate::runtime::RuntimeHandle;

/// How long connections still open when the runtime has stopped are answered before they
/// are closed.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// The answer to a connection over the cap, written whole to the new socket.
const FULL: &[u8] = concat!(
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n",
    "content-length: 71\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
    r#"{"code":"overloaded","message":"too many connections to this node now"}"#
)
.as_bytes();

/// A bound listener and the configuration to serve with.
pub(crate) struct Bound {
    listener: TcpListener,
    config: HttpConfig,
}

/// A bound listener with its endpoints, ready to serve.
pub(crate) struct Prepared {
    bound: Bound,
    app: Router,
    runtime: RuntimeHandle,
}

impl Bound {
    /// Binds the address, so that a taken port fails the start before any service runs.
    pub(crate) async fn bind(config: HttpConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.address).await?;
        Ok(Bound { listener, config })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Builds the endpoints over `runtime` before its services start, so that the live stream
    /// keeps their first events too.
    pub(crate) fn prepare(self, runtime: RuntimeHandle) -> Prepared {
        let app = super::router(runtime.clone(), &self.config);
        Prepared {
            bound: self,
            app,
            runtime,
        }
    }
}

impl Prepared {
    /// Serves until the runtime has stopped and the last connection has closed.
    pub(crate) fn serve(self) -> tokio::task::JoinHandle<()> {
        let Prepared {
            bound,
            app,
            runtime,
        } = self;
        let address = bound.local_addr().ok();
        tokio::spawn(async move {
            tracing::info!(?address, "control plane listening");
            accept(bound.listener, app, &bound.config, runtime).await;
        })
    }
}

/// Connections turned away because the cap was reached, for the log's sake.
static TURNED_AWAY: AtomicU64 = AtomicU64::new(0);

async fn accept(listener: TcpListener, app: Router, config: &HttpConfig, runtime: RuntimeHandle) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let stopped = CancellationToken::new();
    let mut connections = JoinSet::new();
    let ended = runtime.wait();
    tokio::pin!(ended);
    loop {
        tokio::select! {
            _ = &mut ended => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tracing::warn!(%err, "control plane: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (app, stopped) = (app.clone(), stopped.clone());
                        let (header, write) = (config.header_timeout, config.write_timeout);
                        connections.spawn(async move {
                            let stream = TimedWrites::new(stream, write);
                            serve_connection(stream, app, header, stopped).await;
                            drop(slot);
                        });
                    }
                    Err(_) => turn_away(stream, peer, config.max_connections),
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stopped.cancel();
    while connections.join_next().await.is_some() {}
}

/// Answers a connection over the cap with `503` and closes it, without waiting on it.
fn turn_away(stream: TcpStream, peer: std::net::SocketAddr, cap: usize) {
    // The socket is new, so its send buffer takes the whole answer at once. What the client
    // has sent already is read first: closing a socket with unread bytes resets it, and the
    // client would see the reset rather than the answer.
    let _ = stream.try_write(FULL);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let turned = TURNED_AWAY.fetch_add(1, Ordering::Relaxed) + 1;
    if turned.is_power_of_two() {
        tracing::warn!(%peer, cap, turned_away = turned, "control plane: too many connections; answering 503");
    }
}

async fn serve_connection(
    stream: TimedWrites<TcpStream>,
    app: Router,
    header_timeout: Duration,
    stopped: CancellationToken,
) {
    let _ = stream.io.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stopped.cancelled() => {}
    }
    // The runtime has stopped: answer what still comes for a moment (every answer closes its
    // connection now), then close.
    tokio::select! {
        _ = connection.as_mut() => return,
        () = tokio::time::sleep(LINGER) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(LINGER, connection).await;
}

/// A connection whose writes fail once they have waited `timeout` for the client to take them.
struct TimedWrites<S> {
    io: S,
    timeout: Duration,
    /// Made when a write first has to wait, dropped when one goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedWrites<S> {
    fn new(io: S, timeout: Duration) -> Self {
        TimedWrites {
            io,
            timeout,
            stalled: None,
        }
    }

    fn progress<T>(
        &mut self,
        polled: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TimedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TimedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Marks every answer `Connection: close` once the runtime is shutting down, so that no client
/// sends another request on a connection that is about to close.
pub(crate) async fn closing(
    State(runtime): State<RuntimeHandle>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if runtime.is_shutting_down() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Gives every request's body a deadline, counted from its head.
pub(crate) async fn body_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    // A request without a body (most of them) has nothing to wait for.
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let deadline = Instant::now() + timeout;
    let request = request.map(|body| {
        Body::new(Deadline {
            body,
            deadline,
            timeout,
            sleep: None,
        })
    });
    next.run(request).await
}

/// A body that fails once its deadline has passed.
struct Deadline {
    body: Body,
    deadline: Instant,
    timeout: Duration,
    /// Made only once the body has to wait: most bodies are there at once, or empty.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request's body did not arrive within {0:?}")]
pub(crate) struct BodyTimeout(pub(crate) Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_over_the_cap_says_its_own_length() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "overloaded");
    }
}
