//! The links between nodes: Sora accepts and dials the TCP connections itself and hands each one
//! to ractor_cluster through a guard, because ractor_cluster bounds nothing that happens before
//! a peer has proved it holds the secret.
//!
//! - **A deadline**: a link that has not authenticated within the handshake timeout is closed,
//!   whichever side opened it (a seed that accepts and never answers, a client that connects and
//!   says nothing).
//! - **Small frames first**: before authentication a frame may be at most
//!   [`PRE_AUTH_FRAME`] bytes (ractor_cluster's handshake frames are a few hundred); the guard
//!   holds back a larger one, without reading its body, until the link authenticates or its
//!   deadline passes. After it, a frame may be as large as the node's message limit.
//! - **A cap on links that have not authenticated**: an incoming connection past the cap is
//!   closed at once.
//!
//! ractor_cluster still opens a listener of its own; the node gives it a loopback port and a TLS
//! acceptor that refuses every handshake, so that nothing reaches a session except through here.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::task::AtomicWaker;
use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::config::ClusterConfig;

/// The largest frame a link takes before it has authenticated.
pub(crate) const PRE_AUTH_FRAME: u64 = 64 * 1024;

/// The links of one node that have not authenticated yet, and the sessions they became.
pub(super) struct Links {
    /// Opened here and not yet matched with the session ractor_cluster made of them, in the
    /// order they were handed over (the order ractor_cluster reports them in).
    unmatched: Mutex<Vec<Weak<Link>>>,
    /// By ractor_cluster's session id, until the session ends.
    sessions: Mutex<HashMap<u64, Arc<Link>>>,
    /// One permit per incoming link that has not authenticated.
    slots: Arc<Semaphore>,
    /// Incoming connections closed at once because the cap was reached.
    pub(super) turned_away: AtomicU64,
    /// Incoming connections closed because they did not authenticate in time.
    pub(super) late: AtomicU64,
}

/// One connection as the guard sees it.
pub(super) struct Link {
    /// The peer's address, as ractor_cluster reports the session.
    label: String,
    authenticated: AtomicBool,
    /// Set when the link reached its deadline without authenticating.
    timed_out: AtomicBool,
    /// Woken when the link authenticates: a frame held back may go on.
    waker: AtomicWaker,
    /// An incoming link's place under the cap, given back when it authenticates or closes.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Link {
    fn authenticate(&self) {
        self.authenticated.store(true, Ordering::Release);
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.waker.wake();
    }

    fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }
}

impl Links {
    pub(super) fn new(max_pending: usize) -> Self {
        Links {
            unmatched: Mutex::default(),
            sessions: Mutex::default(),
            slots: Arc::new(Semaphore::new(max_pending)),
            turned_away: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }

    /// A new link to `label`, handed to ractor_cluster by `send` under the lock that orders
    /// the unmatched links: two links with one label (two seeds at one address) are matched with
    /// their sessions in the order ractor_cluster reports them, which is the order `send` gave
    /// them in.
    fn hand_over(
        &self,
        label: String,
        slot: Option<OwnedSemaphorePermit>,
        send: impl FnOnce(Arc<Link>) -> bool,
    ) -> bool {
        let link = Arc::new(Link {
            label,
            authenticated: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            slot: Mutex::new(slot),
        });
        let mut unmatched = self.unmatched.lock().unwrap_or_else(|e| e.into_inner());
        unmatched.retain(|l| l.strong_count() > 0);
        let weak = Arc::downgrade(&link);
        let sent = send(link);
        if sent {
            unmatched.push(weak);
        }
        sent
    }

    #[cfg(test)]
    fn open(&self, label: String, slot: Option<OwnedSemaphorePermit>) -> Arc<Link> {
        let mut out = None;
        self.hand_over(label, slot, |link| {
            out = Some(link);
            true
        });
        out.expect("handed over")
    }

    /// ractor_cluster made session `id` of the link to `label`.
    pub(super) fn opened(&self, id: u64, label: &str) {
        let mut unmatched = self.unmatched.lock().unwrap_or_else(|e| e.into_inner());
        let found = unmatched
            .iter()
            .position(|l| l.upgrade().is_some_and(|l| l.label == label));
        if let Some(link) = found.and_then(|at| unmatched.remove(at).upgrade()) {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, link);
        }
    }

    /// Session `id` has authenticated: its link is trusted from now on.
    pub(super) fn authenticated(&self, id: u64) {
        let link = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        if let Some(link) = link {
            link.authenticate();
        }
    }

    /// Session `id` has ended: whether its link was closed for not authenticating in time.
    pub(super) fn closed(&self, id: u64) -> bool {
        let link = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        link.is_some_and(|l| l.timed_out.load(Ordering::Acquire))
    }

    /// How many incoming links are waiting to authenticate now.
    pub(super) fn pending(&self, max_pending: usize) -> usize {
        max_pending.saturating_sub(self.slots.available_permits())
    }
}

/// What a guard needs to know of its node.
#[derive(Clone)]
pub(super) struct Guard {
    handshake: Duration,
    max_frame: u64,
}

impl Guard {
    pub(super) fn new(config: &ClusterConfig) -> Self {
        Guard {
            handshake: config.handshake_timeout,
            max_frame: max_frame(config),
        }
    }
}

/// The largest frame a node takes from an authenticated peer: its largest message and room for
/// ractor_cluster's own envelope around it.
pub(super) fn max_frame(config: &ClusterConfig) -> u64 {
    config.max_message_size as u64 + 4096
}

/// Accepts other nodes' connections on `listener` until the task is aborted: each one under the
/// cap, through TLS if the node uses it, guarded, to ractor_cluster.
pub(super) async fn accept(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    links: Arc<Links>,
    config: ClusterConfig,
) {
    let guard = Guard::new(&config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(%err, "cluster: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = links.slots.clone().try_acquire_owned() else {
            let turned = links.turned_away.fetch_add(1, Ordering::Relaxed);
            if turned.is_power_of_two() || turned == 0 {
                tracing::warn!(
                    %peer,
                    pending = config.max_pending,
                    turned_away = turned + 1,
                    "cluster: too many connections have not authenticated; closing new ones"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let deadline = Instant::now() + guard.handshake;
        let (server, links, guard, tls) = (
            server.clone(),
            links.clone(),
            guard.clone(),
            config.tls.clone(),
        );
        tokio::spawn(async move {
            let label = peer.to_string();
            match tls {
                None => {
                    links.hand_over(label, Some(slot), |link| {
                        let stream = Box::new(Guarded::new(stream, link, &guard, deadline));
                        server.cast(opened(stream, true)).is_ok()
                    });
                }
                Some(tls) => {
                    let accepted = tokio::time::timeout_at(deadline, tls.acceptor.accept(stream));
                    match accepted.await {
                        Ok(Ok(stream)) => {
                            links.hand_over(label, Some(slot), |link| {
                                let stream = Box::new(Guarded::new(stream, link, &guard, deadline));
                                server.cast(opened(stream, true)).is_ok()
                            });
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, %err, "cluster: a TLS handshake failed");
                        }
                        Err(_) => {
                            let within = guard.handshake;
                            tracing::debug!(%peer, "cluster: no TLS handshake within {within:?}");
                        }
                    }
                }
            }
        });
    }
}

fn opened(stream: Box<dyn ClusterBidiStream>, is_server: bool) -> NodeServerMessage {
    NodeServerMessage::ConnectionOpenedExternal { stream, is_server }
}

/// Connects to `address`, through TLS if the node uses it, and hands the guarded link to
/// ractor_cluster: it must authenticate within the handshake timeout or it is closed.
pub(super) async fn dial(
    server: &ActorRef<NodeServerMessage>,
    links: &Links,
    config: &ClusterConfig,
    address: &str,
) -> Result<(), String> {
    let guard = Guard::new(config);
    let deadline = Instant::now() + guard.handshake;
    let within = |what: &str| format!("no {what} within {:?}", guard.handshake);
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(address))
        .await
        .map_err(|_| within("connection"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let label = stream.peer_addr().map_err(|e| e.to_string())?.to_string();
    let sent = match &config.tls {
        None => links.hand_over(label, None, |link| {
            let stream = Box::new(Guarded::new(stream, link, &guard, deadline));
            server.cast(opened(stream, false)).is_ok()
        }),
        Some(tls) => {
            let connect = tls.connector.connect(tls.server_name.clone(), stream);
            let stream = tokio::time::timeout_at(deadline, connect)
                .await
                .map_err(|_| within("TLS handshake"))?
                .map_err(|e| format!("TLS: {e}"))?;
            links.hand_over(label, None, |link| {
                let stream = Box::new(Guarded::new(stream, link, &guard, deadline));
                server.cast(opened(stream, false)).is_ok()
            })
        }
    };
    if sent {
        Ok(())
    } else {
        Err("the node's server is gone".into())
    }
}

/// A stream that can be split into halves that move to their own tasks.
trait Split: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    type Read: AsyncRead + Send + Unpin + 'static;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn halves(self) -> (Self::Read, Self::Write);
}

impl Split for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Split
    for tokio_rustls::server::TlsStream<S>
{
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Split
    for tokio_rustls::client::TlsStream<S>
{
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// A connection on its way to ractor_cluster, with the guard that will read it.
struct Guarded<S> {
    stream: S,
    guard: ReadGuard,
}

impl<S: Split> Guarded<S> {
    fn new(stream: S, link: Arc<Link>, guard: &Guard, deadline: Instant) -> Self {
        Guarded {
            stream,
            guard: ReadGuard {
                link,
                until: deadline,
                deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
                handshake: guard.handshake,
                max_frame: guard.max_frame,
                frame: Frame::START,
            },
        }
    }
}

impl<S: Split> ClusterBidiStream for Guarded<S> {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let Guarded { stream, guard } = *self;
        let (inner, write) = stream.halves();
        (Box::new(GuardedRead { inner, guard }), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.guard.link.label.clone())
    }
}

/// Where the reader is in ractor_cluster's framing: a big-endian `u64` length, then that many
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `filled` bytes of the length read from the peer, `given` of them handed on.
    Header {
        bytes: [u8; 8],
        filled: usize,
        given: usize,
    },
    /// This many bytes of the frame's body are still to come.
    Body { remaining: u64 },
}

impl Frame {
    const START: Frame = Frame::Header {
        bytes: [0; 8],
        filled: 0,
        given: 0,
    };
}

/// What the read half of a link enforces: the deadline and the frame limits.
struct ReadGuard {
    link: Arc<Link>,
    /// When the link must have authenticated.
    until: Instant,
    /// Wakes the reader at `until`, while the link has not authenticated.
    deadline: Option<Pin<Box<Sleep>>>,
    handshake: Duration,
    max_frame: u64,
    frame: Frame,
}

/// The read half of a guarded link: it follows the frames as they pass.
struct GuardedRead<R> {
    inner: R,
    guard: ReadGuard,
}

impl Drop for ReadGuard {
    /// The link is closed: its place under the cap is free.
    fn drop(&mut self) {
        self.link
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

impl ReadGuard {
    /// Waits for the link to authenticate, failing at the deadline.
    fn wait_for_authentication(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.link.waker.register(cx.waker());
        if self.link.is_authenticated() {
            self.deadline = None;
            return Poll::Ready(Ok(()));
        }
        self.poll_deadline(cx)?;
        Poll::Pending
    }

    /// Fails once the deadline has passed on a link that has not authenticated: looked at on
    /// every read, so that a peer that keeps sending (empty frames, say) meets it too.
    fn check_deadline(&mut self) -> io::Result<()> {
        if self.deadline.is_some() && !self.link.is_authenticated() && Instant::now() >= self.until
        {
            return Err(self.timed_out());
        }
        Ok(())
    }

    fn timed_out(&self) -> io::Error {
        self.link.timed_out.store(true, Ordering::Release);
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} did not authenticate within {:?}",
                self.link.label, self.handshake
            ),
        )
    }

    /// Fails once the deadline has passed on a link that has not authenticated, and otherwise
    /// makes sure the reader is woken when it does.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.link.is_authenticated() {
            self.deadline = None;
            return Ok(());
        }
        let passed = match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if passed {
            return Err(self.timed_out());
        }
        Ok(())
    }

    /// Checks a frame's length before any of it is handed on.
    fn admit(&mut self, length: u64, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if length > self.max_frame {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} sent a frame of {length} bytes, over the limit of {}",
                    self.link.label, self.max_frame
                ),
            )));
        }
        if length > PRE_AUTH_FRAME && !self.link.is_authenticated() {
            return self.wait_for_authentication(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for GuardedRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let GuardedRead { inner, guard } = self.get_mut();
        guard.check_deadline()?;
        loop {
            match &mut guard.frame {
                Frame::Body { remaining } => {
                    let before = out.filled().len();
                    let read = if (out.remaining() as u64) <= *remaining {
                        Pin::new(&mut *inner).poll_read(cx, out)
                    } else {
                        // Never past the frame's end, so that the next length is seen here.
                        let mut chunk = [0u8; 1024];
                        let take = (*remaining as usize).min(chunk.len());
                        let mut limited = ReadBuf::new(&mut chunk[..take]);
                        let read = Pin::new(&mut *inner).poll_read(cx, &mut limited);
                        out.put_slice(limited.filled());
                        read
                    };
                    if read?.is_pending() {
                        guard.poll_deadline(cx)?;
                        return Poll::Pending;
                    }
                    *remaining -= (out.filled().len() - before) as u64;
                    if *remaining == 0 {
                        guard.frame = Frame::START;
                    }
                    // Nothing read: the peer closed the link.
                    return Poll::Ready(Ok(()));
                }
                Frame::Header {
                    bytes,
                    filled,
                    given,
                } => {
                    if *filled < 8 {
                        let mut rest = ReadBuf::new(&mut bytes[*filled..]);
                        if Pin::new(&mut *inner).poll_read(cx, &mut rest)?.is_pending() {
                            guard.poll_deadline(cx)?;
                            return Poll::Pending;
                        }
                        if rest.filled().is_empty() {
                            // Closed: between frames, or in the middle of a length.
                            return Poll::Ready(Ok(()));
                        }
                        *filled += rest.filled().len();
                        continue;
                    }
                    let (length, start) = (u64::from_be_bytes(*bytes), *given);
                    let bytes = *bytes;
                    if start == 0 {
                        ready!(guard.admit(length, cx))?;
                    }
                    let n = (8 - start).min(out.remaining());
                    out.put_slice(&bytes[start..start + n]);
                    if start + n < 8 {
                        guard.frame = Frame::Header {
                            bytes,
                            filled: 8,
                            given: start + n,
                        };
                    } else if length == 0 {
                        guard.frame = Frame::START;
                    } else {
                        guard.frame = Frame::Body { remaining: length };
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The address to give ractor_cluster's own listener: a free loopback port, behind an acceptor
/// that refuses every TLS handshake, so that no connection reaches a session but through the
/// guard.
pub(super) fn closed_door() -> (SocketAddr, ractor_cluster::IncomingEncryptionMode) {
    use tokio_rustls::rustls;

    #[derive(Debug)]
    struct NoCertificate;

    impl rustls::server::ResolvesServerCert for NoCertificate {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_no_client_auth()
                .with_cert_resolver(Arc::new(NoCertificate))
        });
    let address = SocketAddr::from(([127, 0, 0, 1], 0));
    match config {
        Ok(config) => (
            address,
            ractor_cluster::IncomingEncryptionMode::Tls(tokio_rustls::TlsAcceptor::from(Arc::new(
                config,
            ))),
        ),
        // The provider always has safe versions; were it not so, loopback alone remains.
        Err(_) => (address, ractor_cluster::IncomingEncryptionMode::Raw),
    }
}

#[cfg(test)]
mod tests;
