//! How a runtime joins a cluster: its node name, where it listens, the shared secret, its seeds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::Error;
use crate::config::Loaded;

/// The port a node listens on when none is configured.
pub const DEFAULT_PORT: u16 = 7171;

/// How many incoming connections may wait to authenticate at once, unless configured.
pub const DEFAULT_MAX_PENDING: usize = 64;

/// How a runtime becomes a node of a cluster (see [`cluster`](crate::cluster)).
///
/// # Examples
///
/// ```
/// use sora::cluster::ClusterConfig;
///
/// let config = ClusterConfig::new("billing-1", "a shared secret")
///     .listen("127.0.0.1:7172".parse().unwrap())
///     .seed("127.0.0.1:7171");
/// assert_eq!(config.node(), "billing-1");
/// ```
#[derive(Clone)]
pub struct ClusterConfig {
    pub(crate) node: String,
    pub(crate) listen: SocketAddr,
    pub(crate) secret: String,
    pub(crate) seeds: Vec<String>,
    pub(crate) name: String,
    pub(crate) reconnect: (Duration, Duration),
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_pending: usize,
    pub(crate) max_message_size: usize,
    pub(crate) tls: Option<ClusterTls>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node", &self.node)
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("seeds", &self.seeds)
            .field("name", &self.name)
            .field("reconnect", &self.reconnect)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_pending", &self.max_pending)
            .field("max_message_size", &self.max_message_size)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClusterConfig {
    /// The cluster settings: `explicit` (the builder's) wins whole over the `[cluster]` table.
    /// `None` if neither asks for a cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the table lacks the node's name or the secret.
    pub(crate) fn resolve(
        loaded: &Loaded,
        explicit: Option<ClusterConfig>,
    ) -> Result<Option<ClusterConfig>, Error> {
        if explicit.is_some() {
            return Ok(explicit);
        }
        let Some(file) = &loaded.file.cluster else {
            return Ok(None);
        };
        let required = |key: &str, what: &str| {
            loaded.error_at(
                &["cluster".to_owned(), key.to_owned()],
                format!("a node of a cluster needs {what}"),
            )
        };
        let node = file
            .node
            .clone()
            .ok_or_else(|| required("node", "a name, unique in its cluster"))?;
        let secret = file
            .secret
            .clone()
            .ok_or_else(|| required("secret", "the secret its cluster shares"))?;
        let mut config = ClusterConfig::new(node, secret.0);
        if let Some(listen) = file.listen {
            config = config.listen(listen);
        }
        for seed in file.seeds.iter().flatten() {
            config = config.seed(seed.clone());
        }
        if let Some(name) = &file.name {
            config = config.cluster_name(name.clone());
        }
        let (min, max) = config.reconnect;
        config = config.reconnect(
            file.reconnect_min.unwrap_or(min),
            file.reconnect_max.unwrap_or(max),
        );
        if let Some(timeout) = file.handshake_timeout {
            config = config.handshake_timeout(timeout);
        }
        if let Some(pending) = file.max_pending_connections {
            config = config.max_pending_connections(pending);
        }
        if let Some(size) = file.max_message_size {
            config = config.max_message_size(size);
        }
        if let Some((key, why)) = config.invalid() {
            return Err(loaded.error_at(&["cluster".to_owned(), key.to_owned()], why));
        }
        Ok(Some(config))
    }

    /// A node called `node` that shares `secret` with the other nodes (ractor_cluster's cookie: a
    /// node with another secret is refused). It listens on `127.0.0.1:7171` and has no seeds.
    pub fn new(node: impl Into<String>, secret: impl Into<String>) -> Self {
        ClusterConfig {
            node: node.into(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            secret: secret.into(),
            seeds: Vec::new(),
            name: "sora".into(),
            reconnect: (Duration::from_millis(200), Duration::from_secs(5)),
            handshake_timeout: Duration::from_secs(10),
            max_pending: DEFAULT_MAX_PENDING,
            max_message_size: crate::codec::DECODE_LIMIT,
            tls: None,
        }
    }

    /// The node's name, unique in its cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the node listens for other nodes (default `127.0.0.1:7171`).
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.listen = address;
        self
    }

    /// A node to connect to at start, as `host:port`; the node keeps reconnecting to it
    /// whenever the connection is lost. The runtime is ready only once every seed has
    /// authenticated.
    pub fn seed(mut self, address: impl Into<String>) -> Self {
        self.seeds.push(address.into());
        self
    }

    /// The cluster's name (default `sora`). Nodes only see services of nodes with the same name,
    /// so two clusters may share a network and a secret without mixing.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The delays between attempts to reach a seed: from `min`, doubling up to `max`, with
    /// jitter (default 200 ms to 5 s).
    pub fn reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect = (min, max.max(min));
        self
    }

    /// How long a connection between nodes may take to authenticate, whichever node opened it,
    /// before it is closed (default 10 s); a seed's is then tried again.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How many incoming connections may wait to authenticate at once (default
    /// [`DEFAULT_MAX_PENDING`]); one more is closed as soon as it is accepted. Connections that
    /// have authenticated do not count.
    pub fn max_pending_connections(mut self, connections: usize) -> Self {
        self.max_pending = connections.max(1);
        self
    }

    /// The largest message this node takes from another, in bytes: from 1 KiB to
    /// [`DECODE_LIMIT`](crate::codec::DECODE_LIMIT) (16 MiB, the default); the start refuses
    /// any other value. A frame larger than this and ractor_cluster's envelope around it closes
    /// the link that sent it, so every node of a cluster should have the same limit.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// What is wrong with these settings, if anything: the key and why.
    pub(crate) fn invalid(&self) -> Option<(&'static str, String)> {
        let most = crate::codec::DECODE_LIMIT;
        if !(1024..=most).contains(&self.max_message_size) {
            return Some((
                "max_message_size",
                format!(
                    "must be from 1024 to {most} bytes, not {}",
                    self.max_message_size
                ),
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Some(("handshake_timeout", "must be longer than zero".into()));
        }
        None
    }

    /// Encrypts the links between nodes with TLS.
    pub fn tls(mut self, tls: ClusterTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// TLS for the links between nodes: how this node accepts and how it connects.
///
/// Built from `tokio_rustls` (re-exported as [`cluster::tls`](crate::cluster::tls)), as
/// ractor_cluster takes it.
#[derive(Clone)]
pub struct ClusterTls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl ClusterTls {
    /// TLS with `acceptor` for incoming links and `connector` for outgoing ones, which checks
    /// the seeds' certificates against `server_name`.
    pub fn new(
        acceptor: tokio_rustls::TlsAcceptor,
        connector: tokio_rustls::TlsConnector,
        server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
    ) -> Self {
        ClusterTls {
            acceptor,
            connector,
            server_name,
        }
    }
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}
