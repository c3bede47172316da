//! Nodes of a cluster for the tests, each a real process on 127.0.0.1.
//!
//! ractor's process groups are process-wide, so two nodes in one process would be no test. The
//! other nodes are the test binary itself, started again to run only its test `node_process`
//! (which calls [`node_main`]): it serves the services below and talks to the test on its
//! standard streams, printing `SORA-NODE …` lines on stdout and its logs on stderr, taking
//! commands on stdin, and stopping when its stdin closes. The test's own process is a node
//! too, one test at a time ([`THIS_NODE`]).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sora::cluster::{Cluster, ClusterConfig, ClusterTls};
use sora::{Action, BoxError, Command, Context, Definition, Handler, Runtime, Service};
use tokio::sync::{mpsc, watch};

pub const SECRET: &str = "cluster-test-secret";
/// A bound on every wait for another process; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The services the nodes serve.

#[derive(Debug, Serialize, Deserialize)]
pub struct Translate {
    pub text: String,
    pub to: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Translated {
    pub text: String,
    pub correlation_id: Option<String>,
    pub node: String,
}

impl Action for Translate {
    const NAME: &'static str = "translate";
    type Reply = Translated;
}

/// Holds until cancelled; says so on stdout first.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hold;

impl Action for Hold {
    const NAME: &'static str = "hold";
    type Reply = ();
}

/// Answers with this many bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Blob(pub usize);

impl Action for Blob {
    const NAME: &'static str = "blob";
    type Reply = Vec<u8>;
}

/// Emitted by `count N`, for n in 0..N.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    pub n: u64,
}

impl sora::Event for Counted {
    const NAME: &'static str = "counted";
}

#[derive(Default)]
pub struct Translator {
    pub bumps: AtomicU64,
}

impl Service for Translator {
    fn define(def: &mut Definition<Self>) {
        def.action::<Translate>()
            .action::<Hold>()
            .action::<Blob>()
            .command("bump")
            .command("count")
            .emits::<Counted>()
            .concurrency(4);
    }

    async fn command(&self, command: Command, ctx: &Context) -> Result<(), BoxError> {
        match command.name() {
            "bump" => {
                let n = self.bumps.fetch_add(1, Ordering::SeqCst) + 1;
                println!("SORA-NODE bumped {n}");
            }
            "count" => {
                for n in 0..count_of(&command)? {
                    ctx.emit(Counted { n })?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

pub fn count_of(command: &Command) -> Result<u64, BoxError> {
    match command {
        Command::Custom {
            args: Some(args), ..
        } => Ok(args.parse()?),
        _ => Err("`count` takes how many".into()),
    }
}

impl Handler<Translate> for Translator {
    async fn handle(&self, t: Translate, ctx: &Context) -> Result<Translated, BoxError> {
        if t.to.is_empty() {
            return Err("no target language".into());
        }
        let node = ctx.runtime().cluster().map(|c| c.node().to_owned());
        Ok(Translated {
            text: format!("[{}] {}", t.to, t.text),
            correlation_id: ctx.correlation_id().map(str::to_owned),
            node: node.unwrap_or_default(),
        })
    }
}

impl Handler<Blob> for Translator {
    async fn handle(&self, blob: Blob, _: &Context) -> Result<Vec<u8>, BoxError> {
        Ok(vec![7; blob.0])
    }
}

impl Handler<Hold> for Translator {
    async fn handle(&self, _: Hold, ctx: &Context) -> Result<(), BoxError> {
        println!("SORA-NODE holding");
        ctx.cancelled().await;
        Ok(())
    }
}

/// What another build calls `Translator`: its `translate` takes one more field.
#[derive(Default)]
pub struct TranslatorV2;

#[derive(Debug, Serialize, Deserialize)]
pub struct TranslateV2 {
    pub text: String,
    pub to: String,
    pub pages: u32,
}

impl Action for TranslateV2 {
    const NAME: &'static str = "translate";
    type Reply = Translated;
}

/// What that build emits as `counted`: another shape.
#[derive(Debug, Serialize, Deserialize)]
pub struct CountedV2 {
    pub n: u64,
    pub of: u64,
}

impl sora::Event for CountedV2 {
    const NAME: &'static str = "counted";
}

impl Service for TranslatorV2 {
    fn define(def: &mut Definition<Self>) {
        def.name("Translator")
            .action::<TranslateV2>()
            .emits::<CountedV2>();
    }
}

impl Handler<TranslateV2> for TranslatorV2 {
    async fn handle(&self, t: TranslateV2, _: &Context) -> Result<Translated, BoxError> {
        Ok(Translated {
            text: format!("[{}] {} ({} pages)", t.to, t.text, t.pages),
            correlation_id: None,
            node: String::new(),
        })
    }
}

/// Known to the test by name only.
#[derive(Default)]
pub struct Ledger {
    pub total: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Add {
    pub amount: u64,
}

impl Action for Add {
    const NAME: &'static str = "add";
    type Reply = u64;
}

impl Service for Ledger {
    fn define(def: &mut Definition<Self>) {
        def.action::<Add>();
    }
}

impl Handler<Add> for Ledger {
    async fn handle(&self, add: Add, _: &Context) -> Result<u64, BoxError> {
        Ok(self.total.fetch_add(add.amount, Ordering::SeqCst) + add.amount)
    }
}

/// Takes deposits as durable jobs: each is committed in the node's store before it is run.
#[derive(Default)]
pub struct Bank;

#[derive(Debug, Serialize, Deserialize)]
pub struct Deposit {
    pub amount: u64,
}

impl Action for Deposit {
    const NAME: &'static str = "deposit";
    type Reply = u64;
}

impl Service for Bank {
    fn define(def: &mut Definition<Self>) {
        def.durable::<Deposit>(sora::Retry::none());
    }
}

impl Handler<Deposit> for Bank {
    async fn handle(&self, deposit: Deposit, _: &Context) -> Result<u64, BoxError> {
        Ok(deposit.amount)
    }
}

/// Records the arguments of its `record` commands, one at a time.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<u64>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Recorded;

impl Action for Recorded {
    const NAME: &'static str = "recorded";
    type Reply = Vec<u64>;
}

impl Service for Recorder {
    fn define(def: &mut Definition<Self>) {
        def.command("record").action::<Recorded>();
    }

    async fn command(&self, command: Command, _: &Context) -> Result<(), BoxError> {
        if let Command::Custom {
            args: Some(args), ..
        } = command
        {
            self.seen.lock().unwrap().push(args.parse()?);
        }
        Ok(())
    }
}

impl Handler<Recorded> for Recorder {
    async fn handle(&self, _: Recorded, _: &Context) -> Result<Vec<u64>, BoxError> {
        Ok(self.seen.lock().unwrap().clone())
    }
}

// ---------------------------------------------------------------------------------------------
// The other process.

/// The body of the other nodes: each test binary that starts them has a test `node_process`
/// that calls this. It does nothing unless the test that started this process set
/// `SORA_TEST_NODE`.
pub async fn node_main() {
    let Ok(name) = std::env::var("SORA_TEST_NODE") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sora=info,ractor_cluster=warn")
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let listen = std::env::var("SORA_TEST_LISTEN").expect("SORA_TEST_LISTEN");
    let secret = std::env::var("SORA_TEST_SECRET").expect("SORA_TEST_SECRET");
    let mut config = ClusterConfig::new(name, secret)
        .listen(listen.parse().expect("an address"))
        .reconnect(Duration::from_millis(50), Duration::from_millis(500));
    if let Ok(dir) = std::env::var("SORA_TEST_TLS") {
        config = config.tls(tls_from(std::path::Path::new(&dir)));
    }
    if let Ok(ms) = std::env::var("SORA_TEST_HANDSHAKE_MS") {
        config = config.handshake_timeout(Duration::from_millis(ms.parse().expect("ms")));
    }
    if let Ok(bytes) = std::env::var("SORA_TEST_MAX_MESSAGE") {
        config = config.max_message_size(bytes.parse().expect("bytes"));
    }
    if let Ok(n) = std::env::var("SORA_TEST_PENDING") {
        config = config.max_pending_connections(n.parse().expect("a count"));
    }
    for seed in std::env::var("SORA_TEST_SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        config = config.seed(seed);
    }
    let builder = match std::env::var("SORA_TEST_VARIANT").as_deref() {
        Ok("v2") => Runtime::builder().service(TranslatorV2::default),
        _ => Runtime::builder().service(Translator::default),
    };
    // Durable jobs in the file of `SORA_TEST_STORE`, which outlives the process, or in memory.
    let builder = match std::env::var("SORA_TEST_STORE") {
        Ok(path) => builder.store_path(path),
        Err(_) => builder.store(sora::store::RedbStore::in_memory().expect("a store")),
    };
    let started = builder
        .service(Ledger::default)
        .service(Recorder::default)
        .service(Bank::default)
        .cluster(config)
        .start()
        .await;
    let runtime = match started {
        Ok(runtime) => runtime,
        Err(err) => {
            println!("SORA-NODE failed {err}");
            return;
        }
    };
    println!("SORA-NODE ready");
    // And, for a node with seeds, once every seed has joined.
    let cluster = runtime.cluster().expect("a node");
    if !cluster.seeds().is_empty() {
        tokio::spawn(async move {
            cluster.ready().await;
            println!("SORA-NODE joined");
        });
    }
    // Commands, one per line, until the test closes our stdin (or kills us).
    let (tx, mut commands) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let cluster = runtime.cluster().expect("a node");
    while let Some(command) = commands.recv().await {
        match command.trim() {
            // What the node has seen; on stderr too, after every log line before it.
            "report" => {
                let report = format!(
                    "undecodable={} pending={} turned_away={}",
                    cluster.undecodable(),
                    cluster.pending_connections(),
                    cluster.turned_away()
                );
                eprintln!("SORA-NODE-REPORT {report}");
                println!("SORA-NODE report {report}");
            }
            // Stops the gateway as a failure would, and says what the node's health is while
            // it is down and once it is back.
            "kill-gateway" => {
                let group = format!("sora:sora:node:{}", cluster.node());
                for gateway in ractor::pg::get_members(&group) {
                    gateway.kill();
                }
                let down = |c: &Cluster| c.health() != sora::Health::Healthy;
                within("the gateway's absence", cluster.wait_until(down)).await;
                println!(
                    "SORA-NODE down {}",
                    serde_json::to_string(&cluster.health()).unwrap()
                );
                let up = |c: &Cluster| c.health() == sora::Health::Healthy;
                within("the gateway's return", cluster.wait_until(up)).await;
                println!("SORA-NODE back");
            }
            other => println!("SORA-NODE unknown command {other}"),
        }
    }
    runtime.shutdown().await.expect("an orderly stop");
    println!("SORA-NODE stopped");
}

/// TLS from the certificate and key in `dir` (DER): every node of the test presents the same
/// certificate, for `localhost`, and trusts only it.
pub fn tls_from(dir: &std::path::Path) -> ClusterTls {
    use sora::cluster::tls::rustls;
    use sora::cluster::tls::rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    };
    let cert = CertificateDer::from(std::fs::read(dir.join("cert.der")).expect("cert.der"));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        std::fs::read(dir.join("key.der")).expect("key.der"),
    ));
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a server configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the certificate as a root");
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClusterTls::new(
        sora::cluster::tls::TlsAcceptor::from(Arc::new(server)),
        sora::cluster::tls::TlsConnector::from(Arc::new(client)),
        ServerName::try_from("localhost").expect("a name"),
    )
}

/// Writes a fresh self-signed certificate for `localhost` and its key into a new directory.
pub fn certificate_dir() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sora-cluster-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a directory");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    std::fs::write(dir.join("cert.der"), certified.cert.der()).expect("cert.der");
    std::fs::write(dir.join("key.der"), certified.signing_key.serialize_der()).expect("key.der");
    dir
}

/// Another node: a child process running `node_process`.
pub struct Node {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::UnboundedReceiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Counts the log's lines, to wait for one.
    pub logged: watch::Receiver<usize>,
    pub port: u16,
}

impl Node {
    /// Starts a node called `name` on `port` (a free one if `None`) that joins `seeds`.
    pub async fn start(name: &str, port: Option<u16>, secret: &str, seeds: &[u16]) -> Node {
        Node::start_with(name, port, secret, seeds, &[]).await
    }

    /// As [`start`](Self::start), with more environment for `node_process`: `SORA_TEST_TLS`
    /// (a certificate directory), `SORA_TEST_VARIANT`.
    pub async fn start_with(
        name: &str,
        port: Option<u16>,
        secret: &str,
        seeds: &[u16],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Node {
        // A free port may be taken by someone else before the node binds it: try another.
        for _ in 0..5 {
            let mut node = Node::spawn(name, port.unwrap_or_else(free_port), secret, seeds, env);
            match node.next().await.as_deref() {
                Some("ready") => return node,
                Some(other) if other.contains("cannot listen") && port.is_none() => continue,
                other => panic!("node {name} did not start: {other:?}"),
            }
        }
        panic!("no free port for node {name}");
    }

    pub fn spawn(
        name: &str,
        port: u16,
        secret: &str,
        seeds: &[u16],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Node {
        let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut process = Process::new(std::env::current_exe().expect("the test binary"));
        process.envs(env.iter().copied());
        let mut child = process
            .args(["--exact", "node_process", "--nocapture", "--test-threads=1"])
            .env("SORA_TEST_NODE", name)
            .env("SORA_TEST_LISTEN", format!("127.0.0.1:{port}"))
            .env("SORA_TEST_SECRET", secret)
            .env("SORA_TEST_SEEDS", seeds.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the node's process");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest's own `test node_process ... ` may start the first line.
                if let Some((_, said)) = line.split_once("SORA-NODE ") {
                    let _ = tx.send(said.to_owned());
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (count, logged) = watch::channel(0);
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
                count.send_modify(|n| *n += 1);
            }
        });
        let stdin = child.stdin.take();
        Node {
            child,
            stdin,
            lines,
            log,
            logged,
            port,
        }
    }

    /// The next thing the node says; `None` if it exited.
    pub async fn next(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .expect("the node answers in time")
    }

    pub async fn expect(&mut self, what: &str) {
        let said = self.next().await;
        assert_eq!(said.as_deref(), Some(what));
    }

    /// Sends the node a command (see [`node_main`]).
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("the node's stdin is open");
        writeln!(stdin, "{command}").expect("the node takes commands");
        stdin.flush().expect("the node takes commands");
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the node's process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the node's status").is_none()
    }

    /// The node's log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the node in order and waits for it.
    pub async fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        self.expect("stopped").await;
        let _ = self.child.wait();
    }

    /// Waits until the node logs a line with `needle` (its stderr is read as it comes).
    pub async fn logs(&mut self, needle: &str) {
        let log = self.log.clone();
        let seen = self
            .logged
            .wait_for(|_| log.lock().unwrap().iter().any(|l| l.contains(needle)));
        within(&format!("the log line `{needle}`"), seen)
            .await
            .expect("the node's log is read");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process as a node that knows `Translator`, which other nodes run, joined as `config`
/// says.
pub async fn translator_caller(config: ClusterConfig) -> (Runtime, Cluster) {
    let runtime = Runtime::builder()
        .remote::<Translator>()
        .cluster(config)
        .start()
        .await
        .unwrap();
    let cluster = runtime.cluster().unwrap();
    (runtime, cluster)
}

/// Waits until another node serves `service`.
pub async fn served_by_others(cluster: &Cluster, service: &str) {
    within(
        &format!("`{service}` on another node"),
        cluster.wait_until(|c| c.serves(service)),
    )
    .await;
}

pub fn translate(text: impl Into<String>) -> Translate {
    Translate {
        text: text.into(),
        to: "pt".into(),
    }
}

pub fn free_port() -> u16 {
    bind_any().local_addr().expect("an address").port()
}

pub fn bind_any() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")
}

/// This process is one node at most: the tests that make it one take turns.
pub static THIS_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn this_node(seeds: &[u16], secret: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new("tester", secret)
        .listen(format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .reconnect(Duration::from_millis(50), Duration::from_millis(500));
    for port in seeds {
        config = config.seed(format!("127.0.0.1:{port}"));
    }
    config
}

pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}
